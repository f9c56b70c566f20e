// A StrykerJS test runner whose "test" is an exercise's check, run against the live broker
// on a mutant of the exercise's reference solution. A check that fails kills the mutant;
// one that passes lets it survive. Stryker runs this in child processes whose working
// directory is its sandbox (a copy of the project holding the instrumented solutions), so
// everything is imported from there, compiled by the workbook's own build.
//
// Plain JavaScript: Stryker loads plugins with a bare import(), before anything is compiled.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { declareClassPlugin, PluginKind } from '@stryker-mutator/api/plugin';
import { DryRunStatus, MutantRunStatus, TestStatus } from '@stryker-mutator/api/test-runner';

/** The sandbox's compiled runner modules, loaded once per child process. */
async function loadRunner() {
  const root = process.cwd();
  const { syncBuild, builtPath } = await import(pathToFileURL(path.join(root, 'runner', 'build.mjs')).href);
  syncBuild();
  const load = (file) => import(pathToFileURL(builtPath(path.join(root, file))).href);
  const [{ loadManifest }, { jobFor, runCheck, runChecks }] = await Promise.all([load('runner/manifest/load.ts'), load('runner/check/run.ts')]);
  return { root, workbook: loadManifest(), jobFor, runCheck, runChecks };
}

class WorkbookTestRunner {
  /** @type {Awaited<ReturnType<typeof loadRunner>>} */
  runner;
  broker = JSON.parse(process.env.WORKBOOK_MUTATION_BROKER ?? 'null');

  capabilities() {
    // Every check runs in a fresh worker thread, which imports the solution anew.
    return { reloadEnvironment: true };
  }

  async init() {
    // Stryker talks to this child over IPC. When the parent is gone (Ctrl-C on npm run mutation),
    // the channel closes: stop too, rather than go on checking mutants for nobody.
    process.once('disconnect', () => process.exit(1));
    if (!this.broker) throw new Error('WORKBOOK_MUTATION_BROKER is not set: run mutation testing through npm run mutation');
    this.runner = await loadRunner();
  }

  /** The exercises whose solutions this run mutates (WORKBOOK_MUTATION_IDS). */
  exercises() {
    const ids = (process.env.WORKBOOK_MUTATION_IDS ?? '').split(',').filter(Boolean);
    return ids.map((id) => this.runner.workbook.exercise(id));
  }

  /** The exercise a mutated file (its copy in the sandbox) belongs to. */
  exerciseOf(fileName) {
    const rel = path.relative(this.runner.root, fileName);
    return this.runner.workbook.exercises.find((e) => path.relative(this.runner.root, e.solutionPath) === rel);
  }

  async dryRun() {
    const jobs = this.exercises().map((e) => this.runner.jobFor(e, 'solution'));
    const verdicts = await this.runner.runChecks(jobs, this.broker, { concurrency: 8 });
    const broken = verdicts.filter((v) => v.status !== 'passed');
    if (broken.length) {
      return { status: DryRunStatus.Error, errorMessage: broken.map((v) => `${v.id}: the unmutated solution does not pass (${v.status}): ${v.finding?.summary}`).join('\n') };
    }
    return { status: DryRunStatus.Complete, tests: verdicts.map((v) => ({ id: v.id, name: `check ${v.id}`, status: TestStatus.Success, timeSpentMs: v.durationMs })) };
  }

  async mutantRun({ activeMutant, sandboxFileName }) {
    const exercise = this.exerciseOf(sandboxFileName);
    if (!exercise) return { status: MutantRunStatus.Error, errorMessage: `no exercise has the solution ${sandboxFileName}` };
    const job = { ...this.runner.jobFor(exercise, 'solution'), env: { __STRYKER_ACTIVE_MUTANT__: activeMutant.id } };
    const verdict = await this.runner.runCheck(job, this.broker);
    switch (verdict.status) {
      case 'passed':
        return { status: MutantRunStatus.Survived, nrOfTests: 1 };
      case 'failed':
        return { status: MutantRunStatus.Killed, killedBy: [exercise.id], failureMessage: verdict.finding?.summary ?? 'failed', nrOfTests: 1 };
      default:
        // Skipped or broken: the environment or the check is at fault, not a verdict on the mutant.
        return { status: MutantRunStatus.Error, errorMessage: `${verdict.status}: ${verdict.finding?.summary}` };
    }
  }
}
WorkbookTestRunner.inject = [];

export const strykerPlugins = [declareClassPlugin(PluginKind.TestRunner, 'workbook', WorkbookTestRunner)];

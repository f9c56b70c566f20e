// npm run check [ID…] [-- --solutions] [-- --json] [-- --verbose]
// Verdicts print in id order as soon as they and all before them are in (checks run in parallel).
// With --json, stdout holds nothing but the JSON document (`npm run -s check -- --json`).
import { existsSync } from 'node:fs';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveIds } from '../ids.js';
import { currentExercise, loadProgress, recordResult, updateProgress } from '../progress.js';
import { jobFor, runChecks, startSpare } from '../check/run.js';
import { formatVerdict, summarize } from '../check/report.js';
import { startTrace, type Trace } from '../check/trace.js';
import type { TargetKind, Verdict } from '../check/verdict.js';
import { rel } from '../paths.js';
import { EXIT } from '../exit-codes.js';
import type { Exercise, Workbook } from '../manifest/load.js';

export interface CheckOptions {
  solutions?: boolean;
  json?: boolean;
  /** Everything the code under check printed, under every verdict. */
  verbose?: boolean;
}

export async function checkCommand(ids: string[], opts: CheckOptions): Promise<number> {
  const wb = workbook();
  const exercises = pickExercises(wb, ids, opts);
  if (exercises.length === 0) {
    console.log(pc.green('Every exercise has passed. Well done! `npm run progress` shows them all.'));
    return EXIT.OK;
  }
  if (ids.length === 1 && !opts.solutions) updateProgress((p) => (p.current = exercises[0]!.id));

  // The first check's worker starts loading now, while the broker is found.
  startSpare();
  // A spinner only on a terminal: in a pipe or a file its frames would pile up on one line.
  const b = await broker({ spinner: !opts.json && process.stderr.isTTY });
  const target = opts.solutions ? 'solution' : 'exercise';
  if (!opts.json) console.log(pc.dim(`Checking ${exercises.length === 1 ? exercises[0]!.id : `${exercises.length} exercises`} (${target}) against RabbitMQ ${b.version}, ${b.description}\n`));

  // A missing file gets a verdict that says so; the others are checked.
  const missing = new Map(exercises.map((e) => [e, missingFileVerdict(e, target)] as const).filter((m): m is [Exercise, Verdict] => m[1] !== undefined));
  // In a joined classroom, each verdict on the learner's own code also goes to the instructor's dashboard.
  // (Loaded only then: it brings amqplib into this process, which other commands never need.)
  const events = opts.solutions || !b.classroom ? undefined : new (await import('../classroom/events.js')).CheckEvents(b);
  const print = inOrder(exercises.map((e) => e.id), (v) => {
    if (!opts.json) console.log(formatVerdict(v, { verbose: opts.verbose }) + '\n');
    events?.report(v);
  });
  for (const v of missing.values()) print(v);
  // A failed check of the learner's code: its message flow beside the reference solution's, for
  // the web reader (check/trace.ts). Started once the verdict is in, waited for at the end only.
  const traces: Promise<Trace | undefined>[] = [];
  const checked = await runChecks(
    exercises.filter((e) => !missing.has(e)).map((e) => jobFor(e, target)),
    b,
    {
      keepFailedSandbox: !opts.solutions,
      recordFlow: opts.solutions ? undefined : 'failed',
      onVerdict: (v) => {
        if (!opts.solutions && (v.status === 'passed' || v.status === 'failed')) recordResult(v.id, v.status === 'passed');
        const tracing = v.flow && startTrace(wb.exercise(v.id)!, v, b);
        if (tracing) traces.push(tracing);
        print(v);
      },
    },
  );
  const verdicts = exercises.map((e) => missing.get(e) ?? checked.find((v) => v.id === e.id)!);
  await events?.close();
  if (traces.length && !opts.json) console.log(pc.dim(`Running the reference solution through the same check, for the message-flow trace…`));
  const traced = (await Promise.all(traces)).filter((t) => t !== undefined);

  if (opts.json) {
    console.log(JSON.stringify({ broker: { source: b.source, version: b.version }, verdicts }, null, 2));
  } else {
    for (const t of traced) console.log(pc.dim(`Your message flow beside the reference solution's: npm run web, then http://127.0.0.1:4173/trace/${t.id}`));
    console.log(summarize(verdicts));
    console.log(nextStep(wb, verdicts, opts));
  }
  return exitCodeFor(verdicts);
}

/**
 * Calls `show` for each verdict in the order of `ids`: a verdict that arrives early waits for
 * those before it, so `check 2` reads 2.1, 2.2, 2.3, 2.4 whichever finishes first.
 */
export function inOrder(ids: string[], show: (v: Verdict) => void): (v: Verdict) => void {
  const arrived = new Map<string, Verdict>();
  let next = 0;
  return (v) => {
    arrived.set(v.id, v);
    while (next < ids.length && arrived.has(ids[next]!)) show(arrived.get(ids[next++]!)!);
  };
}

/** The verdict for an exercise whose file (or check) is missing, instead of an ENOENT stack trace; undefined when all are there. */
export function missingFileVerdict(e: Exercise, target: TargetKind): Verdict | undefined {
  const file = target === 'solution' ? e.solutionPath : e.starterPath;
  const absent = [file, e.checkPath].find((f) => !existsSync(f));
  if (!absent) return undefined;
  const base = { id: e.id, title: e.title, target, targetPath: rel(file), steps: [], notes: [], durationMs: 0 };
  if (absent === e.starterPath) {
    return {
      ...base,
      status: 'failed',
      finding: {
        summary: `Your file ${rel(absent)} is missing, so there is nothing to check.`,
        fix: `npm run reset ${e.id} restores the starter (and starts this exercise's progress over), or put your file back at ${rel(absent)}.`,
      },
    };
  }
  return {
    ...base,
    status: 'error',
    finding: { summary: `${rel(absent)} is missing: the workbook itself is incomplete.`, fix: `Restore it from git: git checkout -- ${rel(absent)}` },
  };
}

function pickExercises(wb: Workbook, ids: string[], opts: CheckOptions): Exercise[] {
  // In the manifest's order (the ids' order), whatever order they were named in.
  if (ids.length) return resolveIds(wb, ids).sort((a, b) => wb.exercises.indexOf(a) - wb.exercises.indexOf(b));
  if (opts.solutions) return wb.exercises;
  const current = currentExercise(wb, loadProgress());
  return current ? [current] : [];
}

/** Said after a verdict of status `error`: the environment or the checker broke, not the learner's code. */
export const ENVIRONMENT_PROBLEM = 'This is a problem with the environment (or the checker), not with your code. Fix what it says (`npm run doctor` helps)';

/** `error` (the environment or the checker broke) wins over `failed`: exit 2 says "not your code". */
export function exitCodeFor(verdicts: Verdict[]): number {
  if (verdicts.some((v) => v.status === 'error')) return EXIT.ENVIRONMENT;
  if (verdicts.some((v) => v.status === 'failed')) return EXIT.FAILED;
  return EXIT.OK;
}

function nextStep(wb: Workbook, verdicts: Verdict[], opts: CheckOptions): string {
  if (verdicts.some((v) => v.status === 'error')) return pc.magenta(`\n${ENVIRONMENT_PROBLEM}, then check again.`);
  if (opts.solutions) return '';
  const failed = verdicts.find((v) => v.status === 'failed');
  if (failed) return pc.dim(`\nStuck? npm run hint ${failed.id}   ·   re-check on every save: npm run watch ${failed.id}`);
  const next = currentExercise(wb, loadProgress());
  return next ? pc.dim(`\nNext: exercise ${next.id} "${next.title}": npm run watch ${next.id}`) : pc.green('\nEvery exercise has passed.');
}

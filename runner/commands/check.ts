// npm run check [ID…] [-- --solutions] [-- --json] [-- --verbose]
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveIds } from '../ids.js';
import { currentExercise, loadProgress, recordResult, updateProgress } from '../progress.js';
import { jobFor, runChecks } from '../check/run.js';
import { formatVerdict, summarize } from '../check/report.js';
import type { Verdict } from '../check/verdict.js';
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

  const b = await broker({ spinner: !opts.json });
  const target = opts.solutions ? 'solution' : 'exercise';
  if (!opts.json) console.log(pc.dim(`Checking ${exercises.length === 1 ? exercises[0]!.id : `${exercises.length} exercises`} (${target}) against RabbitMQ ${b.version}, ${b.description}\n`));

  const verdicts = await runChecks(
    exercises.map((e) => jobFor(e, target)),
    b,
    {
      keepFailedSandbox: !opts.solutions,
      onVerdict: (v) => {
        if (!opts.solutions && (v.status === 'passed' || v.status === 'failed')) recordResult(v.id, v.status === 'passed');
        if (!opts.json) console.log(formatVerdict(v, { verbose: opts.verbose }) + '\n');
      },
    },
  );

  if (opts.json) {
    console.log(JSON.stringify({ broker: { source: b.source, version: b.version }, verdicts }, null, 2));
  } else {
    console.log(summarize(verdicts));
    console.log(nextStep(wb, verdicts, opts));
  }
  return exitCodeFor(verdicts);
}

function pickExercises(wb: Workbook, ids: string[], opts: CheckOptions): Exercise[] {
  if (ids.length) return resolveIds(wb, ids);
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

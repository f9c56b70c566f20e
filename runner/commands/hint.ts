// npm run hint ID: the next hint for that exercise, one more each time.
import pc from 'picocolors';
import { workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { currentExercise, loadProgress, updateProgress } from '../progress.js';
import { EXIT, UserError } from '../exit-codes.js';
import type { Exercise } from '../manifest/load.js';

export async function hintCommand(id: string | undefined, opts: { all?: boolean }): Promise<number> {
  const wb = workbook();
  const exercise = id ? resolveOne(wb, id) : currentExercise(wb, loadProgress());
  if (!exercise) throw new UserError('Every exercise has passed; name one: npm run hint 2.1', EXIT.USAGE);
  let lines = nextHint(exercise, opts);
  if (process.stdout.isTTY) {
    // Wrapped on a terminal only: the wrapping library is not worth loading for a pipe.
    const { indented } = await import('../check/report.js');
    lines = lines.map((line) => indented(0, line, process.stdout.columns));
  }
  console.log(lines.join('\n'));
  return EXIT.OK;
}

/**
 * Records one more hint as shown (all of them with `all`) and returns the lines that show
 * every hint shown so far, unwrapped. `watch`: the next one comes with the h key, not a command.
 */
export function nextHint(exercise: Exercise, opts: { all?: boolean; watch?: boolean }): string[] {
  let shown = 0;
  updateProgress((p) => {
    const entry = (p.exercises[exercise.id] ??= {});
    shown = opts.all ? exercise.hints.length : Math.min((entry.hintsShown ?? 0) + 1, exercise.hints.length);
    entry.hintsShown = Math.max(entry.hintsShown ?? 0, shown);
  });
  const lines = [pc.bold(`Hints for ${exercise.id} ${exercise.title}`)];
  exercise.hints.slice(0, shown).forEach((h, i) => lines.push('', `${pc.yellow(`Hint ${i + 1}/${exercise.hints.length}:`)} ${h}`));
  lines.push(
    '',
    pc.dim(
      shown < exercise.hints.length
        ? opts.watch
          ? 'Press h again for the next hint.'
          : `npm run hint ${exercise.id} again gives the next hint.`
        : `That was the last hint. Still stuck? npm run solution ${exercise.id} -- --force shows the reference solution.`,
    ),
  );
  return lines;
}

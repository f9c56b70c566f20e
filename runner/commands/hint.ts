// npm run hint ID: the next hint for that exercise, one more each time.
import pc from 'picocolors';
import { workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { currentExercise, loadProgress, updateProgress } from '../progress.js';
import { EXIT, UserError } from '../exit-codes.js';

export function hintCommand(id: string | undefined, opts: { all?: boolean }): number {
  const wb = workbook();
  const exercise = id ? resolveOne(wb, id) : currentExercise(wb, loadProgress());
  if (!exercise) throw new UserError('Every exercise has passed; name one: npm run hint 2.1', EXIT.USAGE);
  let shown = 0;
  updateProgress((p) => {
    const entry = (p.exercises[exercise.id] ??= {});
    shown = opts.all ? exercise.hints.length : Math.min((entry.hintsShown ?? 0) + 1, exercise.hints.length);
    entry.hintsShown = Math.max(entry.hintsShown ?? 0, shown);
  });
  console.log(pc.bold(`Hints for ${exercise.id} ${exercise.title}`));
  exercise.hints.slice(0, shown).forEach((h, i) => console.log(`\n${pc.yellow(`Hint ${i + 1}/${exercise.hints.length}:`)} ${h}`));
  console.log(
    pc.dim(
      shown < exercise.hints.length
        ? `\nRun it again for the next hint.`
        : `\nThat was the last hint. Still stuck? npm run solution ${exercise.id} -- --force shows the reference solution.`,
    ),
  );
  return EXIT.OK;
}

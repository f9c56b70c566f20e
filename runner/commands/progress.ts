// npm run progress: every exercise with its status, and where to resume.
import pc from 'picocolors';
import { workbook } from '../session.js';
import { currentExercise, loadProgress, statusOf, type Status } from '../progress.js';
import { EXIT } from '../exit-codes.js';

const MARK: Record<Status, string> = { passed: pc.green('✓'), failed: pc.red('✗'), pending: pc.dim('·') };

export function progressCommand(): number {
  const wb = workbook();
  const progress = loadProgress();
  const current = currentExercise(wb, progress);
  for (const chapter of wb.chapters) {
    console.log(pc.bold(`\n${chapter.number}. ${chapter.title}`) + pc.dim(`   npm run chapter ${chapter.number}`));
    for (const e of chapter.exercises) {
      const status = statusOf(progress, e.id);
      const attempts = progress.exercises[e.id]?.attempts;
      const here = e === current ? pc.cyan('  ← resume here') : '';
      console.log(`  ${MARK[status]} ${e.id.padEnd(5)} ${e.title}${attempts ? pc.dim(` (${attempts} check${attempts > 1 ? 's' : ''})`) : ''}${here}`);
    }
  }
  const passed = wb.exercises.filter((e) => statusOf(progress, e.id) === 'passed').length;
  console.log(`\n${passed} of ${wb.exercises.length} exercises passed.`);
  console.log(current ? `Resume with: ${pc.cyan(`npm run watch ${current.id}`)}  (edit ${current.starterPath.replace(/.*\/exercises\//, 'exercises/')})` : pc.green('All done!'));
  return EXIT.OK;
}

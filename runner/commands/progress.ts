// npm run progress [-- --json]: every exercise with its status, and where to resume.
import pc from 'picocolors';
import { workbook } from '../session.js';
import { currentExercise, loadProgress, statusOf, type Progress, type Status } from '../progress.js';
import { rel } from '../paths.js';
import { EXIT } from '../exit-codes.js';
import type { Chapter, Exercise, Workbook } from '../manifest/load.js';

const MARK: Record<Status, string> = { passed: pc.green('✓'), failed: pc.red('✗'), pending: pc.dim('·') };

export function progressCommand(opts: { json?: boolean } = {}): number {
  const wb = workbook();
  const progress = loadProgress();
  const current = currentExercise(wb, progress);
  if (opts.json) {
    console.log(JSON.stringify(progressJson(wb, progress, current), null, 2));
    return EXIT.OK;
  }
  for (const chapter of wb.chapters) {
    console.log(pc.bold(`\n${chapter.number}. ${chapter.title}`) + pc.dim(`   npm run chapter ${chapter.number}`));
    for (const line of exerciseLines(chapter, progress, current)) console.log(line);
  }
  console.log(`\n${passedCount(wb, progress)}`);
  console.log(current ? `Resume with: ${pc.cyan(`npm run watch ${current.id}`)}  (edit ${rel(current.starterPath)})` : pc.green('All done!'));
  return EXIT.OK;
}

/** One line per exercise of `chapter`: its status, id, title, checks so far, and a mark on `current`. */
export function exerciseLines(chapter: Chapter, progress: Progress, current: Exercise | undefined): string[] {
  return chapter.exercises.map((e) => {
    const attempts = progress.exercises[e.id]?.attempts;
    const here = e === current ? pc.cyan('  ← resume here') : '';
    return `  ${MARK[statusOf(progress, e.id)]} ${e.id.padEnd(5)} ${e.title}${attempts ? pc.dim(` (${attempts} check${attempts > 1 ? 's' : ''})`) : ''}${here}`;
  });
}

export function passedCount(wb: Workbook, progress: Progress): string {
  const passed = wb.exercises.filter((e) => statusOf(progress, e.id) === 'passed').length;
  return `${passed} of ${wb.exercises.length} exercises passed.`;
}

/** For instructors collecting a class's progress: every exercise with its status, attempts and hints. */
function progressJson(wb: Workbook, progress: Progress, current: Exercise | undefined) {
  return {
    current: current?.id ?? null,
    passed: wb.exercises.filter((e) => statusOf(progress, e.id) === 'passed').length,
    total: wb.exercises.length,
    exercises: wb.exercises.map((e) => {
      const entry = progress.exercises[e.id] ?? {};
      return {
        id: e.id,
        title: e.title,
        chapter: e.chapter,
        status: statusOf(progress, e.id),
        attempts: entry.attempts ?? 0,
        hintsShown: entry.hintsShown ?? 0,
        lastCheckedAt: entry.lastCheckedAt ?? null,
        passedAt: entry.passedAt ?? null,
      };
    }),
  };
}

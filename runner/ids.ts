// Turns what the learner typed ("2", "2.1", "chapter 2") into exercises, and a typo
// into a helpful message with the nearest valid ids.
import { distance } from 'fastest-levenshtein';
import type { Exercise, Workbook } from './manifest/load.js';
import { EXIT, UserError } from './exit-codes.js';

export function resolveIds(workbook: Workbook, args: string[]): Exercise[] {
  const out: Exercise[] = [];
  for (const raw of args) {
    const arg = raw.trim();
    if (/^\d+$/.test(arg)) {
      const chapter = workbook.chapter(Number(arg));
      if (!chapter) throw unknown(workbook, arg);
      if (chapter.exercises.length === 0) throw new UserError(`Chapter ${arg} has no exercises.`, EXIT.USAGE);
      out.push(...chapter.exercises);
      continue;
    }
    const exercise = workbook.exercise(arg);
    if (!exercise) throw unknown(workbook, arg);
    out.push(exercise);
  }
  return [...new Set(out)];
}

/** One exercise (hint, reset, watch, solution): a chapter's number gets a message naming its exercises. */
export function resolveOne(workbook: Workbook, arg: string): Exercise {
  const exercise = workbook.exercise(arg.trim());
  if (exercise) return exercise;
  const chapter = /^\d+$/.test(arg.trim()) ? workbook.chapter(Number(arg)) : undefined;
  if (chapter) {
    const ids = chapter.exercises.map((e) => e.id);
    throw new UserError(
      ids.length
        ? `${arg.trim()} is a chapter; name one of its exercises: ${ids.join(', ')}.`
        : `${arg.trim()} is a chapter, and it has no exercises.`,
      EXIT.USAGE,
    );
  }
  throw unknown(workbook, arg);
}

export function resolveChapter(workbook: Workbook, arg: string) {
  const chapter = /^\d+$/.test(arg.trim()) ? workbook.chapter(Number(arg)) : undefined;
  if (!chapter) {
    const all = workbook.chapters.map((c) => String(c.number));
    throw new UserError(`There is no chapter "${arg}". Chapters: ${all.join(', ')}.`, EXIT.USAGE);
  }
  return chapter;
}

/** The ids closest to `arg`, for "did you mean". */
export function nearestIds(workbook: Workbook, arg: string, count = 3): string[] {
  const candidates = [...workbook.exercises.map((e) => e.id), ...workbook.chapters.map((c) => String(c.number))];
  return candidates
    .map((id) => ({ id, d: distance(arg, id) }))
    .sort((a, b) => a.d - b.d || a.id.localeCompare(b.id, undefined, { numeric: true }))
    .slice(0, count)
    .map((x) => x.id);
}

function unknown(workbook: Workbook, arg: string): UserError {
  return new UserError(
    `There is no exercise or chapter "${arg}". Did you mean ${nearestIds(workbook, arg).join(', ')}?\n` +
      'List them all with: npm run progress',
    EXIT.USAGE,
  );
}

// The learner's progress, in .workbook/progress.json (git-ignored). Written atomically;
// a file that does not parse is moved aside, never silently overwritten.
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { paths } from './paths.js';
import type { Exercise, Workbook } from './manifest/load.js';

export interface ProgressEntry {
  status?: 'failed' | 'passed';
  attempts?: number;
  hintsShown?: number;
  lastCheckedAt?: string;
  passedAt?: string;
}

export interface Progress {
  version: 1;
  /** The exercise the learner last chose (check ID, watch ID, reset ID). */
  current?: string;
  exercises: Record<string, ProgressEntry>;
}

export type Status = 'pending' | 'failed' | 'passed';

// Checked by hand, not with zod: every command reads this file, and loading zod costs more
// than the rest of `npm run progress`. The shape is small and only this module writes it.
const count = (v: unknown) => v === undefined || (Number.isInteger(v) && (v as number) >= 0);
const text = (v: unknown) => v === undefined || typeof v === 'string';
const isEntry = (e: unknown): e is ProgressEntry => {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return false;
  const { status, attempts, hintsShown, lastCheckedAt, passedAt } = e as Record<string, unknown>;
  return (status === undefined || status === 'failed' || status === 'passed') && count(attempts) && count(hintsShown) && text(lastCheckedAt) && text(passedAt);
};
function isProgress(p: unknown): p is Progress {
  if (typeof p !== 'object' || p === null) return false;
  const { version, current, exercises } = p as Record<string, unknown>;
  return version === 1 && text(current) && typeof exercises === 'object' && exercises !== null && !Array.isArray(exercises) && Object.values(exercises).every(isEntry);
}

export function loadProgress(file = paths.progress): Progress {
  if (!existsSync(file)) return { version: 1, exercises: {} };
  try {
    const progress: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (isProgress(progress)) return progress;
  } catch {
    // not JSON: moved aside, as a file of the wrong shape is
  }
  const aside = `${file}.unreadable-${Date.now()}`;
  renameSync(file, aside);
  process.stderr.write(`Your progress file could not be read; it was moved to ${aside} and a new one started.\n`);
  return { version: 1, exercises: {} };
}

export function saveProgress(progress: Progress, file = paths.progress): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(progress, null, 2) + '\n');
  renameSync(tmp, file);
}

export function statusOf(progress: Progress, id: string): Status {
  return progress.exercises[id]?.status ?? 'pending';
}

/** Applies `change` to the stored progress and saves it (read-modify-write, so parallel commands lose little). */
export function updateProgress(change: (p: Progress) => void, file = paths.progress): Progress {
  const progress = loadProgress(file);
  change(progress);
  saveProgress(progress, file);
  return progress;
}

export function recordResult(id: string, passed: boolean, file = paths.progress): void {
  updateProgress((p) => {
    const entry = (p.exercises[id] ??= {});
    entry.attempts = (entry.attempts ?? 0) + 1;
    entry.lastCheckedAt = new Date().toISOString();
    // Once passed, an exercise stays passed: a later experiment that fails does not undo it.
    if (passed) {
      entry.status = 'passed';
      entry.passedAt ??= entry.lastCheckedAt;
    } else if (entry.status !== 'passed') {
      entry.status = 'failed';
    }
  }, file);
}

/** Where to resume: the chosen exercise while it is not passed, else the first one not passed after it, else the first not passed. */
export function currentExercise(workbook: Workbook, progress: Progress): Exercise | undefined {
  const list = workbook.exercises;
  const chosen = list.findIndex((e) => e.id === progress.current);
  const notPassed = (e: Exercise) => statusOf(progress, e.id) !== 'passed';
  if (chosen >= 0 && notPassed(list[chosen]!)) return list[chosen];
  return list.slice(Math.max(chosen, 0)).find(notPassed) ?? list.find(notPassed);
}

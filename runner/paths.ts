// Where things live. Every other module asks here instead of building paths itself,
// so moving a folder is a one-line change.
import path from 'node:path';
import { ROOT } from './build.mjs';

// The runner usually runs compiled, from .workbook/build/ (runner/build.mjs knows the root).
export { ROOT };

/** Learner state: progress, backups, the private broker. Git-ignored. */
export const STATE_DIR = process.env.WORKBOOK_STATE_DIR ?? path.join(ROOT, '.workbook');

export const paths = {
  /** WORKBOOK_MANIFEST lets authors try a chapter's block on its own before merging it. */
  manifest: process.env.WORKBOOK_MANIFEST ?? path.join(ROOT, 'manifest.yaml'),
  chapters: path.join(ROOT, 'chapters'),
  exercises: path.join(ROOT, 'exercises'),
  solutions: path.join(ROOT, 'solutions'),
  checks: path.join(ROOT, 'checks'),
  progress: path.join(STATE_DIR, 'progress.json'),
  backups: path.join(STATE_DIR, 'backups'),
  broker: path.join(STATE_DIR, 'broker'),
};

/** A path relative to the project root, for messages a learner reads. */
export function rel(p: string): string {
  return path.relative(process.cwd(), p) || '.';
}

// Saves what the workbook's authors need to fix a bug in a check: which exercise and file,
// the error with its stack (in the TypeScript sources), what the checker had done so far, and
// the versions involved. One JSON file per bug, under <state dir>/reports/.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mapCompiledPaths } from './source-map.js';

export interface BugDetails {
  id: string;
  /** The file under check (the learner's, a solution, a variant). */
  targetPath: string;
  error: unknown;
  steps: string[];
  brokerVersion: string;
}

/** Writes the report and returns its path; undefined when it could not be written. */
export async function saveBugReport(bug: BugDetails): Promise<string | undefined> {
  try {
    // Imported here, not at the top: paths.js loads the build module (esbuild), which a check worker otherwise never needs.
    const { STATE_DIR } = await import('../paths.js');
    const dir = path.join(STATE_DIR, 'reports');
    mkdirSync(dir, { recursive: true });
    const timestamp = new Date().toISOString();
    const stack = bug.error instanceof Error ? (bug.error.stack ?? bug.error.message) : String(bug.error);
    const report = {
      exercise: bug.id,
      targetPath: path.relative(process.cwd(), bug.targetPath),
      error: mapCompiledPaths(stack),
      steps: bug.steps,
      brokerVersion: bug.brokerVersion,
      nodeVersion: process.version,
      timestamp,
    };
    const base = path.join(dir, `${bug.id}-${timestamp.replace(/[:.]/g, '-')}`);
    // Checks of one exercise run side by side (the self-check): never overwrite another's report.
    for (let n = 1; ; n++) {
      const file = n === 1 ? `${base}.json` : `${base}-${n}.json`;
      try {
        writeFileSync(file, JSON.stringify(report, null, 2) + '\n', { flag: 'wx' });
        return file;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n > 20) throw err;
      }
    }
  } catch {
    return undefined;
  }
}

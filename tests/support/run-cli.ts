// Runs the workbook's CLI as a learner or an instructor would (`npm run X` is `node runner/start.mjs X`),
// with exactly the environment given, and returns its exit code and what it printed, without colours.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify, stripVTControlCharacters as plain } from 'node:util';

const root = path.resolve(import.meta.dirname, '..', '..');

export async function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; stdout: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', ...args], { cwd: root, env });
    return { code: 0, out: plain(stdout + stderr), stdout: plain(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: plain(e.stdout + e.stderr), stdout: plain(e.stdout) };
  }
}

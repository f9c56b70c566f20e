// `npm run capstone -- down`: stops everything `up` started. A running `up` (in another
// terminal) is asked to stop, which stops its relay, receiver and Odoo stand-in and drops
// its database; a relay or receiver left behind by an `up` that was killed outright is
// stopped by its pid; then the embedded Postgres.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { stopSharedCluster } from './pg.js';
import { clearUpState, isAlive, readUpFile } from './stack.js';

const execFileP = promisify(execFile);

/** Stops it all; returns one line per thing it stopped (or found stopped). */
export async function down(): Promise<string[]> {
  const said: string[] = [];
  const up = readUpFile();
  if (up && isAlive(up.pid) && (await isCapstone(up.pid))) {
    process.kill(up.pid, 'SIGTERM');
    // It stops its children (5 s at most, then kills them), the stand-in and its database.
    const stopped = await exited(up.pid, 20_000);
    said.push(stopped ? `Stopped \`up\` (pid ${up.pid}), with its relay, receiver and Odoo stand-in.` : `\`up\` (pid ${up.pid}) did not stop within 20 s.`);
  }
  for (const [name, pid] of Object.entries(up?.parts ?? {})) {
    if (!pid || !isAlive(pid) || !(await isCapstone(pid))) continue;
    process.kill(pid, 'SIGTERM');
    if (!(await exited(pid, 5_000))) process.kill(pid, 'SIGKILL');
    said.push(`Stopped the ${name} that was left running (pid ${pid}).`);
  }
  clearUpState();
  said.push((await stopSharedCluster()) ? 'Postgres stopped.' : 'Postgres was not running.');
  return said;
}

/** True when that pid runs a part of the capstone (not another program that got the pid since). */
async function isCapstone(pid: number): Promise<boolean> {
  try {
    const { stdout } = await execFileP('ps', ['-o', 'args=', '-p', String(pid)]);
    return /capstone/.test(stdout);
  } catch {
    return false;
  }
}

async function exited(pid: number, withinMs: number): Promise<boolean> {
  for (const end = Date.now() + withinMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    if (!isAlive(pid)) return true;
  }
  return !isAlive(pid);
}

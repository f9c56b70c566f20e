// `npm run capstone -- down` stops everything `up` started: a running `up` with its relay
// and receiver, and the relay and receiver that an `up` killed outright (SIGKILL) left behind.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..', '..');
const tsx = path.join(root, 'node_modules/tsx/dist/cli.mjs');
// A state directory of its own (its own Postgres), on the test run's broker. Open to other
// users: as root, Postgres runs as another user and keeps its data there.
const state = mkdtempSync(path.join(tmpdir(), 'wb-updown-'));
chmodSync(state, 0o755);
const { DATABASE_URL: _db, ODOO_URL: _odoo, WORKBOOK_BROKER: _forced, ...inherited } = process.env;
const env = { ...inherited, WORKBOOK_STATE_DIR: state, RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl };
const started: ChildProcess[] = [];

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `up` and waits until it has written the pids of its relay and receiver. */
async function up(): Promise<{ pid: number; relay: number; receiver: number }> {
  const child = spawn(process.execPath, [tsx, 'capstone/cli.ts', 'up', '--status-every', '60'], { cwd: root, env, stdio: 'ignore' });
  started.push(child);
  for (const end = Date.now() + 90_000; Date.now() < end; await sleep(200)) {
    try {
      const s = JSON.parse(readFileSync(path.join(state, 'capstone', 'up.json'), 'utf8')) as { pid: number; parts?: { relay?: number; receiver?: number } };
      if (s.parts?.relay && s.parts.receiver) return { pid: s.pid, relay: s.parts.relay, receiver: s.parts.receiver };
    } catch {
      /* not written yet */
    }
  }
  throw new Error('`capstone up` did not start its relay and receiver within 90 s');
}

const down = async () => (await promisify(execFile)(process.execPath, [tsx, 'capstone/cli.ts', 'down'], { cwd: root, env, timeout: 60_000 })).stdout;

afterAll(async () => {
  for (const c of started) c.kill('SIGKILL');
  await down().catch(() => undefined);
  rmSync(state, { recursive: true, force: true });
});

describe('capstone down', () => {
  it('stops a running `up`, which stops its relay and receiver', async () => {
    const parts = await up();
    const said = await down();
    expect(said).toMatch(/Stopped `up`/);
    expect(said).toMatch(/Postgres stopped/);
    for (const pid of [parts.pid, parts.relay, parts.receiver]) expect(alive(pid), `pid ${pid}`).toBe(false);
  }, 150_000);

  it('stops the relay and receiver of an `up` that was killed outright', async () => {
    const parts = await up();
    process.kill(parts.pid, 'SIGKILL');
    await sleep(500);
    expect(alive(parts.relay)).toBe(true); // orphans, still consuming
    const said = await down();
    expect(said).toMatch(/Stopped the relay that was left running/);
    expect(said).toMatch(/Stopped the receiver that was left running/);
    for (const pid of [parts.relay, parts.receiver]) expect(alive(pid), `pid ${pid}`).toBe(false);
  }, 150_000);
});

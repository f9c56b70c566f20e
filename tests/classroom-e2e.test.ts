// The README's section for instructors, tried end to end with its own commands only: from
// nothing to 25 provisioned learners and a live dashboard. The instructor checks the broker
// (doctor) and guest (lock-guest), creates the class, starts the dashboard and logs in; two
// learners join from state folders of their own and each runs a check of their own code; the
// instructor sees both verdicts arrive over the dashboard's live stream (server-sent events)
// and in its snapshot, lists the class, and destroys it. No browser here: the page's own
// requests, made by hand (tests/dashboard.browser.test.ts drives the page in Chromium).
// The class has a random name and is destroyed at the end, whatever happens.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify, stripVTControlCharacters as plain } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { managementFor } from '../runner/broker/management.js';
import { belongsToClass } from '../runner/classroom/names.js';
import { destroyClass } from '../runner/classroom/provision.js';
import type { ClassFile } from '../runner/classroom/files.js';
import type { Cell, Snapshot } from '../runner/dashboard/state.js';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
const admin = managementFor(broker);
const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _murl, ...inherited } = process.env;

const name = `e${randomBytes(3).toString('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), 'wb-class-e2e-'));
const classDir = path.join(work, 'class');
/** README step 1: the administrator's credentials, on the instructor's machine only. */
const instructorEnv = { ...inherited, WORKBOOK_STATE_DIR: path.join(work, 'instructor'), RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl };
/** A learner's machine: their own state folder, and no administrator anywhere. */
const learnerEnv = (s: string) => ({ ...inherited, WORKBOOK_STATE_DIR: path.join(work, `learner-${s}`), RABBITMQ_URL: 'amqp://not-the-admin:nope@localhost:1', RABBITMQ_MANAGEMENT_URL: 'http://not-the-admin:nope@localhost:1' });

async function npmRun(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', ...args], { cwd: root, env, maxBuffer: 8 << 20 });
    return { code: 0, out: plain(stdout + stderr), stdout: plain(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: plain(e.stdout + e.stderr), stdout: plain(e.stdout) };
  }
}

let dashboard: ChildProcess | undefined;
let dashboardOut = '';
let stream: AbortController | undefined;

afterAll(async () => {
  stream?.abort();
  if (dashboard && dashboard.exitCode === null) {
    const ended = new Promise((r) => dashboard!.once('exit', r));
    dashboard.kill('SIGTERM');
    await ended;
  }
  const file = path.join(classDir, 'class.json');
  if (existsSync(file)) await destroyClass(admin, JSON.parse(readFileSync(file, 'utf8')) as ClassFile).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

/** `npm run classroom -- dashboard`, on any free port; resolves with its address once it serves. */
function startDashboard(): Promise<string> {
  const child = spawn(process.execPath, ['runner/start.mjs', 'classroom', 'dashboard', '--out', classDir, '--port', '0'], { cwd: root, env: instructorEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  dashboard = child;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      dashboardOut += plain(chunk.toString());
      const found = /http:\/\/127\.0\.0\.1:\d+\//.exec(dashboardOut);
      if (found) resolve(found[0]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`the dashboard ended (${code}): ${dashboardOut}`)));
  });
}

/** The dashboard's live stream, as the page reads it: every `update` event's cell, as it comes. */
async function follow(url: string, cookie: string, cells: Cell[]): Promise<Snapshot> {
  stream = new AbortController();
  const res = await fetch(`${url}events`, { headers: { cookie, accept: 'text/event-stream' }, signal: stream.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let first: ((s: Snapshot) => void) | undefined;
  const snapshot = new Promise<Snapshot>((resolve) => (first = resolve));
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(message)?.[1];
        const data = /^data: (.*)$/m.exec(message)?.[1];
        if (type === 'snapshot' && data) first?.(JSON.parse(data) as Snapshot);
        if (type === 'update' && data) {
          const { cell } = JSON.parse(data) as { cell?: Cell };
          if (cell) cells.push(cell);
        }
      }
    }
  })();
  return snapshot;
}

describe("the README's instructor section, end to end", () => {
  it('goes from nothing to 25 provisioned learners with a live dashboard, and back to nothing', async () => {
    // Step 1: the broker and its administrator; guest cannot be used by learners on other machines.
    const doctor = await npmRun(['doctor'], instructorEnv);
    expect(doctor.code).toBe(0);
    const guest = await npmRun(['classroom', 'lock-guest'], instructorEnv);
    expect(guest.code).toBe(0);
    expect(guest.out).toMatch(/^✓ /m);

    // Step 2: the class.
    const created = await npmRun(['classroom', 'create', '--students', '25', '--name', name, '--out', classDir], instructorEnv);
    expect(created.out).toMatch(/25 learner\(s\), 126 vhosts, 26 users/);
    expect(created.code).toBe(0);
    const joinFiles = readdirSync(path.join(classDir, 'students')).sort();
    expect(joinFiles).toHaveLength(25);
    expect(joinFiles[0]).toBe('s01.json');
    expect(joinFiles.at(-1)).toBe('s25.json');

    // Step 5: the dashboard, logged in with the password of class.json.
    const url = await startDashboard();
    const cls = JSON.parse(readFileSync(path.join(classDir, 'class.json'), 'utf8')) as ClassFile;
    // Nothing but the login page without a session.
    const anonymous = await fetch(`${url}snapshot`, { redirect: 'manual' });
    expect([anonymous.status, anonymous.headers.get('location')]).toEqual([303, '/login']);
    expect((await fetch(`${url}events`, { headers: { accept: 'text/event-stream' } })).status).toBe(401);
    const login = await fetch(`${url}login`, { method: 'POST', redirect: 'manual', body: new URLSearchParams({ password: cls.dashboard!.password }) });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const cells: Cell[] = [];
    const before = await follow(url, cookie, cells);
    expect(before.learners).toHaveLength(25);
    expect(before.cells).toEqual([]);

    // Step 3: two learners join, each on their own machine, and check their own code.
    const verdicts: Record<string, string> = {};
    for (const [s, exercise] of [['s07', '2.1'], ['s19', '3.1']] as const) {
      const joined = await npmRun(['classroom', 'join', path.join(classDir, 'students', `${s}.json`)], learnerEnv(s));
      expect(joined.out).toMatch(new RegExp(`Joined class "${name}" as learner ${s}`));
      expect(joined.code).toBe(0);
      const checked = await npmRun(['check', exercise, '--json'], learnerEnv(s));
      const json = JSON.parse(checked.stdout.slice(checked.stdout.indexOf('{'))) as { broker: { source: string }; verdicts: { id: string; status: string }[] };
      expect(json.broker.source).toBe('classroom');
      expect(checked.out).not.toMatch(/dashboard did not get/);
      verdicts[s] = json.verdicts[0]!.status === 'error' ? 'broken' : json.verdicts[0]!.status;
    }

    // The instructor sees both, live, and in the snapshot a page gets when it opens.
    await expect.poll(() => cells.map((c) => `${c.learner} ${c.exercise} ${c.last.verdict}`).sort(), { timeout: 15_000 })
      .toEqual([`s07 2.1 ${verdicts.s07}`, `s19 3.1 ${verdicts.s19}`]);
    const snapshot = (await (await fetch(`${url}snapshot`, { headers: { cookie } })).json()) as Snapshot;
    expect(snapshot.cells.map((c) => `${c.learner} ${c.exercise} ${c.attempts}`).sort()).toEqual(['s07 2.1 1', 's19 3.1 1']);
    expect(snapshot.exercises.map((e) => e.id)).toEqual(['2.1', '3.1']);

    // Step 4: the class at a glance.
    const listed = await npmRun(['classroom', 'list', '--out', classDir], instructorEnv);
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(new RegExp(`cls-${name}-s25`));

    // Step 6: destroy, and nothing of the class is left.
    const destroyed = await npmRun(['classroom', 'destroy', '--out', classDir], instructorEnv);
    expect(destroyed.out).toMatch(/126 vhosts and 26 users deleted/);
    expect(destroyed.code).toBe(0);
    const [users, vhosts] = await Promise.all(['users', 'vhosts'].map(async (what) => ((await admin.request<{ name: string }[]>('GET', `/${what}?columns=name`)) ?? []).map((o) => o.name)));
    expect([...users!, ...vhosts!].filter((n) => belongsToClass(name, n))).toEqual([]);
    expect(existsSync(path.join(classDir, 'class.json'))).toBe(false);
  });
});

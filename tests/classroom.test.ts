// A class on the test broker, as an instructor and three learners would use it: provisioned
// with administrator credentials, joined by learner s01 in a state folder of their own, whose
// checks then run with s01's credentials alone, in s01's pool of vhosts. The learners cannot
// reach each other's vhosts nor read the classroom exchange; reset and destroy touch only what
// they should. The class has a random name and is destroyed at the end, whatever happens.
import { once } from 'node:events';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { runCli } from './support/run-cli.js';
import { ManagementClient, managementFor } from '../runner/broker/management.js';
import { amqpHandshake } from '../runner/broker/probe.js';
import { belongsToClass } from '../runner/classroom/names.js';
import { destroyClass } from '../runner/classroom/provision.js';
import type { ClassFile, JoinFile } from '../runner/classroom/files.js';

const broker = inject('broker');
const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _murl, ...inherited } = process.env;
const admin = managementFor(broker);

const name = `t${randomBytes(3).toString('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), 'wb-classroom-'));
const classDir = path.join(work, 'class');
const learnerState = path.join(work, 'learner-s01');

/** The instructor's commands: the administrator of the test broker, through RABBITMQ_URL. */
const asInstructor = (args: string[]) =>
  cli(args, { WORKBOOK_STATE_DIR: path.join(work, 'instructor'), RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl });
/**
 * The learner's commands: no administrator anywhere in their environment. RABBITMQ_URL points
 * at nothing, so a runner that used it instead of the joined classroom would fail at once.
 */
const asLearner = (args: string[]) =>
  cli(args, { WORKBOOK_STATE_DIR: learnerState, RABBITMQ_URL: 'amqp://not-the-admin:nope@localhost:1', RABBITMQ_MANAGEMENT_URL: 'http://not-the-admin:nope@localhost:1' });

const cli = (args: string[], env: Record<string, string>) => runCli(args, { ...inherited, ...env });

const readJson = <T>(file: string) => JSON.parse(readFileSync(file, 'utf8')) as T;
const join = (s: string) => readJson<JoinFile>(path.join(classDir, 'students', `${s}.json`));
const url = (j: JoinFile, vhost: string) => `amqp://${encodeURIComponent(j.user)}:${encodeURIComponent(j.password)}@${new URL(j.amqpUrls[0]!).host}/${encodeURIComponent(vhost)}`;
const mgmtAs = (j: JoinFile) => new ManagementClient(j.managementUrl, j.user, j.password);
const names = async (what: 'vhosts' | 'users') => ((await admin.request<{ name: string }[]>('GET', `/${what}?columns=name`)) ?? []).map((o) => o.name);

/** What an AMQP operation ends with: 'ok', or the broker's reply code and text. */
async function outcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

let usersBefore: string[] = [];
let vhostsBefore: string[] = [];

beforeAll(async () => {
  [usersBefore, vhostsBefore] = await Promise.all([names('users'), names('vhosts')]);
});

afterAll(async () => {
  // Whatever failed above: nothing of the class stays on the shared broker.
  const file = path.join(classDir, 'class.json');
  if (existsSync(file)) await destroyClass(admin, readJson<ClassFile>(file)).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe('a classroom on a shared broker', () => {
  it('create provisions three learners, with join files only their owner can read', async () => {
    const { code, out } = await asInstructor(['classroom', 'create', '--students', '3', '--name', name, '--out', classDir]);
    expect(out).toMatch(/3 learner\(s\), 16 vhosts, 4 users/);
    expect(code).toBe(0);
    const cls = readJson<ClassFile>(path.join(classDir, 'class.json'));
    expect(cls.students.map((s) => s.id)).toEqual(['s01', 's02', 's03']);
    for (const file of ['class.json', 'students/s01.json', 'students/s03.json']) expect(statSync(path.join(classDir, file)).mode & 0o777).toBe(0o600);

    const user = await admin.request<{ tags: string | string[] }>('GET', `/users/${encodeURIComponent(join('s01').user)}`);
    expect([user!.tags].flat().join(',').split(',').sort()).toEqual(['management', 'policymaker']);
    const shared = await admin.request<{ configure: string; write: string; read: string }>('GET', `/permissions/${encodeURIComponent(cls.classroomVhost)}/${encodeURIComponent(join('s01').user)}`);
    expect(shared).toMatchObject({ configure: '', write: '^checks$', read: '' });
    const limits = await admin.request<{ value: Record<string, number> }[]>('GET', `/vhost-limits/${encodeURIComponent(join('s01').pool[0]!)}`);
    expect(limits?.[0]?.value).toMatchObject({ 'max-connections': 30, 'max-queues': 100 });
    const policies = await admin.request<{ definition: Record<string, number> }[]>('GET', `/operator-policies/${encodeURIComponent(join('s01').pool[0]!)}`);
    expect(Object.keys(policies?.[0]?.definition ?? {}).sort()).toEqual(['expires', 'max-length', 'max-length-bytes', 'message-ttl']);
  });

  it("a learner's checks run with the learner's own account, in the learner's pool, and give the right verdicts", async () => {
    const joined = await asLearner(['classroom', 'join', path.join(classDir, 'students', 's01.json')]);
    expect(joined.out).toMatch(/Joined class/);
    expect(joined.code).toBe(0);
    expect(statSync(path.join(learnerState, 'classroom.json')).mode & 0o777).toBe(0o600);

    const { code, stdout } = await asLearner(['check', '2.1', '2.3', '3.1', '3.2', '--solutions', '--json']);
    const json = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { broker: { source: string }; verdicts: { id: string; status: string; vhost: string; finding?: { summary: string } }[] };
    expect(json.broker.source).toBe('classroom');
    // Each verdict with its summary when it did not pass: a failure here says what went wrong.
    expect(json.verdicts.map((v) => (v.status === 'passed' ? `${v.id} passed` : `${v.id} ${v.status}: ${v.finding?.summary}`))).toEqual(['2.1 passed', '2.3 passed', '3.1 passed', '3.2 passed']);
    expect(code).toBe(0);
    const pool = join('s01').pool;
    for (const v of json.verdicts) expect(pool).toContain(v.vhost);
    // Given back empty.
    for (const v of pool) expect(await admin.queues(v)).toEqual([]);

    // The solution passes and every known-wrong variant fails with its expected words.
    const self = await asLearner(['selfcheck', '2.1']);
    expect(self.out).toMatch(/wrong confirm-not-awaited failed as expected/);
    expect(self.out).toMatch(/The workbook checks out/);
    expect(self.code).toBe(0);

    // A check that needs an administrator is skipped, never failed.
    const skipped = await asLearner(['check', '2.4', '--solutions']);
    expect(skipped.out).toMatch(/needs administrator rights, which a classroom account does not have \(ask your instructor\)/);
    expect(skipped.code).toBe(0);

    const doctor = await asLearner(['doctor']);
    expect(doctor.out).toMatch(/Mode\s+│ classroom/);
  });

  it("a learner cannot reach another learner's vhosts, nor read the classroom exchange", async () => {
    const s01 = join('s01');
    const s02 = join('s02');
    for (const v of [s02.pool[0]!, s02.demoVhost]) {
      // amqplib says only "Expected ConnectionOpenOk"; the runner's own handshake reads the broker's reply.
      const opened = await amqpHandshake(url(s01, '').replace(/\/$/, ''), v);
      expect(opened).toMatchObject({ kind: 'vhost-refused', reply: expect.stringMatching(/NOT_ALLOWED/) });
      // The management API refuses too: no peeking at queues, no policy on someone else's vhost.
      await expect(mgmtAs(s01).queues(v)).rejects.toMatchObject({ status: 401 });
      await expect(mgmtAs(s01).setPolicy(v, 'mine', { pattern: '.*', definition: { 'max-length': 1 } })).rejects.toMatchObject({ status: 401 });
    }

    // The instructor's queue, the only kind that may read the events exchange.
    const instructor = readJson<ClassFile>(path.join(classDir, 'class.json')).instructor;
    const teacher = new ManagementClient(broker.managementUrl, instructor.user, instructor.password);
    await teacher.request('PUT', `/queues/${encodeURIComponent(s01.classroomVhost)}/instructor.events`, { durable: false, auto_delete: false });

    const conn = await amqp.connect(url(s01, s01.classroomVhost));
    conn.on('error', () => undefined);
    try {
      const onChannel = async (fn: (ch: amqp.ConfirmChannel) => Promise<unknown>) => {
        const ch = await conn.createConfirmChannel();
        // A refused publish closes the channel; amqplib then says only "channel closed", its 'error' event says why.
        let closedWith = '';
        ch.on('error', (err: Error) => (closedWith = err.message));
        const result = await outcome(() => fn(ch));
        await ch.close().catch(() => undefined);
        return closedWith || result;
      };
      // Write: the events exchange only.
      expect(await onChannel(async (ch) => {
        ch.publish(s01.exchange, 'check.s01.2.1', Buffer.from('{"verdict":"passed"}'));
        await ch.waitForConfirms();
      })).toBe('ok');
      expect(await onChannel(async (ch) => {
        ch.publish('amq.topic', 'x', Buffer.from('x'));
        await ch.waitForConfirms();
      })).toMatch(/ACCESS_REFUSED/);
      // Configure and read: nothing.
      expect(await onChannel((ch) => ch.assertQueue('eavesdrop'))).toMatch(/ACCESS_REFUSED/);
      expect(await onChannel((ch) => ch.assertQueue('', { exclusive: true }))).toMatch(/ACCESS_REFUSED/);
      expect(await onChannel((ch) => ch.bindQueue('instructor.events', s01.exchange, '#'))).toMatch(/ACCESS_REFUSED/);
      expect(await onChannel((ch) => ch.get('instructor.events'))).toMatch(/ACCESS_REFUSED/);
      expect(await onChannel((ch) => ch.assertExchange('mine', 'fanout'))).toMatch(/ACCESS_REFUSED/);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });

  it("reset empties one learner's vhosts and leaves the others' alone", async () => {
    const s01 = join('s01');
    const s02 = join('s02');
    await mgmtAs(s01).request('PUT', `/queues/${encodeURIComponent(s01.demoVhost)}/left-behind`, { durable: true });
    await mgmtAs(s01).setPolicy(s01.pool[1]!, 'left-behind', { pattern: '.*', definition: { 'max-length': 5 } });
    await mgmtAs(s02).request('PUT', `/queues/${encodeURIComponent(s02.demoVhost)}/keep-me`, { durable: true });

    const { code, out } = await asInstructor(['classroom', 'reset', 's01', '--out', classDir]);
    expect(out).toMatch(/removed 1 queue\(s\) \(left-behind\)/);
    expect(code).toBe(0);
    expect(await admin.queues(s01.demoVhost)).toEqual([]);
    expect(await mgmtAs(s01).request('GET', `/policies/${encodeURIComponent(s01.pool[1]!)}`)).toEqual([]);
    expect((await admin.queues(s02.demoVhost)).map((q) => q.name)).toEqual(['keep-me']);
  });

  it('destroy removes everything of the class, and nothing else', async () => {
    const { code, out } = await asInstructor(['classroom', 'destroy', '--out', classDir]);
    expect(out).toMatch(/16 vhosts and 4 users deleted/);
    expect(code).toBe(0);
    const [users, vhosts] = await Promise.all([names('users'), names('vhosts')]);
    expect([...users, ...vhosts].filter((n) => belongsToClass(name, n))).toEqual([]);
    // Users rarely come and go on the shared broker; vhosts do (other runs' sandboxes and demos), so "/" stands for them.
    expect(usersBefore.filter((u) => !users.includes(u))).toEqual([]);
    expect(vhostsBefore).toContain('/');
    expect(vhosts).toContain('/');
    expect(existsSync(path.join(classDir, 'class.json'))).toBe(false);

    // The learner's runner now says the class is gone (never a verdict on their code).
    const after = await asLearner(['check', '2.1', '--solutions']);
    expect(after.code).toBe(2);
    expect(after.out).toMatch(/refused the login|no access/);
    expect((await asLearner(['classroom', 'leave'])).out).toMatch(/Left class/);
  });
});

describe("a learner's pool of sandbox vhosts", () => {
  it('gives concurrent checks different vhosts, makes a check wait for a free one, and takes over the lock of a dead process', async () => {
    // The locks live in the state folder: a fresh one, read when the module loads.
    const state = mkdtempSync(path.join(tmpdir(), 'wb-pool-'));
    process.env.WORKBOOK_STATE_DIR = state;
    vi.resetModules();
    try {
      const { borrowVhost } = await import('../runner/classroom/pool.js');
      const emptied: string[] = [];
      // A management API with nothing in any vhost: what matters here is who gets which vhost, and when.
      const mgmt = {
        queues: async () => [], exchanges: async () => [], bindings: async () => [], connections: async () => [],
        request: async (_m: string, p: string) => (emptied.push(decodeURIComponent(p.split('/')[2]!)), []),
      } as unknown as ManagementClient;
      const seat = { className: 'x', student: 's01', pool: ['pool-a', 'pool-b'], demoVhost: 'demo', classroomVhost: 'x', exchange: 'checks' };

      const [a, b] = await Promise.all([borrowVhost(seat, mgmt), borrowVhost(seat, mgmt)]);
      expect([a.vhost, b.vhost].sort()).toEqual(['pool-a', 'pool-b']);
      let third: string | undefined;
      const waiting = borrowVhost(seat, mgmt).then((c) => ((third = c.vhost), c));
      await new Promise((r) => setTimeout(r, 300));
      expect(third).toBeUndefined(); // both are in use: it waits
      await a.giveBack();
      const c = await waiting;
      expect(c.vhost).toBe(a.vhost);
      expect(emptied.filter((v) => v === a.vhost).length).toBeGreaterThanOrEqual(3); // emptied before each use and after
      await Promise.all([b.giveBack(), c.giveBack()]);

      // A lock left by a process that is gone (killed mid-check) does not block the pool.
      const { writeFileSync, mkdirSync } = await import('node:fs');
      mkdirSync(path.join(state, 'classroom-locks'), { recursive: true });
      writeFileSync(path.join(state, 'classroom-locks', 'pool-a.lock'), '999999999');
      writeFileSync(path.join(state, 'classroom-locks', 'pool-b.lock'), String(process.pid));
      const d = await borrowVhost(seat, mgmt);
      expect(d.vhost).toBe('pool-a');
      await d.giveBack();
    } finally {
      delete process.env.WORKBOOK_STATE_DIR;
      vi.resetModules();
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe("a learner's node on a cluster", () => {
  const urls = ['amqp://localhost:5673', 'amqp://localhost:5674', 'amqp://localhost:5675'];
  it('spreads a class over the nodes: each learner starts on a node of their own, then tries the others in turn', async () => {
    const { nodesInTurn } = await import('../runner/classroom/seat.js');
    expect(nodesInTurn({ student: 's01', amqpUrls: urls })).toEqual(urls);
    expect(nodesInTurn({ student: 's02', amqpUrls: urls })[0]).toBe(urls[1]);
    expect(nodesInTurn({ student: 's06', amqpUrls: urls })).toEqual([urls[2], urls[0], urls[1]]);
    expect(nodesInTurn({ student: 's07', amqpUrls: urls })[0]).toBe(urls[0]);
    expect(nodesInTurn({ student: 's05', amqpUrls: [urls[0]!] })).toEqual([urls[0]]);
  });

  it("skips the learner's node when nothing listens there", async () => {
    const { answeringNode } = await import('../runner/classroom/seat.js');
    const { freePort } = await import('../runner/broker/ports.js');
    const listening = net.createServer().listen(0, '127.0.0.1');
    await once(listening, 'listening');
    const up = `amqp://127.0.0.1:${(listening.address() as net.AddressInfo).port}`;
    const down = `amqp://127.0.0.1:${await freePort()}`;
    try {
      expect(await answeringNode({ student: 's01', amqpUrls: [down, up] })).toBe(up);
      expect(await answeringNode({ student: 's02', amqpUrls: [up, down] })).toBe(up);
      expect(await answeringNode({ student: 's01', amqpUrls: [down, down] })).toBe(down); // none: the broker check then says why
    } finally {
      listening.close();
    }
  });
});

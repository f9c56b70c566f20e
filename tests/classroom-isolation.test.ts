// Isolation on a provisioned broker, beyond what tests/classroom.test.ts proves: one learner
// whose queue is full to the class's limit does not hold up another learner's publishers;
// nobody gets in as guest or anonymously; and `classroom -- lock-guest` tells the instructor
// where guest stands. The test broker's `guest` is everybody's administrator here, so it is
// only read, never changed: deleting it is tried on the decision alone (decideGuest).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify, stripVTControlCharacters as plain } from 'node:util';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { managementFor } from '../runner/broker/management.js';
import { createClass, destroyClass, LIMITS } from '../runner/classroom/provision.js';
import { anonymousLogin, decideGuest, networkAddress, type GuestReport } from '../runner/classroom/guest.js';
import type { ClassFile, JoinFile } from '../runner/classroom/files.js';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
const admin = managementFor(broker);
const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _murl, ...inherited } = process.env;
const name = `i${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(path.join(tmpdir(), 'wb-isolation-'));
const host = new URL(broker.amqpUrl).host;
let cls: ClassFile | undefined;

const joinFile = (s: string) => JSON.parse(readFileSync(path.join(dir, 'students', `${s}.json`), 'utf8')) as JoinFile;
const urlOf = (j: JoinFile, vhost: string) => `amqp://${encodeURIComponent(j.user)}:${encodeURIComponent(j.password)}@${host}/${encodeURIComponent(vhost)}`;

beforeAll(async () => {
  const amqpUrl = new URL(broker.amqpUrl);
  cls = await createClass({ admin, name, students: 2, cluster: false, amqpUrls: [`${amqpUrl.protocol}//${amqpUrl.host}`], managementUrl: broker.managementUrl, dir });
});

afterAll(async () => {
  // Whatever failed: nothing of the class stays on the shared broker.
  if (cls) await destroyClass(admin, cls).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('one learner cannot hold up another', () => {
  it("a queue full to the class's limit refuses its own learner's messages, and the other learner's are confirmed", async () => {
    const a = joinFile('s01');
    const b = joinFile('s02');
    const limit = LIMITS.operatorPolicy['max-length-bytes'];
    const connA = await amqp.connect(urlOf(a, a.demoVhost));
    const connB = await amqp.connect(urlOf(b, b.demoVhost));
    try {
      const chA = await connA.createConfirmChannel();
      // reject-publish: a full queue says so (a nack) instead of dropping its oldest message.
      await chA.assertQueue('full', { arguments: { 'x-overflow': 'reject-publish' } });
      const mib = Buffer.alloc(1024 * 1024, 'a');
      for (let i = 0; i < limit / mib.length; i++) chA.sendToQueue('full', mib);
      await chA.waitForConfirms();
      // The management API's figures lag by up to its stats interval (5 s): polled.
      const full = () => admin.request<{ message_bytes?: number; operator_policy?: string; effective_policy_definition?: Record<string, unknown> }>('GET', `/queues/${encodeURIComponent(a.demoVhost)}/full`);
      await expect.poll(async () => (await full())?.message_bytes, { timeout: 20_000, interval: 500 }).toBe(limit);
      // The limit comes from the operator policy, which the learner cannot change.
      expect(await full()).toMatchObject({ operator_policy: 'classroom-limits', effective_policy_definition: expect.objectContaining({ 'max-length-bytes': limit }) });

      // A's next message is refused, and while A keeps trying, B's messages are confirmed.
      const refused = await new Promise<boolean>((resolve) => chA.sendToQueue('full', mib, {}, (err) => resolve(!!err)));
      expect(refused).toBe(true);
      const chB = await connB.createConfirmChannel();
      await chB.assertQueue('mine');
      const stillTrying = Array.from({ length: 20 }, () => new Promise<boolean>((resolve) => chA.sendToQueue('full', mib, {}, (err) => resolve(!!err))));
      for (let i = 0; i < 100; i++) chB.sendToQueue('mine', Buffer.from(`order ${i}`));
      await chB.waitForConfirms();
      expect(await Promise.all(stillTrying)).toEqual(Array(20).fill(true));
      // Read from the broker: B's 100 are in B's queue, A's queue still holds exactly its limit.
      expect(await chB.checkQueue('mine')).toMatchObject({ messageCount: 100 });
      expect((await chA.checkQueue('full')).messageCount).toBe(limit / mib.length);
      // No alarm: a node-wide alarm would have blocked every publisher of the class.
      const nodes = await admin.request<{ mem_alarm: boolean; disk_free_alarm: boolean }[]>('GET', '/nodes?columns=mem_alarm,disk_free_alarm');
      expect(nodes?.every((n) => !n.mem_alarm && !n.disk_free_alarm)).toBe(true);
      await chA.deleteQueue('full');
    } finally {
      await connA.close().catch(() => undefined);
      await connB.close().catch(() => undefined);
    }
  });
});

describe('no way in as guest, nor anonymously', () => {
  it("no learner's join file names guest, and none has the administrator's password", () => {
    for (const file of readdirSync(path.join(dir, 'students'))) {
      const text = readFileSync(path.join(dir, 'students', file), 'utf8');
      expect(text).not.toMatch(/guest/i);
      expect(text).not.toContain(`:${broker.password}@`);
      const j = JSON.parse(text) as JoinFile;
      // The broker's URLs carry no credentials: the learner's user and password are the only ones.
      for (const u of [...j.amqpUrls, j.managementUrl]) expect(new URL(u).username).toBe('');
    }
  });

  it('an anonymous login is refused, and so is an empty user name', async () => {
    // From this machine's network address, as a learner's laptop would connect (on 4.x, ANONYMOUS logs in as guest, which is loopback-only).
    const address = networkAddress();
    const port = new URL(broker.amqpUrl).port || '5672';
    for (const h of [address, 'localhost'].filter(Boolean)) {
      const anon = await anonymousLogin(`amqp://${h}:${port}`);
      if (h === 'localhost' && !broker.version.startsWith('3.')) continue; // 4.x lets ANONYMOUS in as guest from localhost, by design
      expect(anon).toMatch(/^refused: /);
    }
    const empty = await amqp.connect({ protocol: 'amqp', hostname: new URL(broker.amqpUrl).hostname, port: Number(port), username: '', password: '' }).then(
      async (c) => (await c.close(), 'logged in'),
      (err: Error) => err.message,
    );
    expect(empty).toMatch(/ACCESS.REFUSED|403/);
  });

  it("lock-guest reports guest as loopback-only here, and changes nothing without --delete-guest", async () => {
    const env = { ...inherited, WORKBOOK_STATE_DIR: path.join(dir, 'instructor'), RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl };
    const { stdout } = await promisify(execFile)(process.execPath, ['runner/start.mjs', 'classroom', 'lock-guest'], { cwd: root, env });
    const out = plain(stdout);
    if (!networkAddress()) expect(out).toMatch(/Could not tell from the network whether "guest" is loopback-only/);
    else {
      expect(out).toMatch(/User can only log in via localhost/);
      expect(out).toMatch(/may log in from the broker's own machine only \(loopback_users\)/);
    }
    expect(await admin.request('GET', '/users/guest')).toMatchObject({ name: 'guest' });
  });

  it('deletes guest only on the instructor\'s flag, and never while the runner works as guest', () => {
    const open: GuestReport = { state: 'open', answers: [] };
    expect(decideGuest(open, 'admin', false).action).toBe('none');
    expect(decideGuest(open, 'guest', true)).toMatchObject({ action: 'refuse', why: expect.stringMatching(/logs in to this broker as "guest"/) });
    expect(decideGuest({ state: 'loopback-only', answers: [] }, 'guest', true).action).toBe('refuse');
    expect(decideGuest(open, 'admin', true).action).toBe('delete');
    expect(decideGuest({ state: 'absent', answers: [] }, 'admin', true).action).toBe('none');
  });
});

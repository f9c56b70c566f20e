// The parts of the dashboard that need no browser: the event a verdict becomes, what the
// dashboard accepts from learners (nothing it cannot vouch for), when a learner counts as stuck,
// and a learner's runner that keeps its verdict on time when the classroom broker does not answer.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import amqp from 'amqplib';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { CheckEvents, eventOf, shorten, SUMMARY_MAX, type CheckEvent } from '../runner/classroom/events.js';
import { acceptEvent, EVENT_MAX_BYTES } from '../runner/dashboard/event-schema.js';
import { ClassState, isStuck } from '../runner/dashboard/state.js';
import type { Verdict } from '../runner/check/verdict.js';
import { vhostUrl, type BrokerInfo } from '../runner/broker/types.js';
import { managementFor } from '../runner/broker/management.js';
import { Auth } from '../runner/dashboard/auth.js';

const verdict = (over: Partial<Verdict>): Verdict => ({ id: '2.1', title: 't', target: 'exercise', targetPath: 'x.ts', status: 'failed', steps: [], notes: [], durationMs: 12.4, ...over });
const users = new Map([['cls-x-s01', 's01'], ['cls-x-s02', 's02']]);
const exercises = new Set(['2.1', '3.1']);
const good: CheckEvent = { v: 1, learner: 's01', exercise: '2.1', verdict: 'failed', at: '2026-11-29T10:00:00.000Z', durationMs: 12, summary: 'no queue' };
const accept = (e: unknown, userId: string | undefined = 'cls-x-s01') => acceptEvent(Buffer.from(JSON.stringify(e)), userId, users, exercises);

describe('check events', () => {
  it("carry the verdict's one-line summary, shortened, and call an error 'broken'", () => {
    const e = eventOf(verdict({ status: 'error', finding: { summary: `\u001b[31mred\u001b[0m\n  ${'x'.repeat(400)}` }, contract: { provoked: ['1', '2'], observed: ['1', '1', '2'] } }), 's01', new Date(0));
    expect(e).toMatchObject({ learner: 's01', exercise: '2.1', verdict: 'broken', at: '1970-01-01T00:00:00.000Z', durationMs: 12, contractObserved: 2 });
    expect(e.summary.startsWith('red xxx')).toBe(true);
    expect(e.summary).toHaveLength(SUMMARY_MAX);
    expect(shorten('a\n\tb')).toBe('a b');
  });

  it('are accepted only from a learner of the class, speaking for themselves, about a real exercise, in the right shape', () => {
    expect(accept(good)).toEqual({ ok: true, event: good });
    expect(acceptEvent(Buffer.from(JSON.stringify(good)), undefined, users, exercises)).toMatchObject({ ok: false, reason: /no user_id/ });
    expect(accept(good, 'guest')).toMatchObject({ ok: false, reason: /not a learner/ });
    expect(accept(good, 'cls-x-s02')).toMatchObject({ ok: false, reason: /from s02: claims to be s01/ });
    expect(accept({ ...good, exercise: '9.9' })).toMatchObject({ ok: false, reason: /no exercise 9.9/ });
    expect(accept({ ...good, verdict: 'won' })).toMatchObject({ ok: false, reason: /verdict/ });
    expect(accept({ ...good, summary: 'x'.repeat(SUMMARY_MAX + 1) })).toMatchObject({ ok: false, reason: /summary/ });
    expect(accept({ ...good, extra: 1 })).toMatchObject({ ok: false });
    // A key the learner chose reaches the instructor's terminal only without control characters.
    const sneaky = accept({ ...good, ['\u001b]0;owned\u0007']: 1 });
    expect(sneaky.ok).toBe(false);
    expect(JSON.stringify(sneaky)).not.toMatch(/\\u001b|\\u0007/);
    expect(acceptEvent(Buffer.from('{'), 'cls-x-s01', users, exercises)).toMatchObject({ ok: false, reason: /not JSON/ });
    expect(acceptEvent(Buffer.alloc(EVENT_MAX_BYTES + 1, 32), 'cls-x-s01', users, exercises)).toMatchObject({ ok: false, reason: /bytes/ });
  });
});

describe('the class state', () => {
  const t0 = Date.parse('2026-11-29T10:00:00Z');
  const at = (min: number) => new Date(t0 + min * 60_000).toISOString();
  const state = () => new ClassState('x', ['s01', 's02'], [{ id: '2.1', title: 'a' }, { id: '3.1', title: 'b' }]);

  it('counts a learner stuck after five failures without a pass, and no longer once they pass', () => {
    const s = state();
    let cell;
    for (let i = 0; i < 4; i++) cell = s.apply({ ...good, at: at(i) }, t0 + 3 * 60_000);
    expect(isStuck(cell!, s.thresholds, t0 + 4 * 60_000)).toBe(false);
    // skipped and broken are not the learner's failures.
    cell = s.apply({ ...good, verdict: 'broken', at: at(4) }, t0 + 4 * 60_000);
    expect(isStuck(cell, s.thresholds, t0 + 4 * 60_000)).toBe(false);
    cell = s.apply({ ...good, at: at(5) }, t0 + 5 * 60_000);
    expect(cell).toMatchObject({ attempts: 6, failsSincePass: 5, firstAt: t0 });
    expect(isStuck(cell, s.thresholds, t0 + 5 * 60_000)).toBe(true);
    cell = s.apply({ ...good, verdict: 'passed', at: at(6) }, t0 + 6 * 60_000);
    expect(isStuck(cell, s.thresholds, t0 + 6 * 60_000)).toBe(false);
    expect(cell).toMatchObject({ passedAt: t0 + 6 * 60_000, failsSincePass: 0 });
    expect(s.snapshot().exercises.map((e) => e.id)).toEqual(['2.1']);
  });

  it('counts an event sent again (the same messageId from the same learner) once', () => {
    const s = state();
    expect(s.isNew('cls-x-s01', 'm1')).toBe(true);
    expect(s.isNew('cls-x-s01', 'm1')).toBe(false);
    expect(s.isNew('cls-x-s02', 'm1')).toBe(true); // another learner cannot silence this one
    expect(s.isNew('cls-x-s01', undefined)).toBe(true);
    expect(s.isNew('cls-x-s01', undefined)).toBe(true);
  });

  it('counts a learner stuck after ten minutes of failing, with no new event, and takes a future time as now', () => {
    const s = state();
    const cell = s.apply({ ...good, at: at(0) }, t0);
    expect(isStuck(cell, s.thresholds, t0 + 9 * 60_000)).toBe(false);
    expect(isStuck(cell, s.thresholds, t0 + 10 * 60_000)).toBe(true);
    expect(s.apply({ ...good, learner: 's02', at: at(60) }, t0).firstAt).toBe(t0);
  });
});

describe('the dashboard login', () => {
  it('takes only the password, and refuses an address after ten failures', () => {
    const auth = new Auth('secret');
    expect(auth.passwordMatches('secret')).toBe(true);
    expect(auth.passwordMatches('secreT')).toBe(false);
    expect(auth.passwordMatches(['secret'])).toBe(false);
    for (let i = 0; i < 10; i++) {
      expect(auth.lockedFor('1.2.3.4', 1000)).toBe(0);
      auth.failed('1.2.3.4', 1000);
    }
    expect(auth.lockedFor('1.2.3.4', 2000)).toBeGreaterThan(800);
    expect(auth.lockedFor('5.6.7.8', 2000)).toBe(0);
    expect(auth.lockedFor('1.2.3.4', 1000 + 15 * 60_000)).toBe(0);
    const { id, cookie } = auth.startSession();
    expect(cookie).toMatch(/HttpOnly; SameSite=Strict/);
    expect(auth.isLoggedIn(`a=b; wb_dashboard=${id}`)).toBe(true);
    expect(auth.isLoggedIn('wb_dashboard=forged')).toBe(false);
  });
});

describe("a learner's runner reporting to a classroom broker that does not answer", () => {
  let server: net.Server | undefined;
  afterEach(() => {
    server?.close();
    vi.restoreAllMocks();
  });

  it('gives up after a few seconds with one line, and stays quiet for the next verdicts', async () => {
    // Accepts the connection and never says a word: a broker under a memory alarm, or a black hole.
    const sockets: net.Socket[] = [];
    server = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const broker = {
      source: 'classroom', description: '', amqpUrl: `amqp://u:p@127.0.0.1:${port}`, managementUrl: '', username: 'u', password: 'p', version: '3.10.8',
      classroom: { className: 'x', student: 's01', pool: [], demoVhost: '', classroomVhost: 'cls-x', exchange: 'checks' },
    } satisfies BrokerInfo;
    const lines: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: string) => void lines.push(line));

    const events = new CheckEvents(broker, 3_000);
    const started = Date.now();
    events.report(verdict({}));
    expect(Date.now() - started).toBeLessThan(50); // the verdict is not held up
    events.report(verdict({ id: '3.1' }));
    await events.close();
    const took = Date.now() - started;
    expect(took).toBeGreaterThan(2_500);
    expect(took).toBeLessThan(10_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/dashboard did not get this verdict.*Your verdict is not affected/);

    // Within the quiet time, nothing is tried and nothing is said.
    const before = lines.length;
    events.report(verdict({ id: '3.1' }));
    await events.close();
    expect(lines.length).toBe(before);
    sockets.forEach((s) => s.destroy());
  });

  it('keeps the events it could not send, and sends them with the next verdict after the quiet time, each counted once', async () => {
    const broker = inject('broker');
    const admin = managementFor(broker);
    const vhost = `wb-test-events-${randomBytes(3).toString('hex')}`;
    await admin.createVhost(vhost, broker.username);
    try {
      const conn = await amqp.connect(vhostUrl(broker, vhost));
      const ch = await conn.createChannel();
      await ch.assertExchange('checks', 'topic');
      await ch.assertQueue('seen');
      await ch.bindQueue('seen', 'checks', '#');

      server = net.createServer(() => undefined); // accepts, never answers
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      const seat: BrokerInfo = {
        ...broker,
        amqpUrl: `amqp://u:p@127.0.0.1:${(server.address() as net.AddressInfo).port}`,
        classroom: { className: 'x', student: 's01', pool: [], demoVhost: '', classroomVhost: vhost, exchange: 'checks' },
      };
      vi.spyOn(console, 'error').mockImplementation(() => undefined);
      const events = new CheckEvents(seat, 1_000);
      events.report(verdict({ id: '2.1' }));
      events.report(verdict({ id: '2.2' }));
      await events.close();

      // The broker answers again, and the quiet minute is over: the next verdict takes the two kept ones along.
      seat.amqpUrl = broker.amqpUrl;
      const realNow = Date.now.bind(Date);
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 61_000);
      events.report(verdict({ id: '2.3' }));
      await events.close();

      const got: amqp.GetMessage[] = [];
      for (let m = await ch.get('seen', { noAck: true }); m; m = await ch.get('seen', { noAck: true })) got.push(m);
      expect(got.map((m) => (JSON.parse(m.content.toString()) as CheckEvent).exercise)).toEqual(['2.1', '2.2', '2.3']);
      expect(new Set(got.map((m) => m.properties.messageId)).size).toBe(3);
      expect(got.every((m) => m.properties.userId === broker.username)).toBe(true);
      await conn.close();
    } finally {
      await admin.deleteVhost(vhost);
    }
  });

  it('does nothing at all when no classroom is joined', async () => {
    const events = new CheckEvents({ source: 'private', description: '', amqpUrl: 'amqp://localhost:1', managementUrl: '', username: '', password: '', version: '3.10.8' });
    events.report(verdict({}));
    await events.close();
  });
});

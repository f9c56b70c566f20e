// Check 7.2: retries with growing delays, one wait queue per delay (100, 400 and 1200 ms here).
// The checker's handle() fails on purpose: one email fails twice then goes through, one always fails
// (it must end in the parking queue with its reason), one already retried twice must wait the longest
// delay, and one published right after it, needing the shortest, must come back first. One carries a
// forged x-death header that must not count. Each delivery's retry-count header, and the x-death entry
// the broker wrote when the copy expired in its wait queue, say which queue it waited in; the times
// say that it waited. Then the parking queue refuses a copy (the original must come back, not be
// lost), and the checker cuts the consumer's connection right after it sends a copy, before the ack:
// started again, the consumer may handle that email twice, but never zero times.
import type { ConsumeMessage, Message } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { consumes, connectionsSince, onSent } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/07-dead-letters/02-growing-delays.js';
import { accept, lastDeath, pause, plural, refuse, takeAll } from './support.js';
import { expectRefusedDeclaration, expectSurvivesQueueDeletion } from '../05-consumers/support.js';

type T = CheckContext<typeof Exercise>;

const QUEUE = 'emails';
const DELAYS = [100, 400, 1200];
const WAIT = DELAYS.map((d) => `${QUEUE}.wait.${d}`);
const PARKED = `${QUEUE}.parked`;
const PROBE = 'checker-probe';
/** A timer may fire a few milliseconds early, the broker's TTL never does; this much slack is for the clocks. */
const SLACK_MS = 15;

/** What the checker's handle() saw at one call. */
interface Call {
  id: string;
  at: number;
  retry?: number;
  /** The wait queue the broker says this copy expired in (its newest x-death entry), if any. */
  via?: string;
  reason?: string;
  redelivered: boolean;
  ok: boolean;
  msg: ConsumeMessage;
}

/** How each email behaves: how many times handle() fails on it before it goes through (Infinity: always). */
const FAILS: Record<string, number> = { flaky: 2, poison: Infinity, late: 1, early: 1, forged: 1, refused: Infinity, cut: 1 };
const errorFor = (id: string) => `the checker's handle() failed on "${id}"`;
/** Which email this is, from its body ({ to: "<id>@example.com" }): a copy that lost its properties is still recognised. */
function idOf(msg: Message): string {
  try {
    return String((JSON.parse(msg.content.toString()) as { to?: string }).to ?? '').replace(/@.*$/, '') || msg.content.toString();
  } catch {
    return msg.content.toString();
  }
}

class Handler {
  readonly calls: Call[] = [];
  /** Called (once) when handle() rejects the first time for `cut`, before your code answers. */
  onCutFailure?: () => void;
  private readonly failed = new Map<string, number>();

  readonly handle = async (msg: ConsumeMessage): Promise<void> => {
    const id = idOf(msg);
    const death = lastDeath(msg);
    const retry = msg.properties.headers?.['retry-count'];
    const failedSoFar = this.failed.get(id) ?? 0;
    const ok = failedSoFar >= (FAILS[id] ?? 0);
    this.calls.push({ id, at: Date.now(), retry: retry === undefined ? undefined : Number(retry), via: death?.queue, reason: death?.reason, redelivered: msg.fields.redelivered, ok, msg });
    if (ok) return;
    this.failed.set(id, failedSoFar + 1);
    if (id === 'refused') await pause(30); // slows the loop down while the parking queue refuses
    if (id === 'cut' && failedSoFar === 0) this.onCutFailure?.();
    throw new Error(errorFor(id));
  };

  of(id: string): Call[] {
    return this.calls.filter((c) => c.id === id);
  }

  succeeded(id: string): number {
    return this.of(id).filter((c) => c.ok).length;
  }
}

/** "+0 ms (no retry-count), +104 ms (retry-count 1, expired in emails.wait.100)", relative to the first call. */
function story(calls: Call[]): string {
  if (!calls.length) return 'never called';
  const t0 = calls[0]!.at;
  return calls
    .map((c) => `+${c.at - t0} ms (${c.retry === undefined ? 'no retry-count' : `retry-count ${c.retry}`}${c.via ? `, ${c.reason} in ${c.via}` : ''}${c.ok ? ', succeeded' : ''})`)
    .join(', ');
}

export default defineCheck<typeof Exercise>(async (t) => {
  const handler = new Handler();
  const label = `startRetryingConsumer(url, "${QUEUE}", [${DELAYS.join(', ')}], handle)`;
  const consumer = await t.call(label, () => t.target.startRetryingConsumer(t.url, QUEUE, DELAYS, handler.handle));
  if (!(await t.waitFor(async () => (await t.consumerCount(QUEUE).catch(() => 0)) > 0, 2000))) {
    await expectQuorumQueue(t, QUEUE);
    t.fail({
      summary: `startRetryingConsumer() returned, but nobody consumes "${QUEUE}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', QUEUE),
    });
  }

  // ---- the emails ----
  const ch = await t.confirmChannel();
  const send = (id: string, headers: Record<string, unknown> = {}) =>
    ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify({ to: `${id}@example.com`, subject: `email ${id}` })), {
      persistent: true,
      messageId: id,
      contentType: 'application/json',
      headers: { tenant: 'acme', ...headers },
    });
  send('flaky');
  send('poison');
  send('late', { 'retry-count': 2 });
  send('early');
  // As a message replayed from a dead-letter queue carries it: x-death counts deaths the broker saw, not your retries.
  send('forged', { 'x-death': [{ count: 7, reason: 'rejected', queue: QUEUE, exchange: '', 'routing-keys': [QUEUE] }] });
  await ch.waitForConfirms();
  t.provoke([2, 3], 'published "flaky" (handle() fails on it twice, then succeeds) and "poison" (handle() always fails), each with a messageId, a content type and a header "tenant"');
  t.provoke(3, 'published "late" with retry-count 2 (its next retry is the 3rd: 1200 ms), then "early" right behind it (its 1st retry: 100 ms); both fail once');
  t.provoke(3, 'published "forged", which fails once, carrying an x-death header of 7 deaths and no retry-count');
  t.provoke(4, '"poison" fails at every delivery: after 3 retries it must be parked');
  t.provoke(5, 'every email has a messageId, the content type application/json and the header tenant: "acme"');

  // ---- everything goes around: 100 + 400 + 1200 ms for "poison" ----
  const settled = () =>
    ['flaky', 'late', 'early', 'forged'].every((id) => handler.succeeded(id) > 0) && handler.of('poison').length >= 4;
  await t.waitFor(async () => settled() && (await t.messageCount(PARKED).catch(() => 0)) > 0, 10_000, 25);
  await explainMissing(t, handler);

  // Line 3: the short retry published after the long one came back first.
  const late = handler.of('late');
  const early = handler.of('early');
  if (!(early[1]!.at < late[1]!.at)) {
    t.fail({
      summary: `"early" (a 100 ms retry) came back ${late[1]!.at - early[0]!.at > 0 ? `only after "late" (a 1200 ms retry), ${early[1]!.at - early[0]!.at} ms after it failed` : 'after "late"'}: it waited behind a longer delay.`,
      expected: '"early" back after about 100 ms, long before "late" (1200 ms)',
      saw: `"late": ${story(late)}; "early": ${story(early)}`,
      why: 'A queue only looks at its head: a message expires (and goes back) when it reaches the head of its queue, not the moment its TTL runs out. With one wait queue for every delay, a 100 ms retry waits behind a 1200 ms one.',
      fix: 'One wait queue per delay, each with its own x-message-ttl: the queue of the n-th retry is `${queue}.wait.${delaysMs[n - 1]}`.',
      link: t.ui('queues', WAIT[2]),
    });
  }
  t.observe(3, `"early" came back ${early[1]!.at - early[0]!.at} ms after its failure, before "late" (${late[1]!.at - late[0]!.at} ms): no short delay waited behind a long one`);

  // Line 3: each retry went through the wait queue of its step, with retry-count one higher, and waited there.
  const expectRetries: [id: string, retries: number[]][] = [
    ['flaky', [1, 2]],
    ['poison', [1, 2, 3]],
    ['late', [3]],
    ['early', [1]],
    ['forged', [1]],
  ];
  for (const [id, retries] of expectRetries) {
    const calls = handler.of(id);
    retries.forEach((retry, i) => {
      const call = calls[i + 1];
      const queue = WAIT[retry - 1]!;
      const waited = call ? call.at - calls[i]!.at : 0;
      if (call && call.retry === retry && call.via === queue && call.reason === 'expired' && waited >= DELAYS[retry - 1]! - SLACK_MS) return;
      wrongRetry(t, id, calls, i + 1, retry, queue, waited);
    });
  }
  t.observe(3, `each retry carried retry-count one higher and expired in the wait queue of its step (x-death): "flaky" ${story(handler.of('flaky'))}; "forged" went to ${WAIT[0]} although its x-death said 7`);

  // Lines 4 and 5: "poison" parked with its reason, and with everything it came with.
  const parked = await takeAll(t, PARKED);
  const poison = parked.filter((m) => idOf(m) === 'poison');
  if (poison.length !== 1 || parked.length !== 1) {
    t.fail({
      summary: poison.length === 0 ? `"poison" failed ${handler.of('poison').length} times and is not in "${PARKED}".` : `"${PARKED}" holds ${plural(parked.length, 'message')}, where only "poison" belongs.`,
      expected: `"poison" in "${PARKED}", once`,
      saw: parked.map((m) => `"${idOf(m)}"`).join(', ') || `"${PARKED}" empty`,
      why: 'After the last delay, a message that still fails needs a person: the parking queue keeps it, with the reason, until someone looks.',
      fix: `When retry-count has reached delaysMs.length, send the copy to "${PARKED}" instead of a wait queue.`,
      link: t.ui('queues', PARKED),
    });
  }
  expectCopy(t, poison[0]!, 'poison', { 'retry-count': 3, 'failure-reason': errorFor('poison') }, PARKED);
  t.observe(4, `"poison" is in "${PARKED}" with retry-count 3 and failure-reason "${errorFor('poison')}"`);
  expectCopy(t, handler.of('flaky').at(-1)!.msg, 'flaky', { 'retry-count': 2 }, `${QUEUE} (after two retries)`);
  t.observe(5, 'the parked copy of "poison" and the last delivery of "flaky" have their body, messageId, content type and tenant header');

  // Line 2: acked once handled; prefetch 10.
  const handledTwice = ['flaky', 'late', 'early', 'forged'].filter((id) => handler.succeeded(id) !== 1);
  const left = await Promise.all([QUEUE, ...WAIT].map(async (q) => [q, await t.messageCount(q)] as const));
  if (handledTwice.length || left.some(([, n]) => n > 0)) {
    t.fail({
      summary: handledTwice.length ? `handle() succeeded more than once on ${handledTwice.map((id) => `"${id}" (${handler.succeeded(id)} times)`).join(', ')}.` : `Messages are left behind: ${left.filter(([, n]) => n > 0).map(([q, n]) => `${n} in "${q}"`).join(', ')}.`,
      expected: 'each email handled until it succeeds, then acked: once',
      saw: ['flaky', 'late', 'early', 'forged'].map((id) => `"${id}": ${story(handler.of(id))}`).join('; '),
      why: 'An email that went through must be acked, and only its original: a copy sent to a wait queue for a message that had succeeded comes back and is sent again.',
      fix: 'handle(msg).then(() => channel.ack(msg), (err) => retryLater(msg, err)): one answer per delivery.',
      link: t.ui('queues', QUEUE),
    });
  }
  const consume = consumes(connectionsSince()).find((c) => c.consume.queue === QUEUE);
  if (!consume || consume.consume.noAck || consume.prefetch !== 10) {
    t.fail({
      summary: !consume ? `Your code never consumed "${QUEUE}".` : consume.consume.noAck ? `Your consumer uses noAck: true: the broker forgets each email as it delivers it.` : `Your consumer's prefetch is ${consume.prefetch ?? 'not set (unlimited)'}, not 10.`,
      expected: 'channel.prefetch(10) before channel.consume(queue, …, { noAck: false })',
      saw: consume ? `basic.consume with noAck ${consume.consume.noAck}, prefetch ${consume.prefetch ?? 'none'}` : 'no basic.consume',
      why: consume?.consume.noAck
        ? 'With noAck the broker deletes a message when it sends it: a failure has nothing left to retry, and a crash loses what was in flight.'
        : 'The prefetch bounds how many emails your process holds at once. Without one, the broker hands your consumer every waiting email (and every retry coming back) at the same time.',
      fix: 'await channel.prefetch(10); then channel.consume(queue, onMessage, { noAck: false }).',
    });
  }
  t.observe(2, `every email that went through was handled once and acked: "${QUEUE}" and the wait queues are empty; prefetch 10, manual acks`);

  // Line 1: the topology, as declared.
  await expectTopology(t);
  t.provoke(1, `sent every email around the wait queues ${WAIT.map((q) => `"${q}"`).join(', ')}`);
  t.observe(1, `${[QUEUE, ...WAIT, PARKED].map((q) => `"${q}"`).join(', ')} are quorum queues; each wait queue has its x-message-ttl and dead-letters to "" with routing key "${QUEUE}"`);

  // ---- line 6: the parking queue refuses the copy ----
  const probes = await refuse(t, PARKED, PROBE);
  ch.sendToQueue(QUEUE, Buffer.from('{"to":"refused@example.com"}'), { persistent: true, messageId: 'refused', contentType: 'application/json', headers: { tenant: 'acme', 'retry-count': 3 } });
  await ch.waitForConfirms();
  t.provoke(6, `made "${PARKED}" refuse new messages (max-length 0, reject-publish: the broker nacks the copy), then published "refused" with retry-count 3: handle() fails, and its copy must go to "${PARKED}"`);
  const looped = await t.waitFor(() => handler.of('refused').length >= 3, 6000, 10);
  await accept(t, PARKED);
  const arrived = await t.waitFor(async () => (await t.messageCount(PARKED)) > probes, 6000, 25);
  const refusedCalls = handler.of('refused');
  if (!looped || !arrived) {
    t.fail({
      summary: !looped
        ? `"${PARKED}" refused the copy of "refused", and the original was not tried again: ${refusedCalls.length === 1 ? 'it was acked anyway, and is lost' : `handle() got it ${plural(refusedCalls.length, 'time')}`}.`
        : `Once "${PARKED}" took messages again, "refused" never reached it.`,
      expected: 'the original rejected with requeue while its copy is refused, then parked once the parking queue takes it',
      saw: `"refused": ${story(refusedCalls)}`,
      why: "A copy is only safe once the broker confirmed it. Acking the original first (or not waiting for the confirm) loses the message whenever the broker refuses the copy: a full queue, a missing queue, a node going down.",
      fix: 'publishConfirmed(publisher, target, …).then(() => channel.ack(msg), () => channel.reject(msg, true)): ack in the confirm\'s callback, requeue on a refusal.',
      link: t.ui('queues', PARKED),
    });
  }
  const again = refusedCalls.slice(1);
  if (again.some((c) => c.retry !== 3 || !c.redelivered)) {
    t.fail({
      summary: '"refused" came back while the parking queue refused its copy, but not as the original message.',
      expected: 'the original, requeued: redelivered, retry-count still 3',
      saw: story(refusedCalls),
      why: 'When the broker refuses the copy, nothing new exists: the original, rejected with requeue, is what comes back.',
      fix: 'On a refused copy: channel.reject(msg, true), nothing else.',
    });
  }
  const parkedNow = (await takeAll(t, PARKED)).filter((m) => m.properties.messageId !== PROBE);
  if (parkedNow.length !== 1 || idOf(parkedNow[0]!) !== 'refused') {
    t.fail({
      summary: `After the parking queue took messages again, it holds ${parkedNow.map((m) => `"${idOf(m)}"`).join(', ') || 'nothing of yours'}.`,
      expected: '"refused", once',
      saw: parkedNow.map((m) => `"${idOf(m)}" (retry-count ${m.properties.headers?.['retry-count']})`).join(', ') || 'nothing',
      why: 'Each failure past the last delay sends one copy to the parking queue, and only a confirmed one counts.',
      fix: 'Ack the original only when the broker confirmed its copy; requeue it when the broker refused it.',
      link: t.ui('queues', PARKED),
    });
  }
  t.expectRejectsNotNacks(6, 'When the broker refused the copy');
  t.observe(6, `while "${PARKED}" refused, the original came back (${plural(refusedCalls.length, 'delivery')}, redelivered, retry-count 3); once it accepted, "refused" was parked once`);

  // ---- line 6 again: the connection dies between the copy and the ack ----
  let cutDone = false;
  let armed = false;
  const dispose = onSent((c, m) => {
    if (!armed || cutDone || !['basic.publish', 'basic.ack', 'basic.reject', 'basic.nack'].includes(m.name)) return;
    cutDone = true;
    t.log(`your code answered the failure of "cut" with ${m.name}: the checker resets its connection at once (ECONNRESET), before anything else goes out`);
    c.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
  });
  handler.onCutFailure = () => void (armed = true);
  ch.sendToQueue(QUEUE, Buffer.from('{"to":"cut@example.com"}'), { persistent: true, messageId: 'cut', contentType: 'application/json', headers: { tenant: 'acme' } });
  await ch.waitForConfirms();
  t.provoke(6, 'published "cut": handle() fails on it once; the checker resets your connection right after the first frame your code sends in answer (the copy, or an ack)');
  await t.waitFor(() => cutDone, 5000, 5);
  dispose();
  t.provoke(7, 'the reset reaches your connection as an error');
  await pause(50);
  t.observe(7, "your process is still running after the reset: an 'error' listener took it");
  if (!cutDone) {
    t.fail({
      summary: 'handle() failed on "cut", and your code sent nothing in answer: no copy, no ack, no reject.',
      expected: 'a copy to the first wait queue, then the ack',
      saw: `"cut": ${story(handler.of('cut'))}`,
      fix: 'handle(msg).then(ack, (err) => retryLater(msg, err)), with retryLater() sending the copy.',
    });
  }
  const restarted = await t.call(`${label}, started again after the reset`, () => t.target.startRetryingConsumer(t.url, QUEUE, DELAYS, handler.handle));
  t.log('started your consumer again, as a supervisor restarts a crashed service');
  await t.waitFor(() => handler.succeeded('cut') > 0, 6000, 10);
  await pause(DELAYS[0]! * 3); // a copy that reached its wait queue before the reset comes back by now
  const cutCalls = handler.of('cut');
  const successes = handler.succeeded('cut');
  if (successes === 0 || successes > 2) {
    t.fail({
      summary: successes === 0 ? '"cut" was lost: after the reset and the restart, handle() never got it again.' : `"cut" was handled ${successes} times after the reset: more copies than one failure explains.`,
      expected: '"cut" handled again after the restart: once, or twice (the original, requeued, and the copy, if it had reached the wait queue)',
      saw: `"cut": ${story(cutCalls)}`,
      why: successes === 0
        ? 'Your code acked "cut" before its copy was safe in the broker: the reset came between the two, and both are gone. Publish, wait for the confirm, then ack: the worst a crash can do then is a duplicate.'
        : 'One failure sends one copy; the original comes back only when the consumer dies before acking it.',
      fix: 'Send the copy on a confirm channel and ack the original in the confirm\'s callback, never before.',
      link: t.ui('queues', QUEUE),
    });
  }
  if (successes === 2) t.note('"cut" was handled twice after the reset: its copy had reached the wait queue, and the original, never acked, came back too. That is the price of "never lose": a consumer of retried messages must tolerate duplicates (exercise 7.4).');
  t.observe(6, `after the reset and a restart, "cut" was handled ${successes === 1 ? 'once' : 'twice (a legal duplicate)'}, never lost`);

  // ---- line 7: stop ----
  t.provoke(7, 'called stop() on the restarted consumer');
  await t.call('stop()', () => restarted.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(7, 'after stop(), no connection of yours is open');
  // Anything handled but never acked is back in the queue now that the consumer is gone.
  const unacked = await takeAll(t, QUEUE);
  if (unacked.length) {
    t.fail({
      summary: `After stop(), "${QUEUE}" holds ${plural(unacked.length, 'message')} that handle() had already dealt with: ${unacked.map((m) => `"${idOf(m)}"`).join(', ')}. They were never acked.`,
      expected: `"${QUEUE}" empty: every email acked once handle() resolved, or once its copy was confirmed`,
      saw: unacked.map((m) => `"${idOf(m)}" (redelivered: ${m.fields.redelivered})`).join(', '),
      why: 'A message that is not acked stays the consumer\'s until its channel closes, then goes back to the queue and is handled again.',
      fix: 'channel.ack(msg) when handle() resolves, and when the broker confirmed the copy of a failed one.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(2, `after stop(), nothing came back to "${QUEUE}": every delivery had been acked`);

  // ---- lines 2 and 7: the queue deleted under a consumer, a declaration refused ----
  const texts = await t.call(`startRetryingConsumer(url, "texts", [100], handle)`, () => t.target.startRetryingConsumer(t.url, 'texts', [100], handler.handle));
  await t.waitFor(async () => (await t.consumerCount('texts').catch(() => 0)) > 0, 2000);
  await expectSurvivesQueueDeletion(t, { queue: 'texts', lines: [2], under: 'your consumer of "texts"' });
  await t.call('stop() of the consumer of "texts"', () => texts.stop());
  await t.expectConnectionsClosed('stop() of the consumer of "texts"');
  await expectRefusedDeclaration(t, {
    lines: [7],
    queue: 'sms.parked',
    existing: { durable: true, arguments: { 'x-queue-type': 'classic' } },
    what: 'a classic queue',
    label: 'startRetryingConsumer(url, "sms", [100], handle)',
    call: () => t.target.startRetryingConsumer(t.url, 'sms', [100], handler.handle),
  });
  void consumer;
  await ch.close().catch(() => undefined);
});

/** Something never came back, or never went through: say what, and why it most likely is (always fails when it finds one). */
async function explainMissing(t: T, handler: Handler): Promise<void> {
  const parkedCount = await t.messageCount(PARKED).catch(() => 0);
  for (const id of ['flaky', 'early', 'forged', 'late', 'poison']) {
    const calls = handler.of(id);
    const need = id === 'poison' ? DELAYS.length + 1 : FAILS[id]! + 1;
    const done = id === 'poison' ? calls.length === need && parkedCount > 0 : calls.length === need && handler.succeeded(id) > 0;
    if (done) continue;
    if (calls.length > need) {
      // Came back too often, too fast: requeued instead of sent to a wait queue.
      t.fail({
        summary: `handle() got "${id}" ${plural(calls.length, 'time')} in a row${calls.length > 1 ? `, within ${calls.at(-1)!.at - calls[0]!.at} ms` : ''}: it was requeued at once instead of waiting.`,
        expected: `"${id}" sent to "${WAIT[0]}" after its first failure, back after ${DELAYS[0]} ms`,
        saw: story(calls.slice(0, 8)),
        why: 'A message rejected with requeue goes straight back to the head of its queue: a hot loop that hammers whatever failed (a mail server that is down, say) and burns CPU in your consumer and the broker.',
        fix: 'On a failure, send a copy to the wait queue of its step, then ack the original.',
        link: t.ui('queues', QUEUE),
      });
    }
    const where = await Promise.all([...WAIT, PARKED].map(async (q) => `${q}: ${await t.messageCount(q).catch(() => 'missing')}`));
    const inParking = parkedCount > 0 ? (await takeAll(t, PARKED)).filter((m) => idOf(m) === id) : [];
    if (inParking.length && !(id === 'poison' && calls.length === need)) {
      const failures = calls.filter((c) => !c.ok).length;
      const retryCount = inParking[0]!.properties.headers?.['retry-count'];
      t.fail({
        summary: `"${id}" was parked after ${plural(failures, 'failure')}, with retry-count ${JSON.stringify(retryCount)}${id === 'forged' && failures === 1 ? ': your code counted its retries from x-death, which said 7' : ''}.`,
        expected:
          id === 'forged'
            ? `"forged" retried like any first failure: retry-count 1, through "${WAIT[0]}"`
            : `"${id}" parked only when all ${DELAYS.length} delays are used: when its retry-count is ${DELAYS.length}`,
        saw: `"${id}": ${story(calls)}`,
        why:
          id === 'forged'
            ? "x-death belongs to the broker: it counts the times a message died in each queue, and a message replayed from a dead-letter queue (or republished by a client) carries an old one. Since RabbitMQ 4.0 a republished message's x-death count does not even go up. Count your retries in a header of your own."
            : 'With delaysMs = [100, 400, 1200] there are three retries: a message is parked when it fails with retry-count 3, not before.',
        fix:
          id === 'forged'
            ? "const retries = Number(msg.properties.headers?.['retry-count'] ?? 0), and 'retry-count': retries + 1 in the copy's headers."
            : 'retries < delaysMs.length: a wait queue; otherwise the parking queue.',
        link: t.ui('queues', PARKED),
      });
    }
    const missing = (await Promise.all([...WAIT, PARKED].map(async (q) => ((await t.mgmt.queue(t.vhost, q)) ? undefined : q)))).filter(Boolean);
    t.fail({
      summary:
        id === 'poison'
          ? `"poison" failed ${plural(calls.length, 'time')}, and is not in "${PARKED}" 10 s later.`
          : `"${id}" failed ${plural(calls.filter((c) => !c.ok).length, 'time')} and never came back: handle() got it ${plural(calls.length, 'time')} in 10 s.`,
      expected: `"${id}" sent to the wait queue of each retry, back after its delay${id === 'poison' ? `, and parked after ${DELAYS.length} retries` : ''}`,
      saw: `"${id}": ${story(calls)}; messages now in ${where.join(', ')}${missing.length ? `; no queue ${missing.map((q) => `"${q}"`).join(', ')}` : ''}`,
      why: missing.length
        ? 'A copy sent (through the default exchange) to a queue that does not exist is dropped, and the broker still confirms it: the message is lost.'
        : 'A wait queue must send its messages back when they expire: x-dead-letter-exchange "" (the default exchange) and x-dead-letter-routing-key `queue`. Without the routing key, the expired message keeps its own (the wait queue\'s name) and the broker drops it as a dead-letter cycle.',
      fix: `assertQueue(\`\${queue}.wait.\${d}\`, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': d, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue } }) for each delay, and the copy sent there.`,
      link: t.ui('queues', missing.length ? QUEUE : WAIT[0]),
    });
  }
}

/** The n-th call of `id` was not the retry it should have been (always fails). */
function wrongRetry(t: T, id: string, calls: Call[], n: number, retry: number, queue: string, waited: number): never {
  const call = calls[n];
  const delay = DELAYS[retry - 1]!;
  const problem = !call
    ? `never came back for its retry ${retry}`
    : call.retry !== retry
      ? `came back with ${call.retry === undefined ? 'no retry-count header' : `retry-count ${call.retry}`} where its retry ${retry} should say ${retry}`
      : call.via !== queue || call.reason !== 'expired'
        ? `came back for its retry ${retry} ${call.via ? `from "${call.via}" (${call.reason})` : 'without having expired in a wait queue (no x-death)'}, not from "${queue}"`
        : `came back ${waited} ms after its failure, before its ${delay} ms were up`;
  t.fail({
    summary: `"${id}" ${problem}.`,
    expected: `retry ${retry} of "${id}": retry-count ${retry}, ${delay} ms in "${queue}" (x-death: expired in "${queue}")`,
    saw: `"${id}": ${story(calls)}`,
    why:
      call && call.retry !== retry && id === 'late'
        ? '"late" arrived with retry-count 2: its next retry is the 3rd, so it waits the third delay. The count lives in the message, so that any instance of the consumer knows where it stands.'
        : 'The n-th retry waits delaysMs[n - 1]: the copy carries retry-count n and goes to the wait queue of that delay, which sends it back when its TTL runs out.',
    fix: "const retries = Number(msg.properties.headers?.['retry-count'] ?? 0); the copy goes to `${queue}.wait.${delaysMs[retries]}` with 'retry-count': retries + 1.",
    link: t.ui('queues', queue),
  });
}

/** A copy must have the original's body and properties, and the given headers. */
function expectCopy(t: T, msg: Message, id: string, headers: Record<string, unknown>, where: string): void {
  const h = msg.properties.headers ?? {};
  const problems = [
    msg.content.toString() !== JSON.stringify({ to: `${id}@example.com`, subject: `email ${id}` }) && `the body is ${JSON.stringify(msg.content.toString().slice(0, 80))}`,
    msg.properties.messageId !== id && `messageId ${JSON.stringify(msg.properties.messageId)}`,
    msg.properties.contentType !== 'application/json' && `content type ${JSON.stringify(msg.properties.contentType)}`,
    h.tenant !== 'acme' && `header tenant ${JSON.stringify(h.tenant)}`,
    msg.properties.deliveryMode !== 2 && `delivery mode ${JSON.stringify(msg.properties.deliveryMode)} (not persistent)`,
    ...Object.entries(headers).filter(([k, v]) => h[k] !== v).map(([k, v]) => `header ${k} ${JSON.stringify(h[k])} instead of ${JSON.stringify(v)}`),
  ].filter(Boolean);
  if (!problems.length) return;
  const reason = Object.keys(headers).some((k) => k === 'failure-reason' || k === 'retry-count') && problems.some((p) => String(p).startsWith('header retry-count') || String(p).startsWith('header failure-reason'));
  t.fail({
    summary: `The copy of "${id}" in ${where} has ${problems.join(', ')}.`,
    expected: `the body, messageId "${id}", content type application/json, header tenant "acme"${Object.entries(headers).map(([k, v]) => `, ${k} ${JSON.stringify(v)}`).join('')}`,
    saw: `headers ${JSON.stringify(Object.fromEntries(Object.entries(h).filter(([k]) => !k.startsWith('x-'))))}, messageId ${JSON.stringify(msg.properties.messageId)}, content type ${JSON.stringify(msg.properties.contentType)}`,
    why: reason
      ? 'Whoever opens the parking queue needs to know why the message is there and how often it was tried, without digging through logs: the reason travels with the message.'
      : 'A copy replaces the original: whatever the producer put in it (its id, which the consumer may use to drop duplicates; its content type; its headers) must survive every retry.',
    fix: "const { headers = {}, ...properties } = msg.properties; publish msg.content with { ...properties, headers: { ...headers, 'retry-count': … } }.",
    link: t.ui('queues', PARKED),
  });
}

async function expectTopology(t: T): Promise<void> {
  for (const q of [QUEUE, PARKED]) await expectQuorumQueue(t, q);
  for (const [i, q] of WAIT.entries()) {
    const info = await expectQuorumQueue(t, q);
    const want = { 'x-message-ttl': DELAYS[i], 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': QUEUE };
    const wrong = Object.entries(want).filter(([k, v]) => info.arguments[k] !== v);
    if (!wrong.length) continue;
    t.fail({
      summary: `The wait queue "${q}" has ${wrong.map(([k]) => `${k} ${JSON.stringify(info.arguments[k])}`).join(', ')}.`,
      expected: JSON.stringify(want),
      saw: JSON.stringify(info.arguments),
      why: 'A wait queue is defined by its delay: its x-message-ttl holds every message for exactly that long, and its dead-letter settings send them back to the work queue. Named after its delay, it never needs another TTL: a new delay is a new queue.',
      fix: `{ 'x-queue-type': 'quorum', 'x-message-ttl': ${DELAYS[i]}, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': '${QUEUE}' }`,
      link: t.ui('queues', q),
    });
  }
}

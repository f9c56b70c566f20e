// Check 7.3: poison detection by the delivery limit (3 here). The checker's handle() always fails on
// one payment and fails once on another; the rest go through, one of them only after the poison
// message has failed twice (it is still in the consumer's hands meanwhile). The poison payment must
// reach the dead-letter queue after exactly 4 deliveries, with x-death reason delivery_limit; the
// others are acked, each handled once (the flaky one twice). The frames the consumer sends tell a
// reject from a nack, which RabbitMQ 3.10 counts alike and 4.3 does not. Then the checker unbinds
// the dead-letter queue and sends a second poison payment: with at-least-once dead-lettering its
// dead letter stays in the queue (it counts towards a length limit, which the checker sets to see
// it, next to a twin queue of its own); with at-most-once it is gone.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { consumes, connectionsSince } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/07-dead-letters/03-poison-limit.js';
import { describeDeath, lastDeath, pause, plural, policiesOfQueues, takeAll } from './support.js';
import { expectRefusedDeclaration, expectSurvivesQueueDeletion, expectSurvivesReset } from '../05-consumers/support.js';

type T = CheckContext<typeof Exercise>;

const QUEUE = 'payments';
const DLX = `${QUEUE}.dlx`;
const DLQ = `${QUEUE}.dead`;
const TWIN = `${QUEUE}.twin`;
const LIMIT = 3;
const PREFETCH = 10;

/** How many times handle() fails on each payment before it goes through (Infinity: always). */
const FAILS: Record<string, number> = { poison: Infinity, 'poison-2': Infinity, flaky: 1 };
const GOOD = ['good-1', 'held', 'flaky', 'good-2', 'good-3'];

class Handler {
  readonly calls: { id: string; at: number; ok: boolean }[] = [];
  private readonly failed = new Map<string, number>();
  private release?: () => void;
  /** "held" resolves only once this promise does: it stays unacknowledged while the poison payment fails. */
  readonly released = new Promise<void>((resolve) => (this.release = resolve));

  readonly handle = async (text: string): Promise<void> => {
    let id: string;
    try {
      id = String((JSON.parse(text) as { id?: unknown }).id);
    } catch {
      id = text;
    }
    const failedSoFar = this.failed.get(id) ?? 0;
    const ok = failedSoFar >= (FAILS[id] ?? 0);
    this.calls.push({ id, at: Date.now(), ok });
    if (id === 'poison' && this.count('poison') === 2) this.release?.();
    if (id === 'held') await this.released;
    if (ok) return;
    this.failed.set(id, failedSoFar + 1);
    throw new Error(`the checker's handle() failed on "${id}"`);
  };

  count(id: string): number {
    return this.calls.filter((c) => c.id === id).length;
  }

  succeeded(id: string): number {
    return this.calls.filter((c) => c.id === id && c.ok).length;
  }
}

const payment = (id: string) => JSON.stringify({ id, amount: 42 });

export default defineCheck<typeof Exercise>(async (t) => {
  const handler = new Handler();
  const label = `startPoisonAwareConsumer(url, "${QUEUE}", ${LIMIT}, handle)`;
  const consumer = await t.call(label, () => t.target.startPoisonAwareConsumer(t.url, QUEUE, LIMIT, handler.handle));
  if (!(await t.waitFor(async () => (await t.consumerCount(QUEUE).catch(() => 0)) > 0, 2000))) {
    await expectQuorumQueue(t, QUEUE);
    t.fail({
      summary: `startPoisonAwareConsumer() returned, but nobody consumes "${QUEUE}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', QUEUE),
    });
  }

  // ---- the payments ----
  await t.publish(QUEUE, ['good-1', 'held', 'poison', 'flaky', 'good-2', 'good-3'].map(payment), { contentType: 'application/json' });
  t.provoke(3, 'published 5 good payments; handle() resolves at once for 4 of them, and for "held" only once "poison" has failed twice');
  t.provoke(4, `published "poison", on which handle() always fails, and "flaky", on which it fails once (delivery limit ${LIMIT})`);
  t.provoke([1, '2a', '2b'], `"poison" fails at every delivery: the delivery limit must stop it, and its dead letter go through "${DLX}" to "${DLQ}"`);

  const poisonCap = LIMIT + 1 + 5;
  await t.waitFor(
    async () => handler.count('poison') >= poisonCap || ((await t.messageCount(DLQ).catch(() => 0)) > 0 && GOOD.every((id) => handler.succeeded(id) > 0)),
    8000,
    20,
  );
  await pause(100); // a delivery more, if there is one, shows now

  // Line 3: the good payments, each handled once, and acked.
  const extra = GOOD.filter((id) => handler.count(id) !== (id === 'flaky' ? 2 : 1));
  if (extra.length) {
    const first = extra[0]!;
    const n = handler.count(first);
    const rejected = (await takeAll(t, DLQ)).filter((m) => lastDeath(m)?.reason === 'rejected');
    if (rejected.length) {
      t.fail({
        summary: `Your consumer rejected failed payments without requeue: ${rejected.map((m) => `"${idOf(m)}"`).join(' and ')} reached "${DLQ}" at ${rejected.length === 1 ? 'its' : 'their'} first failure (x-death reason "rejected").`,
        expected: `every failure requeued; only "poison" in "${DLQ}", after ${LIMIT + 1} deliveries (reason "delivery_limit")`,
        saw: `${rejected.map((m) => `"${idOf(m)}": ${describeDeath(m)}`).join('; ')}; handle() got "flaky" ${plural(handler.count('flaky'), 'time')}`,
        why: 'The consumer cannot tell a poison message from a passing failure (a timeout, a service restarting): both fail. Requeue every failure, and let the broker count: the delivery limit dead-letters only the message that keeps failing.',
        fix: 'channel.reject(msg, true) for every failure.',
        link: t.ui('queues', DLQ),
      });
    }
    t.fail({
      summary:
        n === 0 || (first === 'flaky' && n === 1)
          ? `handle() got "${first}" ${plural(n, 'time')}${first === 'flaky' ? ': after its failure it was not tried again' : ''}.`
          : `handle() got the good payment "${first}" ${plural(n, 'time')}${first === 'held' ? ', although it was still working on it when it got it again' : ''}.`,
      expected: 'each good payment handled once ("flaky" twice: once failing, once going through)',
      saw: GOOD.map((id) => `"${id}" ${plural(handler.count(id), 'time')}`).join(', ') + `; "poison" ${plural(handler.count('poison'), 'time')}`,
      why:
        first === 'held'
          ? 'channel.nack(msg, true, true) answers every unacknowledged message up to this one, the good ones still being handled included: they go back to the queue, come again, and their delivery count climbs towards the limit with the poison message\'s. Answer one message with channel.reject(msg, true).'
          : n === 0 || first === 'flaky'
            ? 'A payment whose handle() failed for a passing reason must be tried again: reject it with requeue, and the broker delivers it again (and counts it towards the limit).'
            : 'A payment that went through is acked, once: only a failure sends it back.',
      fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', QUEUE),
    });
  }

  // Line 4 and 2a: the poison payment, dead-lettered after exactly LIMIT + 1 deliveries.
  const dead = await takeAll(t, DLQ);
  const poisonCalls = handler.count('poison');
  if (poisonCalls >= poisonCap && dead.length === 0) {
    const q = await expectQuorumQueue(t, QUEUE);
    const limit = q.arguments['x-delivery-limit'];
    t.fail({
      summary: `handle() got "poison" ${poisonCalls} times${limit === undefined ? `, and it keeps coming back: "${QUEUE}" has no delivery limit` : `: the delivery limit of "${QUEUE}" is ${JSON.stringify(limit)}, not the ${LIMIT} it was given`}.`,
      expected: `"poison" in "${DLQ}" after ${LIMIT + 1} deliveries (x-delivery-limit ${LIMIT}: ${LIMIT} returns allowed)`,
      saw: `${poisonCalls} deliveries; arguments ${JSON.stringify(q.arguments)}`,
      why: 'RabbitMQ 3.10 to 3.13 give a quorum queue no delivery limit unless you set one: a message that always fails comes back forever. 4.0 and later stop it after 20 returns. Setting the limit yourself makes every version behave the same.',
      fix: `'x-delivery-limit': deliveryLimit in the queue's arguments (deliveryLimit is ${LIMIT} here).`,
      link: t.ui('queues', QUEUE),
    });
  }
  const poison = dead.filter((m) => idOf(m) === 'poison');
  const death = poison[0] && lastDeath(poison[0]);
  if (poison.length !== 1 || dead.length !== 1 || death?.reason !== 'delivery_limit' || death.queue !== QUEUE || poisonCalls !== LIMIT + 1) {
    if (dead.length === 0) await noDeadLetter(t, poisonCalls);
    const rejectedFirst = dead.some((m) => lastDeath(m)?.reason === 'rejected');
    const limit = (await t.queue(QUEUE)).arguments['x-delivery-limit'];
    t.fail({
      summary: rejectedFirst
        ? `Your consumer rejected failed payments without requeue: ${dead.map((m) => `"${idOf(m)}"`).join(' and ')} reached "${DLQ}" at ${dead.length === 1 ? 'its' : 'their'} first failure (x-death reason "rejected").`
        : poison.length && death?.reason === 'delivery_limit'
          ? `"poison" reached "${DLQ}" after ${plural(poisonCalls, 'delivery')}, not ${LIMIT + 1}${limit !== LIMIT ? `: the delivery limit of "${QUEUE}" is ${JSON.stringify(limit)}, not the ${LIMIT} it was given` : ''}.`
          : `"${DLQ}" holds ${dead.map((m) => `"${idOf(m)}" (${describeDeath(m)})`).join(', ')}.`,
      expected: `"poison" alone in "${DLQ}", after ${LIMIT + 1} deliveries, with x-death reason "delivery_limit" in "${QUEUE}"`,
      saw: `${dead.map((m) => `"${idOf(m)}": ${describeDeath(m)}`).join('; ')}; handle() got "poison" ${plural(poisonCalls, 'time')}`,
      why: rejectedFirst
        ? 'The consumer cannot tell a poison message from a passing failure (a timeout, a service restarting): both fail. Requeue every failure, and let the broker count: the delivery limit dead-letters only the message that keeps failing.'
        : `x-delivery-limit ${LIMIT} allows ${LIMIT} returns: the message is delivered ${LIMIT + 1} times, and dead-lettered with the reason "delivery_limit" when it comes back once more. Use the deliveryLimit you are given, not a number of your own.`,
      fix: `'x-delivery-limit': deliveryLimit, and channel.reject(msg, true) for every failure.`,
      link: t.ui('queues', DLQ),
    });
  }
  t.observe(4, `"poison" reached "${DLQ}" after ${LIMIT + 1} deliveries (x-death: delivery_limit in "${QUEUE}"); "flaky" went through at its second delivery`);
  t.observe('2a', `the broker stopped "poison" after ${LIMIT} returns: x-delivery-limit ${LIMIT}`);
  t.observe(3, `every good payment was handled once (${GOOD.map((id) => `"${id}"`).join(', ')}), "held" only once while "poison" failed around it`);

  // The frames: a reject with requeue for each failure, never a nack.
  t.expectRejectsNotNacks(4, 'When handle() rejected');
  const requeues = t.sent('basic.reject').filter((m) => m.requeue).length;
  const failures = handler.calls.filter((c) => !c.ok).length;
  if (requeues !== failures) {
    t.fail({
      summary: `handle() failed ${plural(failures, 'time')}, and your consumer sent ${plural(requeues, 'reject')} with requeue.`,
      expected: 'one channel.reject(msg, true) per failure',
      saw: `${requeues} basic.reject with requeue, ${t.sent('basic.reject').length - requeues} without, ${t.sent('basic.ack').length} basic.ack`,
      why: 'Each failure is one return to the queue, and the broker counts exactly those towards the limit.',
      fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
    });
  }
  const consume = consumes(connectionsSince()).find((c) => c.consume.queue === QUEUE);
  if (!consume || consume.consume.noAck || consume.prefetch !== PREFETCH) {
    t.fail({
      summary: !consume ? `Your code never consumed "${QUEUE}".` : consume.consume.noAck ? 'Your consumer uses noAck: true.' : `Your consumer's prefetch is ${consume.prefetch ?? 'not set (unlimited)'}, not ${PREFETCH}.`,
      expected: `channel.prefetch(${PREFETCH}) before channel.consume(queue, …, { noAck: false })`,
      saw: consume ? `basic.consume with noAck ${consume.consume.noAck}, prefetch ${consume.prefetch ?? 'none'}` : 'no basic.consume',
      why: consume?.consume.noAck
        ? 'With noAck the broker forgets each message as it sends it: a failure has nothing to reject, and the delivery limit never counts anything.'
        : 'The prefetch bounds how many payments your process holds at once.',
      fix: `await channel.prefetch(${PREFETCH}); then channel.consume(queue, onMessage, { noAck: false }).`,
    });
  }
  t.observe(4, `read the frames your code sent: ${requeues} basic.reject with requeue, one per failure`);
  t.observe(3, `prefetch ${PREFETCH} and manual acks, read from the frames your code sent`);

  // Lines 1 and 2: the topology, read from the broker.
  await expectExchange(t, DLX, 'fanout', `channel.assertExchange('${DLX}', 'fanout', { durable: true })`);
  await expectQuorumQueue(t, DLQ);
  const q = await expectQuorumQueue(t, QUEUE);
  const want: Record<string, unknown> = {
    'x-delivery-limit': LIMIT,
    'x-dead-letter-exchange': DLX,
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  };
  const wrong = Object.entries(want).filter(([k, v]) => q.arguments[k] !== v);
  t.observe(1, `"${DLX}" is a durable fanout exchange, and "${DLQ}" a quorum queue bound to it: "poison" arrived there`);
  t.observe('2b', `"poison" was dead-lettered to "${DLX}"`);

  // ---- line 2c: at-least-once, seen when the dead letter cannot be routed ----
  for (const b of (await t.mgmt.bindings(t.vhost)).filter((x) => x.source === DLX && x.destination === DLQ)) {
    const ch = await t.channel();
    await ch.unbindQueue(DLQ, DLX, b.routing_key, b.arguments);
    await ch.close();
  }
  await t.publish(QUEUE, [payment('poison-2')], { contentType: 'application/json' });
  t.provoke('2c', `unbound "${DLQ}" from "${DLX}" (the dead-letter target is gone, as when its node is down), then published "poison-2", on which handle() always fails`);
  await t.waitFor(() => handler.count('poison-2') >= LIMIT + 1, 6000, 10);
  // The broker dead-letters it when its last reject comes in: it is then neither ready nor held.
  await t.waitFor(async () => (await t.messageCount(QUEUE)) === 0, 3000, 25);
  await pause(200);
  t.provoke(5, 'called stop()');
  await t.call('stop()', () => consumer.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(5, 'after stop(), your connection is closed');
  const back = await takeAll(t, QUEUE);
  if (back.length) {
    t.fail({
      summary: `After stop(), "${QUEUE}" holds ${back.map((m) => `"${idOf(m)}"`).join(', ')}: handle() had dealt with ${back.length === 1 ? 'it' : 'them'}, but your consumer never acked ${back.length === 1 ? 'it' : 'them'}.`,
      expected: `"${QUEUE}" empty: each payment acked once handle() resolved`,
      saw: back.map((m) => `"${idOf(m)}" (redelivered: ${m.fields.redelivered})`).join(', '),
      why: 'A message that is not acked stays the consumer\'s until its channel closes, then goes back to the queue and is handled again.',
      fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(3, `after stop(), nothing came back to "${QUEUE}": every payment that went through had been acked`);
  if (handler.count('poison-2') !== LIMIT + 1) {
    t.fail({
      summary: `handle() got "poison-2" ${plural(handler.count('poison-2'), 'time')}, where the delivery limit allows ${LIMIT + 1}.`,
      expected: `${LIMIT + 1} deliveries of "poison-2", then it leaves "${QUEUE}"`,
      saw: `${handler.count('poison-2')} deliveries`,
      fix: `'x-delivery-limit': deliveryLimit, and channel.reject(msg, true) for every failure.`,
    });
  }
  const held = await pendingDeadLetters(t, q.arguments);
  if (wrong.length || held.learner !== held.twin - 1) {
    const dropHead = held.learner >= held.max || q.arguments['x-overflow'] !== 'reject-publish';
    t.fail({
      summary: dropHead
        ? `"${QUEUE}" ${q.arguments['x-overflow'] === undefined ? 'has no x-overflow argument, so it drops its oldest messages when full (drop-head)' : `has x-overflow ${JSON.stringify(q.arguments['x-overflow'])}`}: with that, at-least-once dead-lettering silently falls back to at-most-once, and the dead letter of "poison-2" was dropped.`
        : `The dead letter of "poison-2" could not be routed, and the broker dropped it: "${QUEUE}" dead-letters at most once${q.arguments['x-dead-letter-strategy'] === undefined ? ' (no x-dead-letter-strategy: at-most-once is the default)' : ''}.`,
      expected: `x-dead-letter-strategy "at-least-once" and x-overflow "reject-publish": the dead letter kept in "${QUEUE}" until a queue takes it`,
      saw: `arguments ${JSON.stringify(q.arguments)}; with a length limit of 1, "${QUEUE}" took ${plural(held.learner, 'probe')} before it refused one${held.learner >= held.max ? ' (it never refused)' : ''}, a twin queue with nothing pending took ${held.twin}`,
      why: 'By default the broker republishes a dead letter without confirms and forgets it at once: if the dead-letter exchange routes it nowhere (a missing binding, a queue whose node is down), it is gone. With at-least-once, the queue keeps it (it still counts towards the queue\'s length) until a target confirms it. That needs x-overflow reject-publish; with drop-head, the broker quietly uses at-most-once.',
      fix: "'x-dead-letter-strategy': 'at-least-once' and 'x-overflow': 'reject-publish' in the queue's arguments.",
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(['2b', '2c'], `the dead letter of "poison-2" stayed in "${QUEUE}", waiting for a route: with a length limit of 1 it took ${plural(held.learner, 'probe')}, its empty twin ${held.twin}`);

  // ---- lines 3 and 5: the queue deleted under a consumer, a declaration refused ----
  const refunds = await t.call(`startPoisonAwareConsumer(url, "refunds", ${LIMIT}, handle)`, () => t.target.startPoisonAwareConsumer(t.url, 'refunds', LIMIT, handler.handle));
  await t.waitFor(async () => (await t.consumerCount('refunds').catch(() => 0)) > 0, 2000);
  await expectSurvivesQueueDeletion(t, { queue: 'refunds', lines: [3], under: 'your consumer of "refunds"' });
  await expectSurvivesReset(t, [5], 'of your consumer of "refunds"');
  void refunds;
  await expectRefusedDeclaration(t, {
    lines: [5],
    queue: 'invoices.dead',
    existing: { durable: true, arguments: { 'x-queue-type': 'classic' } },
    what: 'a classic queue',
    label: `startPoisonAwareConsumer(url, "invoices", ${LIMIT}, handle)`,
    call: () => t.target.startPoisonAwareConsumer(t.url, 'invoices', LIMIT, handler.handle),
  });
});

function idOf(m: GetMessage): string {
  try {
    return String((JSON.parse(m.content.toString()) as { id?: unknown }).id);
  } catch {
    return m.content.toString();
  }
}

/** Nothing reached the DLQ although "poison" stopped coming back: find out where the dead letter went (always fails). */
async function noDeadLetter(t: T, poisonCalls: number): Promise<never> {
  const q = await expectQuorumQueue(t, QUEUE);
  const dlx = q.arguments['x-dead-letter-exchange'];
  const exchange = typeof dlx === 'string' ? await t.mgmt.exchange(t.vhost, dlx) : undefined;
  const bound = (await t.mgmt.bindings(t.vhost)).some((b) => b.source === dlx && b.destination === DLQ);
  const [summary, why, fix] =
    dlx === undefined
      ? [
          `"poison" stopped coming back after ${plural(poisonCalls, 'delivery')}, and it is nowhere: "${QUEUE}" has no dead-letter exchange, so the broker dropped it at the limit.`,
          'At the delivery limit a quorum queue dead-letters the message when it has a dead-letter exchange, and drops it when it has none.',
          `'x-dead-letter-exchange': '${DLX}' in the arguments of "${QUEUE}" (not of the dead-letter queue).`,
        ]
      : !exchange
        ? [
            `"poison" stopped coming back after ${plural(poisonCalls, 'delivery')}, and never reached "${DLQ}": the dead-letter exchange "${String(dlx)}" does not exist.`,
            'Naming a dead-letter exchange does not create it. A dead letter sent to an exchange that does not exist goes nowhere: at-most-once drops it, at-least-once keeps it in the queue, waiting, for ever.',
            `channel.assertExchange('${DLX}', 'fanout', { durable: true }), and bind "${DLQ}" to it.`,
          ]
        : [
            `"poison" stopped coming back after ${plural(poisonCalls, 'delivery')}, and never reached "${DLQ}": ${bound ? `it went to "${String(dlx)}"` : `"${DLQ}" is not bound to "${String(dlx)}"`}.`,
            'The dead-letter exchange routes the dead letter like any message: to the queues bound to it.',
            `channel.bindQueue('${DLQ}', '${DLX}', '')`,
          ];
  t.fail({
    summary,
    expected: `"poison" in "${DLQ}", with x-death reason "delivery_limit"`,
    saw: `"${DLQ}" empty; arguments of "${QUEUE}": ${JSON.stringify(q.arguments)}`,
    why,
    fix,
    link: t.ui('queues', QUEUE),
  });
}

/**
 * How many probe messages "payments", and a twin queue of the checker's with the same arguments and
 * nothing pending, take under a length limit of 1 before they refuse one: a dead letter kept by
 * at-least-once counts towards the limit, so the learner's queue then takes one fewer.
 */
async function pendingDeadLetters(t: T, args: Record<string, unknown>): Promise<{ learner: number; twin: number; max: number }> {
  const max = 6;
  const ch = await t.channel();
  await ch.assertQueue(TWIN, { durable: true, arguments: args });
  await ch.close();
  await t.mgmt.setPolicy(t.vhost, 'checker-length-limit', { pattern: `^${QUEUE}$|^${QUEUE}\\.twin$`, priority: 99, definition: { 'max-length': 1 } });
  await t.waitFor(async () => {
    const applied = await policiesOfQueues(t);
    return applied.get(QUEUE) === 'checker-length-limit' && applied.get(TWIN) === 'checker-length-limit';
  }, 3000, 25);
  await pause(100); // the queues apply the policy a moment after it is listed
  t.log(`set a length limit of 1 on "${QUEUE}" and on a twin "${TWIN}" with the same arguments, and published probes to each until one was refused`);
  const probe = async (queue: string) => {
    const confirm = await t.confirmChannel();
    let taken = 0;
    for (; taken < max; taken++) {
      const refused = await new Promise<boolean>((resolve) => confirm.sendToQueue(queue, Buffer.from('checker probe'), { persistent: true }, (err) => resolve(!!err)));
      if (refused) break;
    }
    await confirm.close().catch(() => undefined);
    return taken;
  };
  return { learner: await probe(QUEUE), twin: await probe(TWIN), max };
}

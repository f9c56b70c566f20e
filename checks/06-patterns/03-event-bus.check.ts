// Check 6.3: two services on a topic exchange, each with its own durable queue bound with
// several patterns. A matrix of routing keys must reach exactly the right service(s), with their
// texts; events whose handler fails must come back; an event published while a service is down
// must wait for it in its queue; no more than 10 events may be in progress at once; and the
// service must survive its consumer being cancelled and its connection being cut.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/03-event-bus.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionMark, connectionsSince, type AmqpConnection } from '../../runner/check/frames.js';
import { cutConnectionsAndSurvive, deleteQueueUnderConsumer, describeValue, expectMethods, publishToExchange } from './support.js';

const EXCHANGE = 'events';
const SERVICES = [
  { queue: 'billing', patterns: ['order.placed', 'payment.*'] },
  { queue: 'alerts', patterns: ['*.failed', 'audit.#'] },
];
// Published in this order. "payment.failed" is last and matches both services, so when it has
// arrived, everything published before it has arrived too (a queue keeps its order).
const MATRIX: [key: string, billing: boolean, alerts: boolean][] = [
  ['order.placed', true, false],
  ['order.shipped', false, false],
  ['payment.succeeded', true, false],
  ['payment.card.failed', false, false], // three words: neither "payment.*" nor "*.failed"
  ['audit', false, true], // "#" matches zero words too
  ['audit.user.login', false, true],
  ['failed', false, false], // one word: "*.failed" needs two
  ['audit.failed', false, true], // matches two patterns of one queue: delivered once
  ['shipping.failed', false, true],
  ['payment.failed', true, true],
];
// Events whose onEvent() rejects the first N times (all for billing: "payment.*").
const RETRIES: [text: string, failures: number][] = [
  ['declined, fails once', 1],
  ['declined, fails twice', 2],
];
const PREFETCH = 10;
const HELD = PREFETCH + 2;
// Published among the held events, after the first QUICK_AFTER of them: its onEvent() resolves at once.
const QUICK = 'done at once';
const QUICK_AFTER = 5;
const never = new Promise<never>(() => undefined);

type Service = (typeof SERVICES)[number];

export default defineCheck<typeof Exercise>(async (t) => {
  const got = new Map<string, { key: string; text: string }[]>(SERVICES.map((s) => [s.queue, []]));
  const failures = new Map(RETRIES);
  let holding = false; // while true, onEvent never settles for the "hold #…" events
  let notText: string | undefined;
  const onEventFor = (s: Service) => async (key: string, text: string) => {
    if (typeof key !== 'string' || typeof text !== 'string') notText ??= `onEvent(${describeValue(key)}, ${describeValue(text)})`;
    got.get(s.queue)!.push({ key: String(key), text: String(text) });
    const left = failures.get(String(text));
    if (left !== undefined && left > 0) {
      failures.set(String(text), left - 1);
      throw new Error(`onEvent("${key}", "${text}") failed on purpose`);
    }
    if (holding && String(text).startsWith('hold')) await never;
  };
  const connectionsOf = new Map<Exercise.Listener, AmqpConnection[]>();
  const start = async (s: Service, again = '') => {
    const mark = connectionMark();
    const listener = await t.call(`startListener(url, { exchange: "${EXCHANGE}", queue: "${s.queue}", patterns: ${JSON.stringify(s.patterns)} }, onEvent)${again}`, () =>
      t.target.startListener(t.url, { exchange: EXCHANGE, queue: s.queue, patterns: s.patterns }, onEventFor(s)),
    );
    expectMethods(t, 'startListener()', listener, ['stop']);
    connectionsOf.set(listener, connectionsSince(mark));
    return listener;
  };
  const listeners = new Map<string, Exercise.Listener>();
  t.provoke([1, 2, 3], `started two services, "billing" and "alerts", in a vhost without the exchange "${EXCHANGE}"`);
  for (const s of SERVICES) listeners.set(s.queue, await start(s));

  // 1. The exchange: a topic exchange reads the wildcards.
  await expectExchange(t, EXCHANGE, 'topic', `channel.assertExchange('${EXCHANGE}', 'topic', { durable: true })`);
  t.observe(1, `read "${EXCHANGE}" from the broker: a durable topic exchange`);

  // 2. Each service's queue: its own, named, durable.
  const all = await t.mgmt.queues(t.vhost);
  for (const s of SERVICES) {
    const q = all.find((x) => x.name === s.queue);
    if (!q || q.exclusive || q.auto_delete) {
      const temp = all.filter((x) => x.exclusive || x.auto_delete).map((x) => `"${x.name}"`);
      t.fail({
        summary: `The service "${s.queue}" listens through a temporary queue (${q ? `"${q.name}", exclusive ${q.exclusive}, auto-delete ${q.auto_delete}` : temp.join(', ') || 'no queue named after it'}), which disappears when it stops, with the events waiting in it.`,
        expected: `a durable quorum queue named "${s.queue}"`,
        saw: `queues: ${all.map((x) => `"${x.name}"${x.exclusive ? ' (exclusive)' : ''}`).join(', ') || 'none'}`,
        why: 'An exclusive, server-named queue is right for a live view (exercise 6.2). A service on an event bus must not miss the events published while it is being deployed or restarted: they must wait in a queue that outlives it.',
        fix: `channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } }), with the name you were given.`,
        link: t.ui('queues'),
      });
    }
    await expectQuorumQueue(t, s.queue);
  }
  t.observe(2, `read "billing" and "alerts" from the broker: durable quorum queues, neither exclusive nor auto-delete`);

  // 3. Bindings: one per pattern.
  const bindings = (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === EXCHANGE && b.destination_type === 'queue');
  for (const s of SERVICES) {
    const keys = bindings.filter((b) => b.destination === s.queue).map((b) => b.routing_key);
    const missing = s.patterns.filter((p) => !keys.includes(p));
    if (missing.length) {
      t.fail({
        summary: `The queue "${s.queue}" is bound to "${EXCHANGE}" with ${keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'nothing'}; ${missing.map((k) => `"${k}"`).join(' and ')} ${missing.length === 1 ? 'is' : 'are'} missing.`,
        expected: `one binding per pattern: ${s.patterns.map((p) => `"${p}"`).join(', ')}`,
        saw: keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'no binding',
        why: 'A queue receives what any one of its bindings matches. A pattern without a binding is an event type the service silently never hears about.',
        fix: 'for (const pattern of patterns) await channel.bindQueue(queue, exchange, pattern);',
        link: t.ui('queues', s.queue),
      });
    }
  }
  t.observe(3, `read the bindings: "billing" ${SERVICES[0]!.patterns.join(', ')}; "alerts" ${SERVICES[1]!.patterns.join(', ')}`);

  // The matrix.
  const published = MATRIX.map(([key], i) => ({ key, text: `event #${i + 1}` }));
  await publishToExchange(t, EXCHANGE, published.map((e) => [e.key, e.text]));
  t.provoke([3, 4], `published ${MATRIX.length} events to "${EXCHANGE}": ${MATRIX.map(([k]) => k || '(empty key)').join(', ')}`);
  const last = MATRIX[MATRIX.length - 1]![0];
  await t.waitFor(() => SERVICES.every((s) => got.get(s.queue)!.some((e) => e.key === last)), 1500);
  if (notText) {
    t.fail({
      summary: `onEvent() was called with something else than two strings: ${notText}.`,
      expected: 'onEvent("order.placed", "event #1"): the routing key and the text of the event',
      saw: notText,
      why: 'msg.content is a Buffer: the raw bytes of the body, not its text; a Buffer only looks like it when printed. The routing key is msg.fields.routingKey.',
      fix: 'onEvent(msg.fields.routingKey, msg.content.toString())',
    });
  }
  const texts = new Set(published.map((e) => e.text));
  const swapped = [...got.values()].flat().find((e) => texts.has(e.key));
  if (swapped) {
    t.fail({
      summary: `onEvent() got the text first and the routing key second: onEvent(${JSON.stringify(swapped.key)}, ${JSON.stringify(swapped.text)}).`,
      expected: `onEvent(${JSON.stringify(swapped.text)}, ${JSON.stringify(swapped.key)}): the routing key, then the text`,
      saw: `onEvent(${JSON.stringify(swapped.key)}, ${JSON.stringify(swapped.text)})`,
      why: 'The service decides what to do from the kind of event, its routing key; the text is the event itself. Swapped, every handler reads the wrong one.',
      fix: 'onEvent(msg.fields.routingKey, msg.content.toString())',
    });
  }
  for (const [index, s] of SERVICES.entries()) {
    const expected = published.filter((_, i) => MATRIX[i]![index + 1]);
    const events = got.get(s.queue)!;

    const keys = events.map((e) => e.key);
    if (keys.join() !== expected.map((e) => e.key).join()) {
      const extra = keys.filter((k) => !expected.some((e) => e.key === k));
      const missing = expected.map((e) => e.key).filter((k) => !keys.includes(k));
      t.fail({
        summary: `The service "${s.queue}" (patterns ${s.patterns.join(', ')}) got ${keys.length ? keys.join(', ') : 'no event'}${missing.length ? `; missing: ${missing.join(', ')}` : ''}${extra.length ? `; not for it: ${extra.join(', ')}` : ''}.`,
        expected: expected.map((e) => e.key).join(', '),
        saw: keys.join(', ') || 'nothing',
        why: 'Routing is done by the broker, from the bindings: onEvent must be called once for every message the queue receives, with msg.fields.routingKey.',
        fix: 'Bind once per pattern on a topic exchange, and call onEvent(msg.fields.routingKey, msg.content.toString()) for every message.',
        link: t.ui('queues', s.queue),
      });
    }
    const wrong = events.findIndex((e, i) => e.text !== expected[i]!.text);
    if (wrong >= 0) {
      t.fail({
        summary: `The service "${s.queue}" got the right routing keys, but onEvent("${events[wrong]!.key}", …) was given ${JSON.stringify(events[wrong]!.text)} as the text.`,
        expected: expected.map((e) => `${e.key} → "${e.text}"`).join(', '),
        saw: events.map((e) => `${e.key} → "${e.text}"`).join(', '),
        why: 'onEvent takes the routing key first, then the text of the message: msg.content.toString().',
        fix: 'onEvent(msg.fields.routingKey, msg.content.toString())',
      });
    }
  }
  t.observe([3, 4], 'each service got exactly its events, in order, with their routing keys and texts');
  t.note('"audit.failed" matched two bindings of "alerts" ("*.failed" and "audit.#") and arrived once: a queue gets at most one copy of a message.');

  // 4. Failures: an event whose onEvent() rejects must come back and be tried again.
  const billing = got.get('billing')!;
  const calls = (text: string) => billing.filter((e) => e.text === text).length;
  await publishToExchange(t, EXCHANGE, RETRIES.map(([text]) => ['payment.declined', text]));
  t.provoke(4, `published ${RETRIES.map(([text]) => `"${text}"`).join(' and ')} for "billing": onEvent() rejects them the first time, and the first two times`);
  const retried = await t.waitFor(() => RETRIES.every(([text, n]) => calls(text) > n), 1500);
  if (!retried) {
    const stuck = RETRIES.filter(([text, n]) => calls(text) <= n);
    t.cutConnections('to see whether the failed events were still held by the service');
    const back = (await t.waitFor(async () => ((await t.messageCount('billing')) >= stuck.length ? stuck.length : undefined), 600)) ?? (await t.messageCount('billing'));
    t.fail({
      summary:
        back > 0
          ? `When onEvent() rejected, the event was neither acked nor rejected: the service sat on it (${stuck.map(([x]) => `"${x}"`).join(', ')}).`
          : `When onEvent() rejected, the event was dropped: ${stuck.map(([x]) => `"${x}"`).join(', ')} never came back to be tried again.`,
      expected: 'an event whose onEvent() rejects goes back to the queue (channel.reject(msg, true)) and is tried again until it succeeds',
      saw: `${stuck.map(([text, n]) => `onEvent(…, "${text}") called ${calls(text)} time(s), rejected the first ${n}`).join('; ')}; after the checker cut your connections, ${back} event(s) came back to the queue`,
      why:
        back > 0
          ? 'An event left unacknowledged takes one of the 10 places prefetch allows, until the connection closes: a few such failures, and the service receives nothing any more.'
          : 'A failure is often temporary: a database restarting, a timeout. An event acked (or rejected without requeue) after a failure is gone for good: the service never handles it.',
      fix: 'onEvent(key, text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', 'billing'),
    });
  }
  t.observe(4, `each failed event came back and was handled: ${RETRIES.map(([text]) => `"${text}" ${calls(text)} times`).join(', ')}`);
  t.expectRejectsNotNacks(4, 'When onEvent() rejected');

  // 6. "alerts" stops: nothing may come back to its queue (everything was acked), no consumer, no connection.
  const openBefore = t.connectionsOpen();
  t.provoke(6, 'called stop() on "alerts"');
  await t.expectClosedOnReturn('stop() on "alerts"', connectionsOf.get(listeners.get('alerts')!)!, () => listeners.get('alerts')!.stop());
  const closed = await t.waitFor(() => t.connectionsOpen() < openBefore, 500);
  await t.queue('alerts', { why: 'stop() stops the service; its queue must stay, to keep the events published until it is back.', fix: 'In stop(), cancel the consumer and close the connection; never delete the queue.' });

  const alertsConsumers = await t.consumerCount('alerts');
  const unacked = await t.messageCount('alerts');
  if (!closed || alertsConsumers > 0 || unacked > 0) {
    t.fail({
      summary: unacked > 0
        ? `After stop(), ${unacked} event(s) went back to "alerts": they were handled but never acknowledged.`
        : alertsConsumers > 0
          ? `After stop(), "alerts" still has ${alertsConsumers} consumer(s).`
          : 'stop() left the connection of "alerts" open.',
      expected: 'no consumer on "alerts", its connection closed, and no event back in the queue',
      saw: `consumers: ${alertsConsumers}; connections open: ${t.connectionsOpen()} of ${openBefore}; back in the queue: ${unacked}`,
      why: 'An event that is never acked stays "unacked"; when the channel closes, the broker delivers it again, and the service handles it twice. A connection left open leaks a socket and a broker process.',
      fix: 'channel.ack(msg) once onEvent() has resolved; in stop(), cancel the consumer and close the connection.',
      link: t.ui('queues', 'alerts'),
    });
  }
  t.observe([4, 6], '"alerts" stopped: no consumer, its connection closed, and nothing came back to its queue (every event acked)');

  // 2. Downtime: billing stops, an order is placed, billing comes back.
  await t.expectClosedOnReturn('stop() on "billing"', connectionsOf.get(listeners.get('billing')!)!, () => listeners.get('billing')!.stop());
  await publishToExchange(t, EXCHANGE, [['order.placed', 'placed while billing was down']]);
  t.provoke(2, 'published "order.placed" while "billing" was stopped');
  const waiting = await t.mgmt.queue(t.vhost, 'billing').then((q) => (q ? t.messageCount('billing') : -1));
  if (waiting < 0) {
    t.fail({
      summary: 'The queue "billing" disappeared when the listener stopped: the order placed meanwhile was lost.',
      expected: 'the queue still there, holding the event',
      saw: 'no queue "billing"',
      fix: "A durable quorum queue that is not exclusive and not auto-delete: { durable: true, arguments: { 'x-queue-type': 'quorum' } }.",
      link: t.ui('queues'),
    });
  }
  listeners.set('billing', await start(SERVICES[0]!, ' again'));
  const caughtUp = await t.waitFor(() => billing.some((e) => e.text === 'placed while billing was down'), 1500);
  if (!caughtUp) {
    t.fail({
      summary: `The event published while "billing" was down never reached it after it started again (${waiting} message(s) were waiting in its queue).`,
      expected: '"order.placed" delivered after the restart',
      saw: `${billing.length} events in total`,
      fix: 'Consume from the same named queue on every start.',
      link: t.ui('queues', 'billing'),
    });
  }
  t.observe(2, `"billing" got the event that waited ${waiting === 1 ? 'in its queue' : `(${waiting} waiting)`} as soon as it was back`);

  // 4. Twelve events whose onEvent() never finishes: ten in progress at once, all back after a crash.
  holding = true;
  const held = Array.from({ length: HELD }, (_, i) => `hold #${i + 1}`);
  const inProgress = () => billing.filter((e) => e.text.startsWith('hold')).length;
  const heldFrom = billing.length;
  const batch = [...held.slice(0, QUICK_AFTER), QUICK, ...held.slice(QUICK_AFTER)];
  await publishToExchange(t, EXCHANGE, batch.map((text) => ['order.placed', text]));
  t.provoke(4, `published ${HELD} events for "billing" whose onEvent() does not finish, and after the first ${QUICK_AFTER} of them one whose onEvent() resolves at once`);
  await t.waitFor(() => inProgress() >= PREFETCH, 1000);
  await new Promise((r) => setTimeout(r, 100)); // time for any delivery beyond the limit to arrive
  const atOnce = inProgress();
  // 5. The connection is cut while they are in progress: they come back, and the process lives on.
  await cutConnectionsAndSurvive(t, 5, `"billing" loses its network with ${atOnce} events in progress`);
  const back = await t.waitFor(async () => ((await t.messageCount('billing')) >= HELD ? HELD : undefined), 1000);
  if (!back) {
    const n = await t.messageCount('billing');
    const phase = billing.slice(heldFrom).map((e) => e.text);
    const beforeQuick = phase.slice(0, Math.max(0, phase.indexOf(QUICK))).filter((x) => x.startsWith('hold'));
    if (beforeQuick.length > 0 && n === HELD - beforeQuick.length) {
      t.fail({
        summary: `When onEvent() resolved for "${QUICK}", the ${beforeQuick.length} events delivered before it, still in progress, were acknowledged with it: when the checker cut the connection, they were lost (${n} of the ${HELD} came back).`,
        expected: `only "${QUICK}" acked; all ${HELD} events in progress back in the queue after the cut`,
        saw: `${n} in "billing"; lost: ${beforeQuick.map((x) => `"${x}"`).join(', ')}`,
        why: 'channel.ack(msg, true) means "this message and every earlier one on the channel". With 10 events in progress at once they finish in any order, and the earlier ones are not done: the broker forgets them, and a crash loses them.',
        fix: 'channel.ack(msg): one ack per event, without the second argument (allUpTo).',
        link: t.ui('queues', 'billing'),
      });
    }
    t.fail({
      summary: `When the checker cut the connection of "billing" with ${atOnce} events in progress, only ${n} of the ${HELD} came back to the queue: the others were lost, acked before onEvent() finished.`,

      expected: `all ${HELD} back in the queue`,
      saw: `${n} in the queue`,
      why: 'An event acked before it is handled (or consumed with noAck: true) is forgotten by the broker at once: if the service dies, it is lost.',
      fix: 'Consume with { noAck: false }, and ack in the .then() of onEvent().',
      link: t.ui('queues', 'billing'),
    });
  }
  t.observe(4, `all ${HELD} events were back in "billing": none had been acked while in progress, not even with the ack of "${QUICK}"`);

  if (atOnce !== PREFETCH) {
    t.fail({
      summary:
        atOnce > PREFETCH
          ? `"billing" had ${atOnce} events in progress at once: its consumer has no prefetch limit (or one set after consume()).`
          : `"billing" had only ${atOnce} event(s) in progress at once: its prefetch is ${atOnce}, not ${PREFETCH}.`,
      expected: `${PREFETCH} events in progress, the other ${HELD - PREFETCH} waiting in the queue`,
      saw: `${atOnce} calls of onEvent() that had not finished`,
      why:
        atOnce > PREFETCH
          ? 'Without a limit the broker pushes every event in the queue to the consumer at once: after a long downtime, thousands, all in memory, all in progress. Prefetch applies to consumers started after it.'
          : 'A prefetch of 1 handles one event at a time: a slow handler makes the whole service slow. The exercise asks for 10 at once.',
      fix: `await channel.prefetch(${PREFETCH}) before channel.consume(...).`,
      link: t.ui('queues', 'billing'),
    });
  }
  t.observe(4, `exactly ${PREFETCH} of the ${HELD} events were in progress at once`);

  // 5. The consumer is cancelled (its queue deleted), then 6. stop().
  holding = false;
  const billingAgain = await start(SERVICES[0]!, ' a third time');
  await t.waitFor(() => inProgress() >= PREFETCH + HELD, 1500);
  await deleteQueueUnderConsumer(t, 'billing', 5);
  t.provoke(6, 'called stop() on "billing" after its consumer was cancelled');
  await t.expectClosedOnReturn('stop() on "billing"', connectionsOf.get(billingAgain)!, () => billingAgain.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(6, 'every connection closed');
});

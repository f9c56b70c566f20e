// Check 6.3: two services on a topic exchange, each with its own durable queue bound with
// several patterns. A matrix of routing keys must reach exactly the right service(s); an event
// published while a service is down must wait for it in its queue.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/03-event-bus.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { publishToExchange } from './support.js';

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
  ['audit.failed', false, true], // matches two patterns of one queue: delivered once
  ['shipping.failed', false, true],
  ['payment.failed', true, true],
];

export default defineCheck<typeof Exercise>(async (t) => {
  const got = new Map<string, { key: string; text: string }[]>(SERVICES.map((s) => [s.queue, []]));
  const start = (s: (typeof SERVICES)[number], again = '') =>
    t.call(`startListener(url, { exchange: "${EXCHANGE}", queue: "${s.queue}", patterns: ${JSON.stringify(s.patterns)} }, onEvent)${again}`, () =>
      t.target.startListener(t.url, { exchange: EXCHANGE, queue: s.queue, patterns: s.patterns }, async (key, text) => {
        got.get(s.queue)!.push({ key, text });
      }),
    );
  const listeners = new Map<string, Exercise.Listener>();
  for (const s of SERVICES) listeners.set(s.queue, await start(s));

  // The exchange: a topic exchange reads the wildcards.
  await expectExchange(t, EXCHANGE, 'topic', `channel.assertExchange('${EXCHANGE}', 'topic', { durable: true })`);

  // Each service's queue: its own, named, durable.
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

  // Bindings: one per pattern.
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

  // The matrix.
  await publishToExchange(t, EXCHANGE, MATRIX.map(([key], i) => [key, `event #${i + 1}`]));
  t.log(`published ${MATRIX.length} events to "${EXCHANGE}": ${MATRIX.map(([k]) => k).join(', ')}`);
  const last = MATRIX[MATRIX.length - 1]![0];
  await t.waitFor(() => SERVICES.every((s) => got.get(s.queue)!.some((e) => e.key === last)), 1500);
  for (const [index, s] of SERVICES.entries()) {
    const expected = MATRIX.filter((row) => row[index + 1]).map(([key]) => key);
    const keys = got.get(s.queue)!.map((e) => e.key);
    if (keys.join() !== expected.join()) {
      const extra = keys.filter((k) => !expected.includes(k));
      const missing = expected.filter((k) => !keys.includes(k));
      t.fail({
        summary: `The service "${s.queue}" (patterns ${s.patterns.join(', ')}) got ${keys.length ? keys.join(', ') : 'no event'}${missing.length ? `; missing: ${missing.join(', ')}` : ''}${extra.length ? `; not for it: ${extra.join(', ')}` : ''}.`,
        expected: expected.join(', '),
        saw: keys.join(', ') || 'nothing',
        why: 'Routing is done by the broker, from the bindings: onEvent must be called once for every message the queue receives, with msg.fields.routingKey.',
        fix: 'Bind once per pattern on a topic exchange, and call onEvent(msg.fields.routingKey, msg.content.toString()) for every message.',
        link: t.ui('queues', s.queue),
      });
    }
  }
  t.note('"audit.failed" matched two bindings of "alerts" ("*.failed" and "audit.#") and arrived once: a queue gets at most one copy of a message.');

  // Downtime: billing stops, an order is placed, billing comes back.
  await t.call('stop() on "billing"', () => listeners.get('billing')!.stop());
  await publishToExchange(t, EXCHANGE, [['order.placed', 'placed while billing was down']]);
  t.log('published "order.placed" while "billing" was stopped');
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
  const caughtUp = await t.waitFor(() => got.get('billing')!.some((e) => e.text === 'placed while billing was down'), 1500);
  if (!caughtUp) {
    t.fail({
      summary: `The event published while "billing" was down never reached it after it started again (${waiting} message(s) were waiting in its queue).`,
      expected: '"order.placed" delivered after the restart',
      saw: `${got.get('billing')!.length} events in total`,
      fix: 'Consume from the same named queue on every start.',
      link: t.ui('queues', 'billing'),
    });
  }
  t.log('"billing" got the event it missed as soon as it was back');

  await t.call('stop() on both listeners', async () => {
    for (const l of listeners.values()) await l.stop();
  });
  await t.expectConnectionsClosed('stop()');
  for (const s of SERVICES) {
    const left = await t.messageCount(s.queue);
    if (left > 0) {
      t.fail({
        summary: `After stop(), ${left} event(s) went back to "${s.queue}": they were handled but never acknowledged.`,
        expected: '0 messages left',
        saw: `${left} ready again`,
        fix: 'channel.ack(msg) once onEvent() has resolved.',
        link: t.ui('queues', s.queue),
      });
    }
  }
});

// Check 3.2: "notifications" is a durable fanout exchange, and every message published to
// it, whatever its routing key, lands once in each of "email", "sms" and "push"; a refused
// declaration (of a subscriber queue, then of the exchange) makes setupBroadcast() reject,
// and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/02-fanout.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { callSetup, expectRefusedDeclarationHandled, expectRefusedQueueHandled, expectRoutes, type RouteCase } from './support.js';

const EXCHANGE = 'notifications';
const SUBSCRIBERS = ['email', 'sms', 'push'];

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3], 'called setupBroadcast(url) on an empty vhost');
  await callSetup(t, 'setupBroadcast(url)', () => t.target.setupBroadcast(t.url), { exchanges: [EXCHANGE], queues: SUBSCRIBERS });

  await expectExchange(t, EXCHANGE, 'fanout', `await channel.assertExchange('${EXCHANGE}', 'fanout', { durable: true })`);
  t.observe(1, `read "${EXCHANGE}" from the management API: a durable fanout exchange`);
  for (const queue of SUBSCRIBERS) {
    await expectQuorumQueue(t, queue, {
      why: 'Either nothing declared it, or it was exclusive (or auto-delete): such a queue is deleted as soon as the connection that declared it closes, so it is gone the moment setupBroadcast() returns. Subscribers that must not miss a notification while they are offline need durable queues.',
      fix: `channel.assertQueue('${queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
    });
  }
  t.observe(2, `read ${SUBSCRIBERS.map((q) => `"${q}"`).join(', ')} from the management API: quorum queues`);

  // Publishers of notifications use all sorts of routing keys, or none: a fanout ignores them.
  const everyone = [...SUBSCRIBERS];
  const because = 'A fanout exchange copies every message to every bound queue; the routing key plays no part.';
  const cases: RouteCase[] = [
    { key: '', expect: everyone, because },
    { key: 'user.signup', expect: everyone, because },
    { key: 'sms', expect: everyone, because: `${because} A key that happens to be a queue's name changes nothing.` },
    { key: 'order.shipped.eu', expect: everyone, because },
  ];
  await expectRoutes(
    t,
    EXCHANGE,
    cases,
    (queue) => `Bind every subscriber queue to the exchange: await channel.bindQueue('${queue}', '${EXCHANGE}', ''). The binding is what subscribes a queue to the broadcast.`,
    3,
  );

  // A refusal in the middle of the loop, too: a try/catch around one subscriber must not hide it.
  await expectRefusedQueueHandled(t, { line: 4, label: 'setupBroadcast(url)', call: () => t.target.setupBroadcast(t.url), queue: 'sms' });
  await expectRefusedDeclarationHandled(t, { line: 4, label: 'setupBroadcast(url)', call: () => t.target.setupBroadcast(t.url), exchange: EXCHANGE, type: 'fanout' });
});

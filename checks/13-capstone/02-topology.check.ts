// Check 13.2: the exchange, the main queue, the dead-letter queue and the delay queues
// exist with the right arguments, declaring twice is harmless, an event published to the
// exchange lands in the main queue, and a message parked in a delay queue comes BACK to
// the main queue after its delay (the checker uses short delays: 400 and 800 ms).
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/02-topology.js';
import { memoryLogger } from '../../capstone/log.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const delays = [400, 800];
  const { EXCHANGE, QUEUE, DEAD_LETTER_QUEUE, ROUTING_KEY } = t.target;

  // 0. Which delay queue for which attempt (plain functions, no broker needed).
  const name = (d: number) => t.target.retryQueue(d);
  const picks = await t.call('retryQueueFor(1..4, [400, 800])', () => [1, 2, 3, 4].map((a) => t.target.retryQueueFor(a, delays)));
  const want = [name(400), name(800), name(800), name(800)];
  if (picks.join() !== want.join()) {
    t.fail({
      summary: picks[1] === picks[0] ? 'Every retry waits as long as the first one: the delay does not grow.' : 'retryQueueFor() does not pick the delay queues in order.',
      expected: `attempt 1 → ${want[0]}, 2 → ${want[1]}, 3 → ${want[2]}, 4 → ${want[3]}`,
      saw: picks.map((p, i) => `${i + 1} → ${p}`).join(', '),
      why: 'While Odoo is down, retrying every few seconds forever adds load just when it hurts. Waiting longer each time (5 s, 10 s, 20 s, 30 s…) gives it room to come back.',
      fix: 'Index delaysMs with attempt - 1, and stay on the last delay once attempts run past the end.',
    });
  }
  const firstDefault = t.target.retryQueueFor(1);
  if (firstDefault !== name(5000)) {
    t.fail({ summary: `The first retry should wait 5 s (the seed's rhythm), but retryQueueFor(1) is ${firstDefault}.`, expected: name(5000), saw: firstDefault, fix: 'RETRY_DELAYS_MS starts with 5_000.' });
  }

  // 1. Declare (twice: the relay and the receiver both do, in any order).
  const ch = await t.channel();
  await t.call(`assertTopology(channel, [${delays}])`, () => t.target.assertTopology(ch, delays));
  const ch2 = await t.channel();
  await t.call(`assertTopology(channel, [${delays}]) a second time`, () => t.target.assertTopology(ch2, delays));

  const ex = await t.mgmt.exchange(t.vhost, EXCHANGE);
  if (!ex || ex.type !== 'direct' || !ex.durable) {
    t.fail({ summary: `There is no durable direct exchange "${EXCHANGE}".`, saw: ex ? `${ex.type}, durable ${ex.durable}` : 'no such exchange', fix: `channel.assertExchange(EXCHANGE, 'direct', { durable: true })`, link: t.ui('exchanges') });
  }
  const quorum = async (q: string, what: string) => {
    const info = await t.queue(q);
    if (info.type !== 'quorum' || !info.durable) {
      t.fail({
        summary: `"${q}" (${what}) is not a quorum queue.`,
        expected: "durable, arguments { 'x-queue-type': 'quorum' }",
        saw: `${info.type ?? 'classic'}, durable ${info.durable}`,
        why: 'A quorum queue keeps its messages on a majority of nodes and survives a node failure; the bridge must not lose events while they wait.',
        fix: "{ durable: true, arguments: { 'x-queue-type': 'quorum', … } }",
        link: t.ui('queues', q),
      });
    }
    return info;
  };
  const main = await quorum(QUEUE, 'the main queue');
  await quorum(DEAD_LETTER_QUEUE, 'the dead-letter queue');
  if (main.arguments['x-dead-letter-routing-key'] !== DEAD_LETTER_QUEUE) {
    t.fail({
      summary: `"${QUEUE}" does not dead-letter to "${DEAD_LETTER_QUEUE}".`,
      expected: `'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': '${DEAD_LETTER_QUEUE}'`,
      saw: JSON.stringify(main.arguments),
      why: 'RabbitMQ 4 gives up on a message redelivered 20 times. With a dead-letter target it lands in the dead-letter queue; without one it is dropped.',
      fix: `Add those two arguments (and the at-least-once ones) to the main queue.`,
      link: t.ui('queues', QUEUE),
    });
  }
  for (const d of delays) {
    const info = await quorum(name(d), `the ${d} ms delay queue`);
    const a = info.arguments;
    const problems = [
      a['x-message-ttl'] !== d && `x-message-ttl is ${JSON.stringify(a['x-message-ttl'])}, not ${d}`,
      a['x-dead-letter-exchange'] !== '' && `x-dead-letter-exchange is ${JSON.stringify(a['x-dead-letter-exchange'])}, not '' (the default exchange)`,
      a['x-dead-letter-routing-key'] !== QUEUE && `x-dead-letter-routing-key is ${JSON.stringify(a['x-dead-letter-routing-key'])}, not '${QUEUE}'`,
      a['x-dead-letter-strategy'] !== 'at-least-once' && `x-dead-letter-strategy is ${JSON.stringify(a['x-dead-letter-strategy'])}, not 'at-least-once'`,
      a['x-overflow'] !== 'reject-publish' && `x-overflow is ${JSON.stringify(a['x-overflow'])}, not 'reject-publish' (at-least-once dead-lettering needs it)`,
    ].filter(Boolean);
    if (problems.length) {
      t.fail({
        summary: `The delay queue "${name(d)}" will not bring messages back to "${QUEUE}": ${problems[0]}.`,
        expected: `x-message-ttl ${d}, dead-lettered through '' with routing key '${QUEUE}', at-least-once`,
        saw: problems.join('; '),
        why: 'A delay queue has no consumer. Its messages leave only by expiring, and the dead-letter settings decide where they go then: back to the main queue, or nowhere.',
        fix: `arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': delay, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': QUEUE, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' }`,
        link: t.ui('queues', name(d)),
      });
    }
  }

  // 2. An event published to the exchange lands in the main queue.
  const pub = await t.confirmChannel();
  pub.publish(EXCHANGE, ROUTING_KEY, Buffer.from('{"probe":1}'), { persistent: true });
  await pub.waitForConfirms();
  t.log(`published a probe to exchange "${EXCHANGE}" with routing key "${ROUTING_KEY}"`);
  if ((await t.messageCount(QUEUE)) !== 1) {
    t.fail({ summary: `A message published to "${EXCHANGE}" with routing key "${ROUTING_KEY}" did not reach "${QUEUE}".`, fix: 'channel.bindQueue(QUEUE, EXCHANGE, ROUTING_KEY)', link: t.ui('exchanges', EXCHANGE) });
  }
  await t.takeMessages(QUEUE);

  // 3. A message parked for a retry comes back to the main queue after the delay.
  await t.publish(name(400), [{ parked: true }]);
  const parkedAt = Date.now();
  t.log(`parked a message in "${name(400)}"`);
  const back = await t.waitFor(async () => (await t.messageCount(QUEUE)) === 1, 3000, 50);
  const waited = Date.now() - parkedAt;
  if (!back) {
    const still = await t.messageCount(name(400));
    t.fail({
      summary: still ? `The parked message is still in "${name(400)}" after 3 s: it does not expire.` : `The parked message expired but never came back to "${QUEUE}": it was lost.`,
      expected: `the message back in "${QUEUE}" about 400 ms later`,
      saw: `${still} message(s) still parked, 0 in "${QUEUE}"`,
      why: 'The receiver acks a message once its copy sits in a delay queue. If the copy never returns, the event is gone for good.',
      fix: `x-dead-letter-routing-key must be '${QUEUE}': without it the message is dead-lettered with its old routing key (the delay queue's own name) and dropped as a cycle.`,
      link: t.ui('queues', name(400)),
    });
  }
  if (waited < 300) {
    t.fail({ summary: `The parked message came back after ${waited} ms, before its 400 ms delay.`, fix: "'x-message-ttl': delay on each delay queue." });
  }
  t.log(`the message was back in "${QUEUE}" after ${waited} ms`);

  // 4. connect(): a named connection with an error listener.
  const log = memoryLogger('topology');
  const conn = await t.call(`connect(url, 'check', log)`, () => t.target.connect(t.url, 'check', log));
  try {
    if (conn.listenerCount('error') === 0) {
      t.fail({
        summary: "connect() returns a connection with no 'error' listener.",
        why: "A connection error with no listener crashes the whole process: the bridge would die at the first network hiccup.",
        fix: "connection.on('error', (err) => log.warn(…)) before returning it.",
      });
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
});

// Check 3.1: "app-logs" is a durable direct exchange; publishing each severity to it lands
// in exactly the right queues ("error" in both); publishLog() goes through the exchange.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/01-direct.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { expectRoutes, type RouteCase } from './support.js';

const EXCHANGE = 'app-logs';

export default defineCheck<typeof Exercise>(async (t) => {
  await t.call('setupLogRouting(url)', () => t.target.setupLogRouting(t.url));
  await t.expectConnectionsClosed('setupLogRouting()');

  await expectExchange(t, EXCHANGE, 'direct', `await channel.assertExchange('${EXCHANGE}', 'direct', { durable: true })`);
  await expectQuorumQueue(t, 'alerts');
  await expectQuorumQueue(t, 'archive');

  // Play the applications: one log line per severity, straight to the exchange.
  const cases: RouteCase[] = [
    { key: 'debug', expect: [], because: 'Nobody asked for debug lines: with no binding for "debug", the exchange drops them.' },
    { key: 'info', expect: ['archive'], because: '"archive" keeps info, warning and error.' },
    { key: 'warning', expect: ['archive'], because: '"archive" keeps info, warning and error.' },
    {
      key: 'error',
      expect: ['alerts', 'archive'],
      because: 'An error line belongs in both queues. When two bindings match, the exchange puts a copy in each queue: a message is not "used up" by the first one.',
    },
  ];
  await expectRoutes(t, EXCHANGE, cases, (queue) =>
    queue === 'alerts'
      ? `Bind "alerts" with the binding key of the lines it wants: channel.bindQueue('alerts', '${EXCHANGE}', 'error'). A direct exchange compares the routing key with the binding key, not with the queue's name.`
      : `Bind "archive" once per severity it keeps: for (const s of ['info', 'warning', 'error']) await channel.bindQueue('archive', '${EXCHANGE}', s).`,
  );

  // Now the learner's publisher: it must go through the exchange, not the default exchange.
  const text = `disk full on db-${Math.floor(Math.random() * 90) + 10}`;
  await t.call(`publishLog(url, "error", "${text}")`, () => t.target.publishLog(t.url, 'error', text));
  await t.expectConnectionsClosed('publishLog()');
  const [alerts, archive] = [await t.takeMessages('alerts'), await t.takeMessages('archive')];
  if (alerts.length === 0 && archive.length === 0) {
    t.fail({
      summary: 'publishLog(url, "error", …) resolved, but the message is in neither "alerts" nor "archive".',
      expected: 'one copy in "alerts" and one in "archive"',
      saw: 'both queues empty',
      why: 'sendToQueue(q, …) publishes to the default exchange, which routes by queue name: there is no queue called "error", so the message was unroutable and dropped. The broker still confirms it: a confirm means "taken care of", not "delivered to a queue".',
      fix: `channel.publish('${EXCHANGE}', severity, Buffer.from(text), { persistent: true })`,
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  for (const [queue, got] of [['alerts', alerts], ['archive', archive]] as const) {
    if (got.length !== 1 || got[0]!.content.toString() !== text) {
      t.fail({
        summary: `After publishLog(url, "error", …), "${queue}" holds ${got.length} message(s) instead of the one published.`,
        expected: `one message ${JSON.stringify(text)}`,
        saw: got.map((m) => JSON.stringify(m.content.toString())).join(', ') || 'nothing',
        fix: `Publish exactly once: channel.publish('${EXCHANGE}', severity, Buffer.from(text), { persistent: true })`,
      });
    }
    if (got[0]!.fields.exchange !== EXCHANGE || got[0]!.fields.routingKey !== 'error') {
      t.fail({
        summary: `publishLog() did not publish to "${EXCHANGE}" with the severity as routing key.`,
        expected: `exchange "${EXCHANGE}", routing key "error"`,
        saw: `exchange "${got[0]!.fields.exchange}", routing key "${got[0]!.fields.routingKey}"`,
        fix: `channel.publish('${EXCHANGE}', severity, …)`,
      });
    }
    if (got[0]!.properties.deliveryMode !== 2) {
      t.fail({
        summary: 'publishLog() did not publish the message as persistent.',
        expected: 'deliveryMode 2 (persistent: true)',
        saw: `deliveryMode ${got[0]!.properties.deliveryMode ?? 'not set (transient)'}`,
        fix: "Pass { persistent: true } to channel.publish.",
      });
    }
  }
});

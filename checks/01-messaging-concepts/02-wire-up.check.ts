// Check 1.2: wireUp() leaves a durable direct exchange "notifications", a quorum queue
// "emails" and a binding with routing key "email"; then the checker publishes through the
// exchange and sees that only the "email" message reaches the queue.
import { defineCheck } from '../../runner/check/context.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { explainError } from '../../runner/check/explain-error.js';
import type * as Exercise from '../../exercises/01-messaging-concepts/02-wire-up.js';
import { recordChannelCalls, ReturnWatch } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const exchange = 'notifications';
  const queue = 'emails';
  const key = 'email';

  t.provoke([1, 2, 3], 'called wireUp() on an empty vhost');
  const bindCalls = await recordChannelCalls(t, ['bindQueue', 'bindExchange']);
  const watch = ReturnWatch.for(t);
  const thrown = await t
    .call('wireUp(url)', async () => {
      try {
        await watch.run(() => t.target.wireUp(t.url));
        return undefined;
      } catch (err) {
        return err as unknown;
      }
    })
    .finally(bindCalls.restore);
  if (thrown !== undefined) {
    const message = thrown instanceof Error ? thrown.message : String(thrown);
    const exchangeBind = bindCalls.calls.find((c) => c.method === 'bindExchange');
    if (exchangeBind) {
      t.fail({
        summary: `wireUp(url) threw: it called bindExchange(${exchangeBind.args.slice(0, 3).map((a) => JSON.stringify(a)).join(', ')}), which binds an exchange to an exchange, not a queue.`,
        expected: `channel.bindQueue('${queue}', '${exchange}', '${key}')`,
        saw: message,
        why: `bindExchange(destination, source, pattern) wants two exchanges. "${queue}" is a queue, so the broker finds no exchange by that name and closes the channel with NOT_FOUND.`,
        fix: `await channel.bindQueue('${queue}', '${exchange}', '${key}')`,
      });
    }
    const swapped = bindCalls.calls.find((c) => c.method === 'bindQueue' && c.args[0] === exchange && c.args[1] === queue);
    if (swapped) {
      t.fail({
        summary: `wireUp(url) threw: it called bindQueue('${exchange}', '${queue}', …): the arguments of bindQueue are swapped.`,
        expected: `channel.bindQueue('${queue}', '${exchange}', '${key}'): the queue first, then the exchange, then the routing key`,
        saw: message,
        why: 'bindQueue(queue, exchange, routingKey) names the destination first. With the two swapped, the broker looks for an exchange named after your queue, finds none, and closes the channel with NOT_FOUND.',
        fix: `await channel.bindQueue('${queue}', '${exchange}', '${key}')`,
      });
    }
    t.fail(explainError('wireUp(url)', thrown));
  }
  await t.expectConnectionsClosed('wireUp()');
  watch.expectClosedOnReturn(t, 'wireUp()');

  // 1. The exchange.
  await expectExchange(t, exchange, 'direct', `await channel.assertExchange('${exchange}', 'direct', { durable: true })`);
  t.observe(1, `"${exchange}" is a durable direct exchange`);

  // 2. The queue.
  await expectQuorumQueue(t, queue);
  t.observe(2, `"${queue}" is a durable quorum queue`);

  // 3. The binding between them.
  const bindings = (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === exchange && b.destination === queue && b.destination_type === 'queue');
  const keys = bindings.map((b) => b.routing_key);
  t.log(`bindings from "${exchange}" to "${queue}": ${keys.length ? keys.map((k) => `"${k}"`).join(', ') : 'none'}`);
  if (keys.length === 0) {
    t.fail({
      summary: `The queue "${queue}" is not bound to the exchange "${exchange}".`,
      expected: `a binding ${exchange} → ${queue} with routing key "${key}"`,
      saw: 'no binding between them (only the automatic one from the default exchange, which routes by queue name)',
      why: 'An exchange only delivers to queues bound to it. Without a binding, every message published to it is unroutable and dropped.',
      fix: `await channel.bindQueue('${queue}', '${exchange}', '${key}')`,
      link: t.ui('exchanges', exchange),
    });
  }
  if (!keys.includes(key)) {
    t.fail({
      summary: `The queue "${queue}" is bound to "${exchange}" with routing key ${keys.map((k) => `"${k}"`).join(', ')}, not "${key}".`,
      expected: `routing key "${key}"`,
      saw: `routing key ${keys.map((k) => `"${k}"`).join(', ')}`,
      why: `A direct exchange compares the message's routing key with the binding's, character for character. Messages published as "${key}" match nothing and are dropped.`,
      fix: `await channel.bindQueue('${queue}', '${exchange}', '${key}'), and remove the wrong binding (in the UI, or npm run reset 1.2).`,
      link: t.ui('exchanges', exchange),
    });
  }
  const extra = keys.filter((k) => k !== key);
  if (extra.length) {
    t.fail({
      summary: `The queue "${queue}" is bound to "${exchange}" with the routing key "${key}", and also with ${extra.map((k) => `"${k}"`).join(', ')}.`,
      expected: `one binding, routing key "${key}"`,
      saw: `routing keys ${keys.map((k) => `"${k}"`).join(', ')}`,
      why: `Every binding is one more door into the queue: a message published to "${exchange}" with the routing key ${extra.map((k) => `"${k}"`).join(' or ')} now lands in "${queue}" too, where the email service reads it as an email. Only messages with routing key "${key}" belong there; any other key must be dropped.`,
      fix: `Bind it once: await channel.bindQueue('${queue}', '${exchange}', '${key}'). Remove the other binding${extra.length === 1 ? '' : 's'} (in the UI, or npm run reset 1.2).`,
      link: t.ui('exchanges', exchange),
    });
  }

  // 4. Play the producer: one message the binding matches, one it does not.
  const ch = await t.confirmChannel();
  const tag = Math.floor(Math.random() * 9000) + 1000;
  const emailBody = `Your order #${tag} has shipped (email)`;
  ch.publish(exchange, 'email', Buffer.from(emailBody), { persistent: true });
  ch.publish(exchange, 'sms', Buffer.from(`Order #${tag} shipped (sms)`), { persistent: true });
  await ch.waitForConfirms();
  await ch.close();
  t.log(`published 2 messages to "${exchange}": routing key "email", then "sms"`);

  await t.waitFor(async () => (await t.messageCount(queue)) >= 1, 500);
  const got = (await t.takeMessages(queue)).map((m) => m.content.toString());
  t.observe(3, `"${queue}" received ${got.length} message(s)`);
  if (got.length !== 1 || got[0] !== emailBody) {
    t.fail({
      summary:
        got.length === 0
          ? `The message published to "${exchange}" with routing key "email" did not reach "${queue}".`
          : `"${queue}" received ${got.length} message(s) where only the "email" one belongs.`,
      expected: `exactly 1 message in "${queue}": "${emailBody}"`,
      saw: got.length ? got.map((g) => `"${g}"`).join(', ') : 'an empty queue',
      why: 'The routing is the whole point: the email service reads "emails", and must get the email notifications and nothing else.',
      fix: `One direct exchange, one binding with routing key "${key}", and no other bindings to "${queue}".`,
      link: t.ui('queues', queue),
    });
  }

  // Make the declaration fail: "notifications" exists as a fanout exchange, so declaring it direct is refused.
  const admin = await t.channel();
  await admin.deleteExchange(exchange);
  await admin.assertExchange(exchange, 'fanout', { durable: true });
  await admin.close();
  t.provoke(4, `re-created "${exchange}" as a fanout exchange, so that declaring it as direct fails (406 PRECONDITION_FAILED)`);
  await t.expectRefusalPassedOn('wireUp(url)', () => watch.run(() => t.target.wireUp(t.url)), {
    what: `to declare "${exchange}" as a direct exchange (it exists as a fanout one)`,
    error: '406 PRECONDITION_FAILED',
    link: t.ui('exchanges', exchange),
  });
  watch.expectClosedOnReturn(t, 'wireUp()');
  t.observe(4, "wireUp() rejected with the broker's refusal, and its connection is closed");
});

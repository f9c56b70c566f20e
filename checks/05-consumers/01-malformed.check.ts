// Check 5.1: valid JSON messages are handled and acked once handle() resolves, and requeued
// each time it rejects; a malformed one (published while a valid one is still unacknowledged)
// is rejected once, alone and without requeue, so it reaches the dead-letter queue the checker
// attached; the consumer keeps going; stop() leaves the unfinished message in the queue. A second
// consumer shows the prefetch, survives the queue's deletion (a null message) and a reset
// connection; a refused declaration must reject with the broker's error and close the connection.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/05-consumers/01-malformed.js';
import { declareAsSomeoneElse, expectSurvivesDeletionResetAndRefusal, pause, QUORUM, ScriptedHandler } from './support.js';

const order = (id: number, item: string) => ({ id, item });
/** How the checker names a value handle() got: "order 3", or the value itself when it is not a parsed order. */
const keyOf = (value: unknown) => {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof value === 'object' && value !== null && !Buffer.isBuffer(value) && typeof id === 'number' ? `order ${id}` : `${typeof value} ${JSON.stringify(value)}`;
};
const show = (values: unknown[]) => values.map((v) => `handle(${Buffer.isBuffer(v) ? `<Buffer "${v.toString()}">` : JSON.stringify(v)})`).join(', ') || 'no call';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  const dlq = 'orders.rejected';

  // Play the operator: give "orders" a dead-letter queue, so a rejected message can be seen (dead-lettering has a chapter of its own, later).
  await declareAsSomeoneElse(t, dlq, QUORUM);
  await t.mgmt.setPolicy(t.vhost, 'orders-dead-letters', { pattern: `^${queue}$`, definition: { 'dead-letter-exchange': '', 'dead-letter-routing-key': dlq } });
  t.log(`gave "${queue}" a dead-letter queue "${dlq}" (policy: dead-letter-exchange "", dead-letter-routing-key "${dlq}")`);

  // Order 1 never finishes (its handler hangs); order 3 fails twice before it goes through.
  const handler = new ScriptedHandler<unknown>(keyOf, (key) => (key === 'order 1' ? { kind: 'hang' } : key === 'order 3' ? { kind: 'fail', times: 2 } : { kind: 'ok' }));
  t.provoke(1, `called startJsonConsumer(url, "${queue}", handle); there is no queue "${queue}" yet`);
  const consumer = await t.call(`startJsonConsumer(url, "${queue}", handle)`, () => t.target.startJsonConsumer(t.url, queue, handler.handle));
  await expectQuorumQueue(t, queue);
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 2000))) {
    t.fail({
      summary: `startJsonConsumer() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', queue),
    });
  }
  // Read only to explain a failure: the management API lists the consumer after a statistics tick.
  const listed = t.waitForConsumer(queue, 8000).catch(() => undefined);

  const poison = '{"id": 2, "item": "tea", "qty": ';
  const stoppedByPoison = () =>
    t.fail({
      summary: `The malformed message stopped your consumer: "${queue}" has no consumer any more, and handle() got ${show(handler.calls)}.`,
      expected: 'the malformed message rejected, and the consumer still there for the orders around it',
      saw: `${show(handler.calls)}; 0 consumers`,
      why: "JSON.parse throws on a malformed body. An exception that escapes a plain message callback makes amqplib close the channel (with no 'error' listener on the channel, the whole connection; with none on the connection either, the process); one that escapes an async callback ends the process as an unhandled rejection. Either way, one bad message stops the whole consumer.",
      fix: 'Parse inside try { … } catch { … }; in the catch, reject the message without requeue and return: channel.reject(msg, false).',
      link: t.ui('queues', queue),
    });
  await t.publish(queue, [order(1, 'coffee'), poison, order(3, 'cake')], { contentType: 'application/json' });
  t.provoke(2, 'published order 1: the checker\'s handle() never resolves for it');
  t.provoke(4, `published a malformed body right behind it, while order 1 is still unacknowledged: ${poison}`);
  t.provoke(3, 'published order 3: handle() rejects it twice, then accepts it');

  // 1. Where did the malformed message go? Rejected alone and without requeue, it is dead-lettered at once.
  const deadLettered = await t.waitFor(async () => (await t.messageCount(dlq)) > 0, 1500, 50);
  if (!deadLettered) {
    if ((await t.consumerCount(queue)) === 0) stoppedByPoison();
    await t.call('stop()', () => consumer.stop());
    const back = (await t.takeMessages(queue, 10)).find((m) => m.content.toString() === poison);
    if (back) {
      // Quorum queues count deliveries in x-delivery-count; from RabbitMQ 4.3 a nack no longer
      // raises it, but x-acquired-count still counts every delivery.
      const headers = back.properties.headers ?? {};
      const count = Math.max(Number(headers['x-delivery-count'] ?? 0), Number(headers['x-acquired-count'] ?? 0));
      t.fail({
        summary: `The malformed message went back to the queue again and again: ${count > 0 ? `it was delivered ${count} times in 1.5 s` : 'it was still in the queue after stop()'}, and never reached the dead-letter queue.`,
        expected: `rejected once without requeue, then in "${dlq}"`,
        saw: `in "${queue}" again${count > 0 ? `, delivered ${count} times (x-delivery-count ${headers['x-delivery-count'] ?? 'absent'})` : ''}`,
        why: 'reject(msg) and nack(msg) requeue by default. A message that can never be processed comes straight back, is rejected again, and so on: a loop that burns CPU and network, and can starve the valid messages behind it. On RabbitMQ 3.10 to 3.13 nothing stops it; from 4.0 a quorum queue stops it after 20 deliveries (its delivery limit), but on 4.3 a basic.nack no longer counts towards that limit.',
        fix: 'Say requeue = false: channel.reject(msg, false).',
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: 'The malformed message was acknowledged as if it had been handled: it is gone, and did not reach the dead-letter queue.',
      expected: `rejected without requeue, then in "${dlq}"`,
      saw: `neither in "${queue}" nor in "${dlq}"`,
      why: 'An ack says "done, forget it". A rejection without requeue says "this one is bad": the broker hands it to the dead-letter exchange when the queue has one, where someone can look at it and repair it. Acking it loses that chance; acking before the work is done loses good messages too when the consumer dies.',
      fix: 'Ack only after handle() resolved. For a body that does not parse: channel.reject(msg, false).',
      link: t.ui('queues', dlq),
    });
  }
  await pause(50); // anything else rejected with it arrives together
  const dead = await t.takeMessages(dlq, 10);
  const bodies = dead.map((m) => m.content.toString());
  const valid = bodies.filter((b) => b !== poison);
  if (valid.length > 0) {
    const firstValid = valid[0]!;
    t.fail({
      summary: firstValid.includes('"id":1')
        ? 'Rejecting the malformed message also rejected order 1, which handle() was still working on: it ended in the dead-letter queue.'
        : firstValid.includes('"id":3')
          ? `When handle() rejected order 3, your consumer rejected the message without requeue: it went to the dead-letter queue after ${plural(handler.count('order 3'))}, instead of being tried again.`
          : `A valid order ended in the dead-letter queue: ${firstValid}`,
      expected: `only the malformed message in "${dlq}"`,
      saw: bodies.join(' | '),
      why: firstValid.includes('"id":1')
        ? 'channel.nack(msg, true, …): the middle argument, allUpTo, answers every unacknowledged message up to this one at once, the ones still being handled included. Their acks later hit an unknown delivery tag, and the broker closes the channel.'
        : 'A failing handler (a database timeout, a service restarting) is a passing problem: the message must go back to the queue to be tried again. Only a message that can never be processed is rejected for good.',
      fix: firstValid.includes('"id":1')
        ? 'channel.reject(msg, false): reject answers this one message, and nothing else.'
        : 'When handle() rejects: channel.reject(msg, true). Only a body that does not parse gets channel.reject(msg, false).',
      link: t.ui('queues', dlq),
    });
  }
  const death = (dead[0]!.properties.headers?.['x-death'] as { reason?: string; count?: number }[] | undefined)?.[0];
  if (death?.reason === 'delivery_limit' || dead.length > 1) {
    t.fail({
      summary: `The malformed message went back to the queue again and again, ${death?.reason === 'delivery_limit' ? `until the quorum queue's delivery-limit stopped it (x-death reason "delivery_limit", after ${death.count ?? '?'} round(s))` : `and reached the dead-letter queue ${dead.length} times`}.`,
      expected: 'rejected once, without requeue (x-death reason "rejected")',
      saw: `x-death reason ${JSON.stringify(death?.reason)}, ${dead.length} cop${dead.length === 1 ? 'y' : 'ies'}`,
      why: 'reject(msg) and nack(msg) requeue by default. The delivery limit (20 by default from RabbitMQ 4.0, none before) is a safety net, not a way to reject: every round trip costs, and on 4.3 a basic.nack no longer counts towards it.',
      fix: 'channel.reject(msg, false) for a body that does not parse.',
      link: t.ui('queues', dlq),
    });
  }
  t.observe(4, `the malformed message alone is in "${dlq}", rejected once (x-death reason "${death?.reason ?? '?'}"); order 1 was left alone`);

  // 2. Order 3 is requeued after each failure, and handled a third time.
  if (!(await t.waitFor(() => handler.count('order 3') >= 3, 3000))) {
    const consumers = await t.consumerCount(queue);
    const tries = handler.count('order 3');
    if (consumers === 0) stoppedByPoison();
    if (tries === 0) {
      t.fail({
        summary: `handle() never got order 3: it got ${show(handler.calls)}.`,
        expected: 'handle({ id: 3, item: "cake" }), the value parsed from the JSON body',
        saw: show(handler.calls),
        why: 'The handler works with values, not bytes or text: parse the body once, in the consumer.',
        fix: 'handle(JSON.parse(msg.content.toString())) for each valid message.',
        link: t.ui('queues', queue),
      });
    }
    const dead = (await t.takeMessages(dlq, 10)).map((m) => m.content.toString());
    const deadLettered = dead.some((b) => b.includes('"id":3'));
    t.fail({
      summary: deadLettered
        ? `When handle() rejected order 3, your consumer rejected the message without requeue: it went to the dead-letter queue after ${plural(tries)}, instead of being tried again.`
        : `When handle() rejected order 3, the message was not delivered again: handle() got it ${plural(tries)} in 3 s.`,
      expected: 'order 3 requeued after each failure: handle() gets it 3 times (it fails twice, then succeeds)',
      saw: deadLettered ? `order 3 in "${dlq}" after ${plural(tries)}` : `handle() got order 3 ${plural(tries)}`,
      why: 'A failing handler (a database timeout, a service restarting) is a passing problem: the message must go back to the queue to be tried again. Only a message that can never be processed is rejected for good.',
      fix: "In the second callback of handle(value).then(…, …): channel.reject(msg, true). Do not decide by msg.fields.redelivered: a message can fail more than twice.",
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, 'handle() got order 3 three times: the broker delivered it again after each rejection');
  t.expectRejectsNotNacks([3, 4], { retried: 'When handle() rejected', dropped: 'When the body did not parse' });
  // Given up at its first delivery: the only answers with requeue are the two for order 3's failures.
  const requeues = t.sent('basic.reject', 'basic.nack').filter((m) => m.requeue && !m.multiple).length;
  if (requeues > 2) {
    t.fail({
      summary: `Your consumer put the malformed message back in the queue before it gave it up: ${requeues} answers with requeue, where handle() failed only twice.`,
      expected: 'the malformed message rejected without requeue at its first delivery; 2 rejects with requeue, both for order 3',
      saw: `${requeues} rejects with requeue, ${requeues - 2} more than handle() failed; the malformed message reached "${dlq}" only after that`,
      why: 'A body that does not parse never will: one more chance only costs one more delivery of a poison message, to this consumer or another. Whether it was redelivered (msg.fields.redelivered) changes nothing about that.',
      fix: 'channel.reject(msg, false) as soon as JSON.parse throws, at the first delivery.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(4, 'the malformed message was rejected at its first delivery: the only requeues were for order 3');

  // 3. The consumer is still alive after it.
  await t.publish(queue, [order(4, 'bread')], { contentType: 'application/json' });
  t.provoke(5, 'published order 4 after the malformed message');
  if (!(await t.waitFor(() => handler.count('order 4') > 0, 2000))) {
    t.fail({
      summary: 'After the malformed message, your consumer no longer handles new messages.',
      expected: 'handle({ id: 4, … }) for the order published afterwards',
      saw: show(handler.calls),
      why: 'One bad message must not stop a consumer: the next good one has to go through.',
      fix: 'Make sure nothing in the callback throws, and that rejecting the bad message does not close the channel (reject it once, and only once).',
      link: t.ui('queues', queue),
    });
  }
  const want = [order(1, 'coffee'), order(3, 'cake'), order(3, 'cake'), order(3, 'cake'), order(4, 'bread')];
  if (show(handler.calls) !== show(want)) {
    t.fail({
      summary: 'handle() did not receive the parsed orders, in order.',
      expected: show(want),
      saw: show(handler.calls),
      why: 'The handler works with values, not bytes or text: parse the body once, in the consumer, and call handle() once per delivery.',
      fix: 'handle(JSON.parse(msg.content.toString())) for each valid message.',
    });
  }
  t.observe(5, 'order 4, published after the malformed message, reached handle(): the consumer kept going');

  // 4. stop() while order 1 is still being handled: unacked, it goes back to the queue.
  t.provoke(7, 'called stop() while handle() has still not resolved order 1');
  await t.call('stop()', () => consumer.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(7, 'after stop(), your connection is closed');
  const left = (await t.takeMessages(queue, 10)).map((m) => m.content.toString());
  if (left.length !== 1 || left[0] !== JSON.stringify(order(1, 'coffee'))) {
    const c = await listed;
    const early = !left.some((b) => b.includes('"id":1'));
    t.fail({
      summary: early
        ? `Order 1 was acknowledged before handle() resolved it: after stop() it is not back in "${queue}"${c && !c.ack_required ? ' (your consumer does not acknowledge at all: noAck: true)' : ''}.`
        : `After stop(), "${queue}" holds ${left.length} message(s) where only order 1, still unfinished, should be: handled messages were not acknowledged.`,
      expected: `only order 1 back in "${queue}" (its handle() never resolved); orders 3 and 4 acked`,
      saw: left.length ? left.join(' | ') : `"${queue}" empty`,
      why: early
        ? 'An ack says "done, forget it". Sent before the work is done (or with noAck: true), the message is lost when the consumer stops or dies in the middle.'
        : 'A message that is not acked comes back when the channel closes, and is processed again.',
      fix: 'Consume with { noAck: false }, and channel.ack(msg) in the .then() of handle(value), once it has resolved.',
      link: t.ui('queues', queue),
    });
  }
  t.observe([2, 7], `after stop(), only order 1 is back in "${queue}": orders 3 and 4 were acked once handled, order 1 was never acked early`);

  // 5. A second consumer: its prefetch, the queue deleted under it, its connection reset.
  const second = new ScriptedHandler<unknown>(keyOf, () => ({ kind: 'hang' }));
  await t.call(`startJsonConsumer(url, "${queue}", handle) again`, () => t.target.startJsonConsumer(t.url, queue, second.handle));
  const burst = Array.from({ length: 12 }, (_, i) => order(100 + i, 'biscuit'));
  await t.publish(queue, burst, { contentType: 'application/json' });
  t.provoke(1, 'published 12 orders to a second consumer whose handle() never resolves');
  const settled = await t.waitFor(async () => {
    const ready = await t.messageCount(queue);
    return second.calls.length + ready >= burst.length && second.calls.length > 0 ? ready : undefined;
  }, 2000);
  if (second.calls.length !== 10) {
    const c = await listed;
    t.fail({
      summary: `With 12 orders waiting and none finished, ${second.calls.length} reached handle() at once: the prefetch of 10 ${second.calls.length > 10 ? 'is missing or ignored' : 'is not what your consumer uses'}.`,
      expected: '10 at once (prefetch 10), 2 left ready in the queue',
      saw: `${second.calls.length} in handle(), ${settled ?? '?'} ready${c ? ` (consumer: ack_required ${c.ack_required}, prefetch_count ${c.prefetch_count})` : ''}`,
      why: 'The prefetch bounds how many unacknowledged messages the broker hands your consumer. Without it (or with noAck: true, which ignores it) a backlog lands in your process all at once.',
      fix: 'await channel.prefetch(10) before consume(), and consume with { noAck: false }.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(1, 'read from the broker: 10 orders delivered, 2 still ready: your consumer has a prefetch of 10 and acks manually');

  // 6. The queue deleted under it, its connection reset, a declaration refused.
  await expectSurvivesDeletionResetAndRefusal(t, { queue, under: 'the second consumer', lines: { deletion: [1], errors: [6] }, start: (legacy) => ({
    label: `startJsonConsumer(url, "${legacy}", handle)`, call: () => t.target.startJsonConsumer(t.url, legacy, handler.handle) }) });
});

function plural(n: number): string {
  return `${n} time${n === 1 ? '' : 's'}`;
}

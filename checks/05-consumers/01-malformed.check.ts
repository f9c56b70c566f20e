// Check 5.1: valid JSON messages are handled and acked; a malformed one is rejected once,
// without requeue (so it reaches the dead-letter queue the checker attached to the queue),
// and the consumer keeps going after it.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/05-consumers/01-malformed.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  const dlq = 'orders.rejected';

  // Play the operator: give "orders" a dead-letter queue, so a rejected message can be seen (chapter 7).
  const ch = await t.channel();
  await ch.assertQueue(dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.close();
  await t.mgmt.setPolicy(t.vhost, 'orders-dead-letters', {
    pattern: `^${queue}$`,
    definition: { 'dead-letter-exchange': '', 'dead-letter-routing-key': dlq },
  });
  t.log(`gave "${queue}" a dead-letter queue "${dlq}" (policy: dead-letter-exchange "", dead-letter-routing-key "${dlq}")`);

  const handled: unknown[] = [];
  const handle = async (value: unknown) => {
    handled.push(value);
  };
  const consumer = await t.call(`startJsonConsumer(url, "${queue}", handle)`, () => t.target.startJsonConsumer(t.url, queue, handle));
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 2000))) {
    t.fail({
      summary: `startJsonConsumer() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', queue),
    });
  }

  // 1. Two valid orders with a malformed one between them.
  const poison = '{"id": 2, "item": "tea", "qty": ';
  await t.publish(queue, [{ id: 1, item: 'coffee' }, poison, { id: 3, item: 'cake' }], { contentType: 'application/json' });
  t.log(`the second message is malformed JSON, cut off in the middle: ${poison}`);

  if (!(await t.waitFor(() => handled.length >= 2, 3000))) {
    const consumers = await t.consumerCount(queue);
    t.fail({
      summary:
        consumers === 0
          ? `The malformed message stopped your consumer: handle() was called for ${handled.length} of the 2 valid orders, and "${queue}" has no consumer any more.`
          : `handle() was called for ${handled.length} of the 2 valid orders.`,
      expected: 'handle({ id: 1, … }) and handle({ id: 3, … }), the malformed one rejected in between',
      saw: handled.length ? handled.map((v) => `handle(${JSON.stringify(v)})`).join(', ') : 'no call',
      why:
        consumers === 0
          ? 'JSON.parse throws on a malformed body. An exception that escapes the message callback makes amqplib close the channel (or, with no listener for it, crashes the process): one bad message stops the whole consumer.'
          : 'The consumer is there, but valid messages did not reach handle().',
      fix: 'Parse inside try { … } catch { … }; in the catch, reject the message without requeue and return: channel.nack(msg, false, false).',
      link: t.ui('queues', queue),
    });
  }

  // 2. Where did the malformed message go? Rejected without requeue, it is dead-lettered at once.
  const deadLettered = await t.waitFor(async () => (await t.messageCount(dlq)) > 0, 1500, 50);
  if (!deadLettered) {
    await t.call('stop()', () => consumer.stop());
    const [back] = await t.takeMessages(queue, 1);
    if (back) {
      // Quorum queues count deliveries in x-delivery-count; from RabbitMQ 4.3 a nack no longer
      // raises it, but x-acquired-count still counts every delivery.
      const headers = back.properties.headers ?? {};
      const count = Math.max(Number(headers['x-delivery-count'] ?? 0), Number(headers['x-acquired-count'] ?? 0));
      t.fail({
        summary: `The malformed message went back to the queue again and again: ${count > 0 ? `it was delivered ${count} times in 1.5 s` : 'it was still in the queue after stop()'}, and never reached the dead-letter queue.`,
        expected: `rejected once without requeue, then in "${dlq}"`,
        saw: `in "${queue}" again${count > 0 ? `, delivered ${count} times (x-delivery-count ${headers['x-delivery-count'] ?? 'absent'})` : ''}`,
        why: 'nack(msg) and reject(msg) requeue by default. A message that can never be processed comes straight back, is rejected again, and so on: a loop that burns CPU and network, and can starve the valid messages behind it. Since RabbitMQ 4.0 a quorum queue stops it after 20 deliveries (its delivery-limit), but from 4.3 a basic.nack no longer counts towards that limit.',
        fix: 'Say requeue = false: channel.nack(msg, false, false) or channel.reject(msg, false).',
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: 'The malformed message was acknowledged as if it had been handled: it is gone, and did not reach the dead-letter queue.',
      expected: `rejected without requeue, then in "${dlq}"`,
      saw: `neither in "${queue}" nor in "${dlq}"`,
      why: 'An ack says "done, forget it". A rejection without requeue says "this one is bad": the broker hands it to the dead-letter exchange when the queue has one, where someone can look at it and repair it. Acking it loses that chance; acking before the work is done loses good messages too when the consumer dies.',
      fix: 'Ack only after handle() resolved. For a body that does not parse: channel.nack(msg, false, false).',
      link: t.ui('queues', dlq),
    });
  }
  const [dead] = await t.takeMessages(dlq, 5);
  const death = (dead!.properties.headers?.['x-death'] as { reason?: string; count?: number }[] | undefined)?.[0];
  if (death?.reason === 'delivery_limit') {
    t.fail({
      summary: `The malformed message went back to the queue again and again, until the quorum queue's delivery-limit stopped it (x-death reason "delivery_limit", after ${death.count ?? '?'} round(s)).`,
      expected: 'rejected once, without requeue (x-death reason "rejected")',
      saw: 'x-death reason "delivery_limit"',
      why: 'nack(msg) requeues by default. The delivery-limit (20 by default since RabbitMQ 4.0) is a safety net, not a way to reject: every round trip costs, and from 4.3 a basic.nack no longer counts towards it.',
      fix: 'channel.nack(msg, false, false) (or channel.reject(msg, false)) for a body that does not parse.',
      link: t.ui('queues', dlq),
    });
  }
  if (dead!.content.toString() !== poison) {
    t.fail({
      summary: `A valid order ended in the dead-letter queue: ${dead!.content.toString()}`,
      expected: `only the malformed message in "${dlq}"`,
      saw: dead!.content.toString(),
      fix: 'Reject only what JSON.parse refuses; ack the messages handle() processed.',
      link: t.ui('queues', dlq),
    });
  }
  t.log(`the malformed message is in "${dlq}", rejected once (x-death reason "${death?.reason ?? '?'}")`);

  // 3. The consumer is still alive after it.
  await t.publish(queue, [{ id: 4, item: 'bread' }], { contentType: 'application/json' });
  if (!(await t.waitFor(() => handled.length >= 3, 2000))) {
    t.fail({
      summary: 'After the malformed message, your consumer no longer handles new messages.',
      expected: 'handle({ id: 4, … }) for the order published afterwards',
      saw: `handle() called ${handled.length} times in all`,
      why: 'One bad message must not stop a consumer: the next good one has to go through.',
      fix: 'Make sure nothing in the callback throws, and that rejecting the bad message does not close the channel (reject it once, and only once).',
      link: t.ui('queues', queue),
    });
  }
  const got = handled.map((v) => JSON.stringify(v)).join(', ');
  const want = [{ id: 1, item: 'coffee' }, { id: 3, item: 'cake' }, { id: 4, item: 'bread' }].map((v) => JSON.stringify(v)).join(', ');
  if (got !== want) {
    t.fail({
      summary: 'handle() did not receive the parsed orders.',
      expected: want,
      saw: got,
      why: 'The handler works with values, not text: parse the body once, in the consumer.',
      fix: 'handle(JSON.parse(msg.content.toString())) for each valid message.',
    });
  }

  // 4. stop(): nothing left unacknowledged.
  await t.call('stop()', () => consumer.stop());
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0) {
    t.fail({
      summary: `After stop(), ${left} message(s) went back to "${queue}": they were handled but never acknowledged.`,
      expected: `"${queue}" empty`,
      saw: `${left} message(s) ready again`,
      why: 'A message that is not acked comes back when the channel closes, and is processed again.',
      fix: 'channel.ack(msg) once handle() has resolved.',
      link: t.ui('queues', queue),
    });
  }
});

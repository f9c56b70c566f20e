// Check 2.2: the receiver consumes with manual acks, acks only after the work is done,
// stops cleanly, and survives the checker closing its connection mid-message.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/02-hello-world/02-receive.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'tasks';
  const received: string[] = [];
  const never = new Promise<void>(() => undefined); // the handler for "four" never finishes
  const handle = async (text: string) => {
    received.push(text);
    if (text === 'four') await never;
  };

  // 1. Start, and look at the consumer the broker registered.
  const first = await t.call(`startReceiver(url, "${queue}", handle)`, () => t.target.startReceiver(t.url, queue, handle));
  await t.queue(queue);
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 2000))) {
    t.fail({
      summary: `startReceiver() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', queue),
    });
  }

  // 2. Three messages, handled in order.
  await t.publish(queue, ['one', 'two', 'three']);
  const gotThree = await t.waitFor(() => received.length >= 3, 3000);
  if (!gotThree) {
    const still = await t.consumerCount(queue);
    t.fail({
      summary: `Your handler was called for ${received.length} of 3 messages.`,
      expected: 'handle("one"), handle("two"), handle("three")',
      saw: received.length ? received.map((r) => `handle("${r}")`).join(', ') : 'no call',
      why: still
        ? 'The consumer is still there but the messages did not reach handle().'
        : 'The consumer is gone: the broker closed its channel. Acknowledging a message twice (or on another channel) does that: PRECONDITION_FAILED, unknown delivery tag.',
      fix: still ? 'Call handle(msg.content.toString()) for every message.' : 'Ack each message exactly once, on the channel that delivered it.',
      link: t.ui('queues', queue),
    });
  }
  if (received.slice(0, 3).join(',') !== 'one,two,three') {
    t.fail({ summary: 'The handler did not get the message texts in order.', expected: 'one, two, three', saw: received.join(', '), fix: 'Pass msg.content.toString() to handle().' });
  }

  // 3. stop(): the consumer goes, the connection closes, and nothing is left unacknowledged.
  await t.call('stop()', () => first.stop());
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0) {
    t.fail({
      summary: `After stop(), ${left} of the 3 handled messages went back to the queue: they were never acknowledged.`,
      expected: '0 messages left (each acked after handle() resolved)',
      saw: `${left} message(s) ready again`,
      why: 'A message that is never acked stays "unacked"; when the channel closes the broker gives it to someone else. Every message would be processed again.',
      fix: 'Call channel.ack(msg) once handle() has resolved.',
      link: t.ui('queues', queue),
    });
  }

  // 4. Play the other side: a connection lost while the work is still going on.
  await t.call(`startReceiver(url, "${queue}", handle) again`, () => t.target.startReceiver(t.url, queue, handle));
  await t.publish(queue, ['four']);
  await t.waitFor(() => received.includes('four'), 3000);
  if (!received.includes('four')) t.fail({ summary: 'The second receiver did not get the message "four".', fix: 'startReceiver() must work when called again.' });
  t.cutConnections('a network failure while handle("four") was still running');
  const back = await t.waitFor(async () => ((await t.messageCount(queue)) === 1 ? 1 : undefined), 1500);
  if (!back) {
    const count = await t.messageCount(queue);
    t.fail({
      summary:
        count === 0
          ? 'The message "four" was lost: the checker cut your connection while handle("four") was still working, and the message did not come back.'
          : `After the connection was cut, ${count} messages are in the queue instead of 1.`,
      expected: '"four" back in the queue (it was never acked), and nothing else',
      saw: `${count} message(s) in the queue`,
      why:
        count === 0
          ? 'The broker only redelivers messages that were not acked. Acking before the work is done, or consuming with noAck: true, tells it "forget this one" at once: a crash in the middle loses it.'
          : 'Messages that were handled earlier were never acked, so they came back too.',
      fix: 'Consume with { noAck: false }, and ack in the .then() of handle(), never before calling it.',
      link: t.ui('queues', queue),
    });
  }
});

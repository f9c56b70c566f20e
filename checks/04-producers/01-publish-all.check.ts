// Check 4.1: publishAll() puts every message of a batch in a durable quorum queue, and
// when the broker refuses part of a batch (the checker makes it: max-length policy with
// overflow reject-publish), it rejects and says how many messages were refused.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/01-publish-all.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  const tag = Math.floor(Math.random() * 9000) + 1000;
  const first = [1, 2, 3, 4, 5].map((i) => `order ${tag}-${i}`);

  // 1. A batch the broker accepts.
  await t.call(`publishAll(url, "${queue}", [5 texts])`, () => t.target.publishAll(t.url, queue, first));
  await t.expectConnectionsClosed('publishAll()');
  const q = await t.queue(queue);
  if (q.type !== 'quorum' || !q.durable) {
    t.fail({
      summary: `The queue "${queue}" is not a durable quorum queue.`,
      expected: "durable: true, arguments: { 'x-queue-type': 'quorum' }",
      saw: `durable: ${q.durable}, type: ${q.type ?? 'classic'}`,
      fix: `channel.assertQueue('${queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
      link: t.ui('queues', queue),
    });
  }
  const kept = await t.messageCount(queue);
  if (kept !== first.length) {
    t.fail({
      summary: `publishAll() returned, but the queue "${queue}" holds ${kept} of the ${first.length} messages.`,
      expected: `${first.length} messages`,
      saw: `${kept} messages`,
      why: 'A message that is still in the client when the connection closes is lost. Only the confirm tells you the broker has it.',
      fix: 'Publish on a confirm channel and wait for every confirm before closing.',
      link: t.ui('queues', queue),
    });
  }
  // Look at the messages without removing them: take them, then put them back in order.
  const messages = await t.takeMessages(queue, first.length);
  await t.publish(queue, messages.map((m) => m.content), { persistent: true, contentType: 'text/plain' });
  const bodies = messages.map((m) => m.content.toString());
  if (bodies.join('|') !== first.join('|')) {
    t.fail({ summary: 'The messages in the queue are not the texts, in order.', expected: first.join(', '), saw: bodies.join(', '), fix: 'Publish Buffer.from(text) for each text, in order.' });
  }
  const transient = messages.filter((m) => m.properties.deliveryMode !== 2).length;
  if (transient > 0) {
    t.fail({
      summary: `${transient} of the messages were not published as persistent.`,
      expected: 'deliveryMode 2 on every message',
      saw: `deliveryMode ${messages[0]?.properties.deliveryMode ?? 'not set'}`,
      why: 'Say what you mean on every message: a transient message in a classic queue does not survive a restart.',
      fix: 'Pass { persistent: true } to every sendToQueue.',
    });
  }

  // 2. The broker refuses part of the next batch.
  await t.mgmt.setPolicy(t.vhost, 'orders-full', { pattern: `^${queue}$`, definition: { 'max-length': first.length, overflow: 'reject-publish' } });
  t.log(`made "${queue}" full: policy max-length ${first.length}, overflow reject-publish`);
  // A quorum queue applies a new policy a moment later, and refuses only once it is over the
  // limit: publish probes until the broker nacks one, so the learner's batch meets a full queue.
  let probesKept = 0;
  const refusing = await t.waitFor(
    async () =>
      t.publish(queue, ['probe']).then(
        () => void probesKept++,
        () => true,
      ),
    3000,
    50,
  );
  if (!refusing) throw new Error(`the broker kept accepting messages despite the max-length policy; the check cannot judge`);
  t.log(`the broker now nacks new messages on "${queue}"`);
  const second = [6, 7, 8, 9].map((i) => `order ${tag}-${i}`);
  const outcome = await t.call(`publishAll(url, "${queue}", [4 more texts]) while the queue is full`, async () => {
    try {
      await t.target.publishAll(t.url, queue, second);
      return { rejected: false, message: '' };
    } catch (err) {
      return { rejected: true, message: err instanceof Error ? err.message : String(err) };
    }
  });
  await t.expectConnectionsClosed('publishAll(), after the broker refused messages,');
  const accepted = (await t.messageCount(queue)) - first.length - probesKept;
  const refused = second.length - accepted;
  t.log(`the broker kept ${accepted} and refused ${refused} of the ${second.length} messages`);
  if (refused <= 0) {
    // Not the learner's fault: the broker did not apply the policy. Say so instead of passing.
    throw new Error(`the broker accepted all ${second.length} messages despite the max-length policy; the check cannot judge`);
  }
  if (!outcome.rejected) {
    t.fail({
      summary: `The broker refused ${refused} of ${second.length} messages (it sent nacks), but publishAll() reported success.`,
      expected: 'publishAll() rejects',
      saw: 'publishAll() resolved',
      why: 'Without confirms, or when a nack is caught and only logged, the caller believes the messages are safe. They are not in the queue, and nobody will ever know.',
      fix: 'Give each publish a callback (or use channel.waitForConfirms()), and let a nack reach the caller as a rejection.',
      link: t.ui('queues', queue),
    });
  }
  t.note(`publishAll() rejected with: "${outcome.message}"`);
  if (!new RegExp(`(^|\\D)${refused}(\\D|$)`).test(outcome.message)) {
    t.fail({
      summary: `publishAll() rejected, but its error does not say how many messages were refused (${refused} of ${second.length}).`,
      expected: `an error like "the broker refused ${refused} of ${second.length} messages"`,
      saw: JSON.stringify(outcome.message),
      why: 'waitForConfirms() rejects at the FIRST nack, with "message nacked": it does not tell you which messages, or how many, the broker kept. To retry only the refused ones, or to report them, you need each message\'s own answer.',
      fix: 'Give each sendToQueue a callback, turn each into a promise, await Promise.allSettled(...) and count the rejected ones.',
    });
  }
});

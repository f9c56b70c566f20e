// Check 5.7: sendExpiring() gives each message an `expiration` of whole milliseconds, as a
// string; the checker then shows (and checks) that an expired message behind a live one stays
// in the queue until it reaches the head, and is never delivered.
import type { ConsumeMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/05-consumers/07-expiration.js';
import { pause } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'codes';

  // The checker consumes from the queue while your code publishes, so that it sees each message
  // the moment it arrives, even one that would expire within milliseconds.
  const ch = await t.channel();
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const seen: ConsumeMessage[] = [];
  const { consumerTag } = await ch.consume(queue, (msg) => msg && seen.push(msg), { noAck: true });
  const arrived = (text: string) => t.waitFor(() => seen.find((x) => x.content.toString() === text), 1500);

  // 1. A code valid for 30 s: expiration '30000'.
  await t.call(`sendExpiring(url, "${queue}", "code-1", 30)`, () => t.target.sendExpiring(t.url, queue, 'code-1', 30));
  const m = await arrived('code-1');
  if (!m) {
    t.fail({
      summary: `sendExpiring() returned, but no message "code-1" arrived in "${queue}".`,
      expected: '1 message',
      saw: seen.length ? `messages: ${seen.map((x) => x.content.toString()).join(', ')}` : 'no message',
      fix: 'Declare the queue, publish on a confirm channel, and await channel.waitForConfirms() before closing.',
      link: t.ui('queues', queue),
    });
  }
  const expiration = m!.properties.expiration as unknown;
  if (expiration === undefined || expiration === null) {
    const headers = JSON.stringify(m!.properties.headers ?? {});
    t.fail({
      summary: 'The message has no expiration property: it never expires.',
      expected: "expiration: '30000' (a property of the message, in ms, as a string)",
      saw: `no expiration; headers ${headers}`,
      why: "A message's TTL is its `expiration` property. 'x-message-ttl' is a queue argument (or the policy key message-ttl): as a message header, the broker ignores it.",
      fix: "channel.sendToQueue(queue, Buffer.from(text), { persistent: true, expiration: String(Math.round(ttlSeconds * 1000)) })",
      link: t.ui('queues', queue),
    });
  }
  if (String(expiration) !== '30000') {
    t.fail({
      summary:
        String(expiration) === '30'
          ? "The message expires after 30 ms, not 30 s: its expiration is '30', a number of seconds where the broker reads milliseconds."
          : `The message's expiration is ${JSON.stringify(expiration)}, not '30000' (30 s in milliseconds).`,
      expected: "expiration '30000'",
      saw: `expiration ${JSON.stringify(expiration)}`,
      why: "The expiration property is in milliseconds. Some clients (Python's kombu, for one) take seconds and convert; with amqplib you write the milliseconds yourself.",
      fix: 'expiration: String(Math.round(ttlSeconds * 1000))',
      link: t.ui('queues', queue),
    });
  }
  t.log("code-1 carries expiration '30000'");

  // 2. A TTL with decimals: 2.01 s is 2010 ms (JavaScript computes 2.01 * 1000 = 2009.9999999999998).
  const failed = await t.call(`sendExpiring(url, "${queue}", "code-2", 2.01)`, async () => {
    try {
      await t.target.sendExpiring(t.url, queue, 'code-2', 2.01);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  });
  if (failed !== undefined) {
    t.fail({
      summary: `sendExpiring(url, "${queue}", "code-2", 2.01) failed (${failed}): the expiration was not a whole number of milliseconds, and the broker closed the channel.`,
      expected: "expiration '2010'",
      saw: `an error: ${failed}`,
      why: "amqplib turns a number into a string with toString(), so 30 * 1000 works. But 2.01 * 1000 is 2009.9999999999998 in JavaScript, and the broker accepts only digits: PRECONDITION_FAILED, invalid expiration '2009.9999999999998'. The error closes the channel.",
      fix: 'Round, and make the string yourself: expiration: String(Math.round(ttlSeconds * 1000)).',
      link: t.ui('queues', queue),
    });
  }
  const m2 = await arrived('code-2');
  if (!m2 || String(m2.properties.expiration) !== '2010') {
    t.fail({
      summary: `For 2.01 s the message's expiration is ${m2 ? JSON.stringify(m2.properties.expiration) : '(no message)'}, not '2010'.`,
      expected: "expiration '2010'",
      saw: m2 ? `expiration ${JSON.stringify(m2.properties.expiration)}` : 'no message in the queue',
      fix: 'expiration: String(Math.round(ttlSeconds * 1000))',
      link: t.ui('queues', queue),
    });
  }
  await ch.cancel(consumerTag);
  await ch.close();

  // 3. Expiry happens at the head of the queue. A message without TTL stands in front of a code of 0.3 s.
  await t.publish(queue, ['not a code: no TTL']);
  await t.call(`sendExpiring(url, "${queue}", "code-3", 0.3)`, () => t.target.sendExpiring(t.url, queue, 'code-3', 0.3));
  t.log('published a message without TTL, then your code-3 with a TTL of 0.3 s behind it');
  await pause(600); // the TTL has to run out: nothing to poll until then
  const counted = await t.messageCount(queue);
  t.log(`0.6 s later the queue still counts ${counted} message(s): code-3 has expired, but it is not at the head`);
  const delivered = await t.takeMessages(queue, 5);
  const texts = delivered.map((d) => d.content.toString());
  if (texts.includes('code-3')) {
    t.fail({
      summary: 'code-3 was delivered 0.6 s after it was sent, although its TTL was 0.3 s.',
      expected: "code-3 expired (expiration '300'), never delivered",
      saw: `delivered: ${texts.join(', ')} (code-3 expiration ${JSON.stringify(delivered.find((d) => d.content.toString() === 'code-3')?.properties.expiration)})`,
      fix: 'expiration: String(Math.round(ttlSeconds * 1000))',
      link: t.ui('queues', queue),
    });
  }
  const after = await t.messageCount(queue);
  t.log(`the checker took the message at the head (${texts.join(', ') || 'nothing'}); now code-3 reached the head, and was dropped: ${after} left`);
  t.note(
    counted === 2
      ? 'Seen in the broker: 0.6 s after it expired, code-3 was still counted in the queue, stuck behind a message without TTL. It went away only when it reached the head, and no consumer ever got it. One TTL per queue (x-message-ttl, or a policy) avoids that.'
      : 'An expired message is removed when it reaches the head of the queue, and is never delivered.',
  );
});

// Check 5.7: sendExpiring() declares a quorum queue without a queue-wide TTL and publishes a
// persistent message whose `expiration` is a string of whole milliseconds. A dead-letter queue
// the checker attaches shows each message that expired, and the expiration it had. The check
// shows that an expired message behind a live one waits for the head, makes the broker refuse a
// message, cuts the connection before the confirm, and has the declaration refused: each time
// sendExpiring() must reject, without crashing, and close its connection.
import type { GetMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/05-consumers/07-expiration.js';
import { cutAfterFirstPublish, declareAsSomeoneElse, expectRefusedDeclaration, pause, QUORUM } from './support.js';

const FIX = 'channel.sendToQueue(queue, Buffer.from(text), { persistent: true, expiration: String(Math.round(ttlSeconds * 1000)) })';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'codes';
  const expired = 'codes.expired';
  const send = (text: string, ttl: number, to = queue) => t.target.sendExpiring(t.url, to, text, ttl);

  // Play the operator: what expires in "codes" goes to "codes.expired", with an x-death header
  // that keeps the expiration it had (dead-lettering has a chapter of its own, later).
  await declareAsSomeoneElse(t, expired, QUORUM);
  await t.mgmt.setPolicy(t.vhost, 'codes-expired', { pattern: `^${queue}$`, definition: { 'dead-letter-exchange': '', 'dead-letter-routing-key': expired } });
  t.log(`gave "${queue}" a dead-letter queue "${expired}" (policy), to see what expires and when`);

  /** The message `text` from the queue; when it is not there, what the dead-letter queue says about it. */
  const take = async (text: string, ttl: number): Promise<GetMessage> => {
    const found = (await t.takeMessages(queue, 10)).find((m) => m.content.toString() === text);
    if (found) return found;
    const dead = await t.waitFor(async () => (await t.takeMessages(expired, 10)).find((m) => m.content.toString() === text), 500, 50);
    const death = (dead?.properties.headers?.['x-death'] as { reason?: string; 'original-expiration'?: string }[] | undefined)?.[0];
    if (dead && death?.reason === 'expired') {
      const had = String(death['original-expiration']);
      t.fail({
        summary:
          had === String(ttl)
            ? `"${text}" expired within milliseconds, not ${ttl} s: its expiration was '${had}', a number of seconds where the broker reads milliseconds.`
            : `"${text}" expired at once: its expiration was '${had}', not '${Math.round(ttl * 1000)}' (${ttl} s in milliseconds).`,
        expected: `expiration '${Math.round(ttl * 1000)}'`,
        saw: `expiration '${had}' (x-death reason "expired", in "${expired}")`,
        why: "The expiration property is in milliseconds. Some clients (Python's kombu, for one) take seconds and convert; with amqplib you write the milliseconds yourself.",
        fix: FIX,
        link: t.ui('queues', expired),
      });
    }
    return t.fail({
      summary: `sendExpiring() returned, but there is no message "${text}" in "${queue}", and nothing expired: a message published without waiting for a confirm can still be on its way when the connection closes, and is lost.`,
      expected: `the message "${text}" in "${queue}"`,
      saw: 'no such message, and nothing expired',
      why: 'publish() only writes to a buffer in your process. Closing the connection right after it can drop the message; only the confirm says that the broker has it.',
      fix: 'Declare the queue, publish Buffer.from(text) on a confirm channel, and await channel.waitForConfirms() before closing.',
      link: t.ui('queues', queue),
    });
  };

  // 1. A code valid for 30 s, into a queue that does not exist yet.
  t.provoke([1, 2], `called sendExpiring(url, "${queue}", "code-1", 30); there is no queue "${queue}" yet`);
  await t.call(`sendExpiring(url, "${queue}", "code-1", 30)`, () => send('code-1', 30));
  await t.expectConnectionsClosed('sendExpiring()');
  const q = await expectQuorumQueue(t, queue);
  const queueTtl = q.arguments['x-message-ttl'];
  if (queueTtl !== undefined) {
    t.fail({
      summary: `The queue "${queue}" has a queue-wide TTL (x-message-ttl ${JSON.stringify(queueTtl)}): every message in it expires then, whatever its own expiration says.`,
      expected: `a quorum queue without x-message-ttl`,
      saw: `arguments ${JSON.stringify(q.arguments)}`,
      why: 'With both, the lower TTL wins: a code sent with 30 s would go after the queue\'s TTL. And a queue argument cannot change later without deleting the queue.',
      fix: `Declare it with { durable: true, arguments: { 'x-queue-type': 'quorum' } } only, and put the TTL on each message (expiration).`,
      link: t.ui('queues', queue),
    });
  }
  t.observe(1, `read "${queue}" from the broker: a durable quorum queue, arguments ${JSON.stringify(q.arguments)}`);

  const m1 = await take('code-1', 30);
  if (m1.content.toString() !== 'code-1' || !m1.content.equals(Buffer.from('code-1'))) {
    t.fail({ summary: 'The body is not the text passed to sendExpiring().', expected: '"code-1"', saw: JSON.stringify(m1.content.toString()), fix: 'Publish Buffer.from(text).' });
  }
  const expiration = m1.properties.expiration as unknown;
  if (expiration === undefined || expiration === null) {
    const headers = JSON.stringify(m1.properties.headers ?? {});
    t.fail({
      summary: 'The message has no expiration property: it never expires.',
      expected: "expiration: '30000' (a property of the message, in ms, as a string)",
      saw: `no expiration; headers ${headers}`,
      why: "A message's TTL is its `expiration` property. 'x-message-ttl' is a queue argument (or the policy key message-ttl): as a message header, the broker ignores it.",
      fix: FIX,
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
      why: "The expiration property is a string of whole milliseconds. Some clients (Python's kombu, for one) take seconds and convert; with amqplib you write the milliseconds yourself.",
      fix: FIX,
      link: t.ui('queues', queue),
    });
  }
  if (m1.properties.deliveryMode !== 2) {
    t.fail({
      summary: 'The message was not published as persistent.',
      expected: 'deliveryMode 2 (persistent: true)',
      saw: `deliveryMode ${m1.properties.deliveryMode ?? 'not set (transient)'}`,
      why: 'A code that must survive until it expires must survive a broker restart too: a transient message in a classic queue is lost then. Say what you mean on every message.',
      fix: FIX,
    });
  }
  t.log("code-1 carries expiration '30000' and deliveryMode 2");

  // 2. A TTL with decimals: 2.01 s is 2010 ms (JavaScript computes 2.01 * 1000 = 2009.9999999999998).
  const failed = await t.call(`sendExpiring(url, "${queue}", "code-2", 2.01)`, async () => {
    try {
      await send('code-2', 2.01);
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
  const m2 = await take('code-2', 2.01);
  if (m2.properties.expiration !== '2010') {
    t.fail({
      summary: `For 2.01 s the message's expiration is ${JSON.stringify(m2.properties.expiration)}, not '2010'.`,
      expected: "expiration '2010'",
      saw: `expiration ${JSON.stringify(m2.properties.expiration)}`,
      why: '2.01 * 1000 is 2009.9999999999998 in JavaScript: cut off (Math.floor, parseInt) it is 2009, a millisecond short. Round to the nearest millisecond.',
      fix: 'expiration: String(Math.round(ttlSeconds * 1000))',
      link: t.ui('queues', queue),
    });
  }
  // And the other way: 4.03 * 1000 is 4030.0000000000005, a hair above the millisecond.
  await t.call(`sendExpiring(url, "${queue}", "code-2b", 4.03)`, () => send('code-2b', 4.03));
  const m2b = await take('code-2b', 4.03);
  if (m2b.properties.expiration !== '4030') {
    t.fail({
      summary: `For 4.03 s the message's expiration is ${JSON.stringify(m2b.properties.expiration)}, not '4030'${m2b.properties.expiration === '4031' ? ': rounded up to the next millisecond' : ''}.`,
      expected: "expiration '4030'",
      saw: `expiration ${JSON.stringify(m2b.properties.expiration)}`,
      why: "Seconds times 1000 is seldom exact in JavaScript: 2.01 * 1000 is 2009.9999999999998, 4.03 * 1000 is 4030.0000000000005. Cut off (Math.floor) the first is a millisecond short; rounded up (Math.ceil) the second is a millisecond long. Only rounding to the nearest gets both.",
      fix: 'expiration: String(Math.round(ttlSeconds * 1000))',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, "read your messages from the broker: bodies as sent, deliveryMode 2, expiration '30000' for 30 s, '2010' for 2.01 s and '4030' for 4.03 s");

  // 3. Expiry happens at the head of the queue. A message without TTL stands in front of a code of 0.3 s.
  await t.publish(queue, ['not a code: no TTL']);
  await t.call(`sendExpiring(url, "${queue}", "code-3", 0.3)`, () => send('code-3', 0.3));
  t.log('published a message without TTL, then your code-3 with a TTL of 0.3 s behind it');
  await pause(600); // the TTL has to run out: nothing to poll until then
  const counted = await t.messageCount(queue);
  t.log(`0.6 s later the queue still counts ${counted} message(s): code-3 has expired, but it is not at the head`);
  const delivered = (await t.takeMessages(queue, 5)).map((d) => d.content.toString());
  if (delivered.includes('code-3')) {
    t.fail({
      summary: 'code-3 was delivered 0.6 s after it was sent, although its TTL was 0.3 s.',
      expected: "code-3 expired (expiration '300'), never delivered",
      saw: `delivered: ${delivered.join(', ')}`,
      fix: FIX,
      link: t.ui('queues', queue),
    });
  }
  const dead = await t.waitFor(async () => (await t.takeMessages(expired, 5)).find((m) => m.content.toString() === 'code-3'), 1000, 50);
  const death = (dead?.properties.headers?.['x-death'] as { reason?: string; 'original-expiration'?: string }[] | undefined)?.[0];
  if (!dead || death?.reason !== 'expired' || death['original-expiration'] !== '300') {
    t.fail({
      summary: `code-3 (TTL 0.3 s) did not expire as it should: ${dead ? `it reached "${expired}" with x-death reason ${JSON.stringify(death?.reason)}, expiration ${JSON.stringify(death?.['original-expiration'])}` : `it is in neither "${queue}" nor "${expired}"`}.`,
      expected: `code-3 dead-lettered to "${expired}", reason "expired", original expiration '300'`,
      saw: dead ? `x-death ${JSON.stringify(death)}` : 'no trace of code-3',
      fix: FIX,
      link: t.ui('queues', expired),
    });
  }
  t.note(
    counted === 2
      ? 'Seen in the broker: 0.6 s after it expired, code-3 was still counted in the queue, stuck behind a message without TTL. It was dead-lettered (reason "expired") only when it reached the head, and no consumer ever got it. One TTL per queue (x-message-ttl, or a policy) avoids that.'
      : 'An expired message is removed when it reaches the head of the queue, and is never delivered.',
  );

  // 4. The broker refuses the message (a nack).
  await t.publish(queue, ['already here']);
  await t.mgmt.setPolicy(t.vhost, 'refuse-new-messages', { pattern: `^${queue}$`, priority: 10, definition: { 'max-length': 0, overflow: 'reject-publish' } });
  t.provoke([3, 4], `made the broker refuse new messages on "${queue}" (policy: max-length 0, overflow reject-publish)`);
  const refused = await t.call(`sendExpiring(url, "${queue}", "code-4", 30) while the broker refuses messages`, async () => {
    try {
      await send('code-4', 30);
      return 'resolved';
    } catch {
      return 'rejected';
    }
  });
  if (refused === 'resolved') {
    t.fail({
      summary: 'The broker refused the message (it sent a nack), but sendExpiring() reported success.',
      expected: 'sendExpiring() rejects when the broker nacks',
      saw: 'sendExpiring() resolved',
      why: 'publish() only writes to a socket buffer. Until the broker confirms, the message may be refused or lost, and your program has already moved on, believing the code was sent.',
      fix: 'Publish on connection.createConfirmChannel() and await channel.waitForConfirms() before returning: it rejects on a nack.',
    });
  }
  await t.expectConnectionsClosed('sendExpiring(), after the broker refused the message,');
  t.observe([3, 4], 'sendExpiring() rejected on the nack, and closed its connection');

  // 5. The connection is lost between the publish and the confirm.
  const cutter = cutAfterFirstPublish(t);
  t.provoke([3, 4], 'called sendExpiring(url, "codes.sms", "code-5", 30); the checker resets the connection right after the publish, before any confirm');
  const lost = await t
    .call(`sendExpiring(url, "codes.sms", "code-5", 30) with the connection lost before the confirm`, async () => {
      try {
        await send('code-5', 30, 'codes.sms');
        return 'resolved';
      } catch {
        return 'rejected';
      }
    }, { timeoutMs: 3000 })
    .finally(cutter.dispose);
  if (!cutter.cut()) {
    t.fail({
      summary: 'sendExpiring() never published anything the checker could see on its connection.',
      expected: 'a basic.publish on a connection of your own',
      saw: `sendExpiring() ${lost}`,
      fix: 'Open your own connection with amqp.connect(url), and publish on a confirm channel.',
    });
  }
  if (lost === 'resolved') {
    t.fail({
      summary: 'The connection was lost before the broker confirmed the message, but sendExpiring() reported success.',
      expected: 'sendExpiring() rejects: the message was never confirmed',
      saw: 'sendExpiring() resolved',
      why: 'Without the confirm, nobody knows whether the broker has the message. Only the caller can decide to send it again, and only if it hears of the failure.',
      fix: 'await channel.waitForConfirms() (it rejects when the channel closes first), and do not catch that error: let it reach the caller.',
    });
  }
  await t.expectConnectionsClosed('sendExpiring(), after its connection was reset,');
  t.observe([3, 4], "sendExpiring() rejected after the reset, and your process is still running: an 'error' listener took it");

  // 6. The broker refuses the declaration: "codes.legacy" has a queue-wide TTL already.
  await expectRefusedDeclaration(t, {
    lines: [4],
    queue: 'codes.legacy',
    existing: { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': 60000 } },
    what: 'a quorum queue with a queue-wide TTL (x-message-ttl 60000)',
    label: 'sendExpiring(url, "codes.legacy", "code-6", 30)',
    call: () => send('code-6', 30, 'codes.legacy'),
  });
});

// Check 2.1: send() leaves exactly one persistent message, with the very bytes of the text, in
// a durable quorum queue, and closes its connection. Then the checker makes the broker refuse:
// first the message (a nack), then the queue's declaration (406); send() must reject both
// times, and close its connection both times.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { catchCrashes, expectClosed, expectConfirmsAwaited, expectNoCrash, messageOf, outcomeOf, persistence, recordConfirmWaits, refuseNewMessages, showBody, takeNameAsClassic } from './support.js';
import type * as Exercise from '../../exercises/02-hello-world/01-send.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'hello';
  // Non-ASCII on purpose: the body must be the UTF-8 bytes of the text.
  const text = `Olá, RabbitMQ! (#${Math.floor(Math.random() * 9000) + 1000})`;
  const confirms = await recordConfirmWaits(t);
  const { crashes, restore } = catchCrashes();
  try {
    // For the last step, a name the broker will refuse to declare as a quorum queue: taken now, while send() runs.
    const taken = `${queue}-taken`;
    const taking = takeNameAsClassic(t, taken);
    t.provoke([1, 2], `called send(url, "${queue}", "${text}"); the queue does not exist yet`);
    await t.call(`send(url, "${queue}", "${text}")`, () => t.target.send(t.url, queue, text));
    expectConfirmsAwaited(t, confirms.waits, 0, 'send()');
    expectNoCrash(t, crashes, 'while sending');
    await expectClosed(t, 'send()');

    await expectQuorumQueue(t, queue);
    t.observe(1, `"${queue}" is a durable quorum queue`);

    const messages = await t.takeMessages(queue);
    if (messages.length === 0) {
      t.fail({
        summary: `send() returned, but the queue "${queue}" is empty.`,
        expected: '1 message in the queue',
        saw: '0 messages',
        why: 'Two mistakes end like this. A message published before its queue exists is unroutable, and dropped silently. A message published without waiting for the confirm can still be on its way when the connection closes, and is lost.',
        fix: 'Declare the queue first (await channel.assertQueue), publish on a confirm channel, and await channel.waitForConfirms() before closing.',
        link: t.ui('queues', queue),
      });
    }
    if (messages.length > 1) {
      t.fail({
        summary: `send() was called once but the queue holds ${messages.length} messages.`,
        expected: '1 message',
        saw: `${messages.length} messages: ${messages.map((m) => showBody(m.content)).join(', ')}`,
        why: 'Every extra publish is a message some consumer handles twice.',
        fix: 'Publish exactly once per call.',
      });
    }
    const [m] = messages;
    if (!m.content.equals(Buffer.from(text, 'utf8'))) {
      t.fail({
        summary: 'The message body is not the text that was passed to send(), as UTF-8 bytes.',
        expected: JSON.stringify(text),
        saw: showBody(m.content),
        why: 'The body is bytes. Buffer.from(text) turns the text into UTF-8 bytes, which every consumer can decode; another encoding garbles "Olá".',
        fix: 'Publish Buffer.from(text).',
      });
    }
    if (m.properties.deliveryMode !== 2) {
      t.fail({
        summary: 'The message was not published as persistent.',
        expected: 'deliveryMode 2 (persistent: true)',
        saw: persistence(m),
        why: 'A transient message in a classic queue is lost when the broker restarts. Say what you mean on every message, whatever the queue type.',
        fix: 'channel.sendToQueue(queue, Buffer.from(text), { persistent: true })',
      });
    }
    t.observe(2, 'the queue held exactly one message: the UTF-8 bytes of the text, persistent');

    // Play the other side: make the broker refuse the next message, and see whether send() notices.
    await refuseNewMessages(t, queue);
    t.provoke([3, 4], `made the broker refuse new messages on "${queue}" (policy: max-length 0, overflow reject-publish), then called send() again`);
    const waitsBefore = confirms.waits.length;
    const refused = await outcomeOf(t, 'send() while the broker refuses messages', () => t.target.send(t.url, queue, 'this one will be refused'));
    expectNoCrash(t, crashes, 'when the broker refused the message');
    if (refused.resolved) {
      const waited = confirms.waits.slice(waitsBefore);
      const dropped = waited.includes('rejected');
      t.fail({
        summary: dropped
          ? 'The broker refused the message, waitForConfirms() rejected to say so, and send() still reported success: the error was caught and dropped.'
          : 'The broker refused the message (it sent a nack), but send() reported success.',
        expected: 'send() rejects when the broker nacks',
        saw: dropped ? 'waitForConfirms() rejected, send() resolved' : 'send() resolved',
        why: dropped
          ? 'A catch that logs the error and goes on turns "the broker refused your message" into "sent". The caller believes the message is safe and moves on.'
          : 'publish() only writes to a socket buffer. Until the broker confirms, the message may be refused or lost, and your program has already moved on, believing it was sent.',
        fix: dropped
          ? 'Do not catch the error in send(): try { … } finally { await connection.close(); } closes the connection and lets the error reach the caller.'
          : 'Use connection.createConfirmChannel() and await channel.waitForConfirms() before returning.',
      });
    }
    t.observe(3, `send() rejected: ${messageOf(refused.error)}`);
    await expectClosed(t, 'send(), after the broker refused the message,');

    // And a declaration the broker refuses: the queue's name is taken by a classic queue.
    await taking;
    t.provoke(4, `declared "${taken}" as a classic queue, so that declaring it as a quorum queue fails (406 PRECONDITION_FAILED), then called send(url, "${taken}", …)`);
    const undeclared = await outcomeOf(t, `send(url, "${taken}", "hello")`, () => t.target.send(t.url, taken, 'hello'));
    expectNoCrash(t, crashes, 'when the broker refused to declare the queue');
    if (undeclared.resolved) {
      t.fail({
        summary: `The broker refused to declare "${taken}" (it exists as a classic queue), but send() resolved as if all was well.`,
        expected: "send() rejects with the broker's error (406 PRECONDITION_FAILED)",
        saw: 'send() resolved',
        why: 'A caller that is told "sent" goes on as if the message were safe. An error you catch and drop is a failure nobody hears of.',
        fix: 'Do not catch the error, or rethrow it: try { … } finally { await connection.close(); } closes the connection and lets the error through.',
        link: t.ui('queues', taken),
      });
    }
    await expectClosed(t, 'send(), after the broker refused to declare the queue,');
    t.observe(4, `send() rejected (${messageOf(undeclared.error)}) and closed its connection, after the nack and after the refused declaration`);
  } finally {
    restore();
    confirms.restore();
  }
});

// Check 2.1: send() leaves exactly one persistent message, with the very bytes of the text, in
// a durable quorum queue, and closes its connection. Then the checker makes the broker refuse:
// first the message (a nack, which the checker holds back a moment, as a busy broker would,
// while the code's timers run fast), then the queue's declaration (406); send() must publish
// once, wait for the answer and reject both times (with the broker's error for the
// declaration), and close its connection both times.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { catchCrashes, errorChain, expectClosed, expectConfirmsAwaited, expectNoCrash, expectOneAwaitedPublish, messageOf, outcomeOf, outcomeWhileBrokerIsSlow, persistence, recordConfirmWaits, refuseNewMessages, showBody, takeNameAsClassic } from './support.js';
import type * as Exercise from '../../exercises/02-hello-world/01-send.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'hello';
  // The body must be the UTF-8 bytes of the very text: non-ASCII (a character outside the 16-bit
  // range too), an "é" written as e + a combining accent (normalize() would change it), and
  // spaces and a line break at the ends (trim() would drop them).
  const text = ` Olá, RabbitMQ! 🐇 cafe\u0301 (#${Math.floor(Math.random() * 9000) + 1000})\n`;
  const shown = JSON.stringify(text);
  const confirms = await recordConfirmWaits(t);
  const { crashes, restore } = catchCrashes();
  try {
    // For the last step, a name the broker will refuse to declare as a quorum queue: taken now, while send() runs.
    const taken = `${queue}-taken`;
    const taking = takeNameAsClassic(t, taken);
    t.provoke([1, 2], `called send(url, "${queue}", ${shown}); the queue does not exist yet`);
    await t.call(`send(url, "${queue}", ${shown})`, () => t.target.send(t.url, queue, text));
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
      const mistake = bodyMistake(text, m.content);
      t.fail({
        summary: `The message body is not the text that was passed to send(), as UTF-8 bytes${mistake.what ? `: ${mistake.what}` : ''}.`,
        expected: `${shown} (${Buffer.byteLength(text)} bytes of UTF-8)`,
        saw: `${showBody(m.content)} (${m.content.length} bytes)`,
        why: mistake.why,
        fix: 'Publish Buffer.from(text): the text exactly as it was given, with nothing trimmed, normalized or re-encoded.',
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
    t.provoke(3, 'held the broker\'s answer back for a moment once send() had published (its timers meanwhile ran fast, as if seconds went by), and gave its channel a full write buffer (sendToQueue() returns false)');
    const waitsBefore = confirms.waits.length;
    const refused = await outcomeWhileBrokerIsSlow(t, 'send() while the broker refuses messages', () => t.target.send(t.url, queue, 'this one will be refused'));
    expectNoCrash(t, crashes, 'when the broker refused the message');
    expectOneAwaitedPublish(t, refused, 'send()', 'the message can end up in the queue twice, and a consumer handles it twice');
    t.observe(2, `send() published ${refused.published.length === 1 ? 'once' : `${refused.published.length} times`} when the broker refused the message`);
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
    const reason = /PRECONDITION|406|inequivalent/;
    if (!errorChain(undeclared.error).some((e) => reason.test(messageOf(e)))) {
      const masked = /channel closed/i.test(messageOf(undeclared.error));
      t.fail({
        summary: masked
          ? 'send() rejected when the broker refused to declare the queue, but with "Channel closed" instead of the broker\'s error: the real error was lost on the way.'
          : "send() rejected when the broker refused to declare the queue, but not with the broker's error: the caller cannot tell why.",
        expected: "send() rejects with the broker's error (406 PRECONDITION_FAILED - inequivalent arg 'x-queue-type'), or an error that keeps it as its cause",
        saw: `send() rejected with: ${messageOf(undeclared.error)}`,
        why: masked
          ? 'The broker closes the channel when it refuses a declaration. A channel.close() in finally then throws "Channel closed" (IllegalOperationError), and that new error replaces the real one on its way to the caller.'
          : "The broker's error names the queue and the argument that differ: that is what whoever reads the log needs. An error of your own without it hides what went wrong.",
        fix: masked
          ? 'In finally, close only the connection (closing it closes its channels): try { … } finally { await connection.close(); }.'
          : "Let the error through, or wrap it and keep it: throw new Error('…', { cause: err }).",
        link: t.ui('queues', taken),
      });
    }
    t.observe(4, `send() rejected with the broker's error (${messageOf(undeclared.error)}) and closed its connection, after the nack and after the refused declaration`);
  } finally {
    restore();
    confirms.restore();
  }
});

/** What turned the text into other bytes, as a beginner would put it. */
function bodyMistake(text: string, body: Buffer): { what?: string; why: string } {
  const got = body.toString('utf8');
  const same = (candidate: string | Buffer) => body.equals(typeof candidate === 'string' ? Buffer.from(candidate, 'utf8') : candidate);
  if (same(text.trim())) return { what: 'it was trimmed', why: "The spaces and the line break at the ends of the text are gone. send() publishes the text it is given; cleaning it up is the caller's business." };
  if (same(text.normalize('NFC')) || same(text.normalize('NFKC'))) return { what: 'it was normalized', why: 'The "é" written as e + a combining accent became a single character. It reads the same, but these are other bytes than the text you were given.' };
  if (same(JSON.stringify(text))) return { what: 'it is in JSON quotes', why: 'JSON.stringify(text) adds quotes and escapes: a consumer reading text gets them too.' };
  for (const encoding of ['latin1', 'ascii', 'utf16le'] as const) {
    if (same(Buffer.from(text, encoding))) return { what: `it is ${encoding}`, why: `A consumer decoding UTF-8 reads "${got.trim()}". Buffer.from(text) uses UTF-8, which every consumer can decode.` };
  }
  if (body.length < Buffer.byteLength(text) && Buffer.from(text, 'utf8').subarray(0, body.length).equals(body)) {
    return { what: 'it is cut short', why: `Only the first ${body.length} of its ${Buffer.byteLength(text)} bytes arrived: a buffer sized by text.length (characters) is too short for UTF-8, where "á" takes 2 bytes and "🐇" 4.` };
  }
  return { why: 'The body is bytes. Buffer.from(text) turns the text into UTF-8 bytes, which every consumer can decode; another encoding garbles "Olá" and "🐇".' };
}

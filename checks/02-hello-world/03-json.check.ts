// Check 2.3: sendJson() publishes one persistent, labelled, UTF-8 JSON body to a durable quorum
// queue, for an object as for a string, on a confirm channel (the checker makes the broker
// refuse the next one, and holds that nack back a moment while the code's timers run fast:
// sendJson() must publish once, wait, and reject); readJson() parses a good message, with its
// types intact (null, 0, false and "" too), and refuses an unlabelled, mislabelled, malformed
// or empty one with an Error that says why.
import { isDeepStrictEqual } from 'node:util';
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { catchCrashes, expectClosed, expectConfirmsAwaited, expectNoCrash, expectOneAwaitedPublish, messageOf, outcomeWhileBrokerIsSlow, persistence, recordConfirmWaits, refuseNewMessages, showBody } from './support.js';
import type * as Exercise from '../../exercises/02-hello-world/03-json.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  // Non-ASCII text (and a character outside the 16-bit range) is where encodings go wrong; numbers, booleans and null must stay what they are.
  const order = { id: Math.floor(Math.random() * 1e6), customer: 'Zoë', city: 'São Paulo', paid: true, coupon: null, items: [{ sku: 'café', qty: 2, price: 4.5, gift: '🎁' }] };
  const expected = JSON.stringify(order);
  const confirms = await recordConfirmWaits(t);
  const { crashes, restore } = catchCrashes();
  try {
    // A string is a JSON value too: it must arrive in quotes, as JSON text. Sent at the same time, to a queue of its own.
    const notes = 'notes';
    const note = 'Zoë says: "deliver after 18:00"';
    t.provoke([1, 2, 3], `called sendJson(url, "${queue}", order) and, at the same time, sendJson(url, "${notes}", ${JSON.stringify(note)}); neither queue exists yet`);
    await Promise.all([
      t.call(`sendJson(url, "${queue}", order)`, () => t.target.sendJson(t.url, queue, order)),
      t.call(`sendJson(url, "${notes}", ${JSON.stringify(note)})`, () => t.target.sendJson(t.url, notes, note)),
    ]);
    expectConfirmsAwaited(t, confirms.waits, 0, 'sendJson()');
    expectNoCrash(t, crashes, 'while sending');
    await expectClosed(t, 'sendJson()');
    await expectQuorumQueue(t, queue);
    t.observe(1, `"${queue}" is a durable quorum queue`);

    const messages = await t.takeMessages(queue);
    if (messages.length === 0) {
      t.fail({ summary: `sendJson() returned, but "${queue}" is empty.`, expected: '1 message', saw: '0 messages', fix: 'Declare the queue, publish, and await waitForConfirms() before closing.', link: t.ui('queues', queue) });
    }
    if (messages.length > 1) {
      t.fail({ summary: `sendJson() was called once but "${queue}" holds ${messages.length} messages.`, expected: '1 message', saw: messages.map((x) => showBody(x.content)).join(', '), fix: 'Publish exactly once per call.' });
    }
    const [m] = messages;
    if (m.properties.contentType !== 'application/json') {
      t.fail({
        summary: 'The message does not say it is JSON: its content type is not application/json.',
        expected: "contentType: 'application/json'",
        saw: `contentType: ${m.properties.contentType ?? 'not set'}`,
        why: 'A consumer, the management UI and tools like Shovel read the content type to know how to decode the body. Without it, the body is just bytes.',
        fix: "Publish with { contentType: 'application/json' }.",
      });
    }
    const body = m.content.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      t.fail({
        summary: 'The message body is not valid JSON.',
        expected: expected,
        saw: showBody(m.content).slice(0, 200),
        why: body.startsWith('[object') ? 'Buffer.from(String(value)) turns an object into the text "[object Object]".' : 'The consumer cannot parse it.',
        fix: "Publish Buffer.from(JSON.stringify(value), 'utf8').",
      });
    }
    if (!isDeepStrictEqual(parsed, order)) {
      t.fail({
        summary: 'The JSON in the message is not the value that was sent.',
        expected: expected,
        saw: showBody(m.content).slice(0, 300),
        why: 'Non-ASCII text (São, Zoë, café, 🎁) is where encodings go wrong: the bytes must be UTF-8, the encoding every JSON reader expects.',
        fix: "Buffer.from(JSON.stringify(value), 'utf8')",
      });
    }
    t.observe(2, 'one message: labelled application/json, UTF-8 JSON of the very value, types included');
    if (m.properties.deliveryMode !== 2) {
      t.fail({
        summary: 'The message was not published as persistent.',
        expected: 'deliveryMode 2 (persistent: true)',
        saw: persistence(m),
        why: 'A transient message in a classic queue is lost when the broker restarts. An order is worth keeping: say so on every message.',
        fix: "{ persistent: true, contentType: 'application/json' }",
      });
    }

    const [n, ...more] = await t.takeMessages(notes);
    if (!n || more.length > 0) {
      t.fail({ summary: `sendJson() was called once with a string, and "${notes}" then held ${n ? 1 + more.length : 0} messages.`, expected: '1 message', saw: n ? [n, ...more].map((x) => showBody(x.content)).join(', ') : '0 messages', fix: 'Publish exactly once per call, and await waitForConfirms() before closing.', link: t.ui('queues', notes) });
    }
    if (!n.content.equals(Buffer.from(JSON.stringify(note), 'utf8')) && !isDeepStrictEqual(parseOrFail(n.content), note)) {
      const unquoted = n.content.equals(Buffer.from(note, 'utf8'));
      t.fail({
        summary: unquoted ? 'sendJson() published a string value as bare text, without the JSON quotes: the body is not JSON.' : 'The JSON in the message is not the string that was sent.',
        expected: `${JSON.stringify(JSON.stringify(note))} (the string as JSON text, quotes and escapes included)`,
        saw: showBody(n.content),
        why: unquoted
          ? 'A string is a JSON value like any other: JSON.stringify(\'Zoë\') is "Zoë" with its quotes. Sent as it is, the body is not valid JSON, and a consumer\'s JSON.parse fails on it, though the label says application/json.'
          : 'The consumer must get back the very value that was sent, whatever its type.',
        fix: "Buffer.from(JSON.stringify(value), 'utf8') for every value, strings included: no special case.",
      });
    }
    t.observe(2, 'a string value arrived as JSON text, in its quotes');

    // Play the other side: the broker refuses the next order.
    await refuseNewMessages(t, queue);
    t.provoke([3, 4], `made the broker refuse new messages on "${queue}" (policy: max-length 0, overflow reject-publish), then called sendJson() again`);
    t.provoke(3, "held the broker's answer back for a moment once sendJson() had published (its timers meanwhile ran fast, as if seconds went by), and gave its channel a full write buffer (sendToQueue() returns false)");
    const waitsBefore = confirms.waits.length;
    const refused = await outcomeWhileBrokerIsSlow(t, 'sendJson() while the broker refuses messages', () => t.target.sendJson(t.url, queue, { id: 2 }));
    expectNoCrash(t, crashes, 'when the broker refused the message');
    expectOneAwaitedPublish(t, refused, 'sendJson()', 'the order is in the queue twice, and may be shipped twice');
    if (refused.resolved) {
      const dropped = confirms.waits.slice(waitsBefore).includes('rejected');
      t.fail({
        summary: dropped
          ? 'The broker refused the order, waitForConfirms() rejected to say so, and sendJson() still reported success: the error was caught and dropped.'
          : 'The broker refused the order (it sent a nack), but sendJson() reported success.',
        expected: 'sendJson() rejects when the broker nacks',
        saw: 'sendJson() resolved',
        why: 'The caller believes the order is safe and moves on. Until the broker confirms, a message may be refused or lost.',
        fix: dropped ? 'Do not catch the error: try { … } finally { await connection.close(); } lets it reach the caller.' : 'Publish on a confirm channel and await channel.waitForConfirms() before returning.',
      });
    }
    t.observe(3, `the message was persistent, and sendJson() rejected when the broker refused the next one: ${messageOf(refused.error)}`);
    await expectClosed(t, 'sendJson(), after the broker refused the message,');
    t.observe(4, 'the connection was closed after the success and after the refusal');

    // readJson(): a good message, then the ways a message can be wrong.
    const good = { content: Buffer.from(expected, 'utf8'), properties: { contentType: 'application/json' } };
    t.provoke(5, 'handed readJson() a message labelled application/json with the order as UTF-8 JSON');
    const value = await t.call('readJson(a valid JSON message)', () => t.target.readJson(good));
    if (!isDeepStrictEqual(value, order)) {
      t.fail({
        summary: 'readJson() did not return the parsed body of a valid message.',
        expected: `${expected} (an object)`,
        saw: `${typeof value === 'string' ? `the string ${JSON.stringify(value).slice(0, 200)}` : JSON.stringify(value)}`,
        why: typeof value === 'string' ? 'The body, as text, is still JSON: it needs JSON.parse to become the value.' : 'The value must come back as it was sent: the same fields, the same text, the same types.',
        fix: "return JSON.parse(message.content.toString('utf8'))",
      });
    }
    // null, 0, false and "" are JSON values too, and not "no message".
    t.provoke(5, 'handed readJson() messages labelled application/json whose values are null, 0, false and ""');
    for (const falsy of [null, 0, false, '']) {
      const body = JSON.stringify(falsy);
      const got = await t.call(`readJson(a message whose body is ${body})`, () => {
        try {
          return { value: t.target.readJson({ content: Buffer.from(body), properties: { contentType: 'application/json' } }) as unknown };
        } catch (err) {
          return { err };
        }
      });
      if (!('value' in got) || !Object.is(got.value, falsy)) {
        t.fail({
          summary: `readJson() did not return ${body} for a valid message whose body is ${body}.`,
          expected: `${body}, the parsed value`,
          saw: 'value' in got ? `${got.value === undefined ? 'undefined' : JSON.stringify(got.value)}` : `an error: ${messageOf(got.err)}`,
          why: 'null, 0, false and "" are JSON values like any other. A test like if (!value) or value || … treats them as "no message", though the message is valid and says exactly that.',
          fix: 'Return what JSON.parse returns, whatever it is: no truthiness test on it.',
        });
      }
    }
    t.observe(5, 'readJson() returned the order, deep-equal, types included, and null, 0, false and "" as themselves');

    const thrown = (label: string, message: Exercise.ReceivedMessage) =>
      t.call(label, () => {
        try {
          return { value: t.target.readJson(message) };
        } catch (err) {
          return { err };
        }
      });
    const mislabelled = { content: Buffer.from('{"looks":"like json"}'), properties: { contentType: 'text/plain' } };
    t.provoke(6, 'handed readJson() a message labelled text/plain, then one with no content type at all');
    const plain = await thrown('readJson(a text/plain message)', mislabelled);
    if (!(plain.err instanceof Error)) {
      t.fail({
        summary: 'readJson() accepted a message labelled text/plain.',
        expected: 'an Error, because the content type is not application/json',
        saw: 'err' in plain ? `${typeof plain.err} thrown, not an Error` : `a value: ${JSON.stringify(plain.value)}`,
        why: 'Guessing is how a consumer ends up processing something it does not understand. The label is the contract.',
        fix: "Throw an Error when message.properties.contentType !== 'application/json'.",
      });
    }
    const plainError = plain.err as Error; // t.fail() above returns never
    if (!plainError.message.includes('text/plain')) {
      t.fail({
        summary: 'readJson() refused a text/plain message, but its Error does not say which content type it got.',
        expected: 'an Error whose message names "text/plain"',
        saw: `Error: ${JSON.stringify(plainError.message)}`,
        why: 'Whoever reads the log has to find out why a message was refused. "expected application/json, got text/plain" answers at once.',
        fix: 'throw new Error(`expected content type application/json, got ${type}`)',
      });
    }
    const unlabelled = await thrown('readJson(a message with no content type)', { content: Buffer.from('{"id":1}'), properties: {} });
    if (!(unlabelled.err instanceof Error)) {
      t.fail({
        summary: 'readJson() accepted a message with no content type at all.',
        expected: 'an Error, because the message does not say it is JSON',
        saw: 'err' in unlabelled ? `${typeof unlabelled.err} thrown, not an Error` : `a value: ${JSON.stringify(unlabelled.value)}`,
        why: 'A missing label is not "probably JSON". The body could be anything; parsing it is a guess.',
        fix: "if (message.properties.contentType !== 'application/json') throw new Error(…): undefined is not 'application/json' either.",
      });
    }
    if (unlabelled.err instanceof TypeError && /Cannot read propert/.test(unlabelled.err.message)) {
      t.fail({
        summary: 'readJson() crashed on a message with no content type, instead of refusing it.',
        expected: 'an Error that says the message is not labelled application/json',
        saw: `TypeError: ${unlabelled.err.message}`,
        why: 'contentType is undefined when the publisher set none. Calling a method on it throws a TypeError by accident, which tells the reader nothing about the message.',
        fix: "Compare it: message.properties.contentType !== 'application/json'.",
      });
    }
    t.observe(6, `readJson() threw Errors: "${plainError.message}", and "${(unlabelled.err as Error).message}"`);

    t.provoke(7, 'handed readJson() a message labelled application/json whose body is broken JSON, then one whose body is empty');
    const brokenErrors: string[] = [];
    for (const [what, content] of [
      ['a broken JSON body', Buffer.from('{"id": 1,')],
      ['an empty body', Buffer.alloc(0)],
    ] as const) {
      const broken = await thrown(`readJson(a message with ${what})`, { content, properties: { contentType: 'application/json' } });
      if (!(broken.err instanceof Error) || broken.err.message.trim() === '') {
        t.fail({
          summary: broken.err instanceof Error ? `readJson() threw an Error with an empty message for ${what}, which is not valid JSON.` : `readJson() did not throw an Error for ${what}, which is not valid JSON.`,
          expected: 'an Error that says the body is not valid JSON',
          saw: broken.err instanceof Error ? 'Error: ""' : 'err' in broken ? `${typeof broken.err} thrown, not an Error` : `a value: ${broken.value === undefined ? 'undefined' : JSON.stringify(broken.value)}`,
          why:
            content.length === 0
              ? 'An empty body is not JSON, not even null: the publisher sent nothing it could have meant. Returning a value for it turns a broken message into data downstream.'
              : 'A message that cannot be read must not turn into undefined or null downstream: an Error stops the work, and its message says why.',
          fix: 'Let JSON.parse decide, for every body, empty ones included: it throws for both. Or wrap it and throw new Error(`the body is not valid JSON: ${err.message}`).',
        });
      }
      brokenErrors.push((broken.err as Error).message); // t.fail() above returns never
    }
    t.observe(7, `readJson() threw: "${brokenErrors.join('", and "')}"`);
  } finally {
    restore();
    confirms.restore();
  }
});

/** The body parsed, or undefined when it is not valid JSON. */
function parseOrFail(content: Buffer): unknown {
  try {
    return JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
}

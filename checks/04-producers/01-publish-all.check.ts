// Check 4.1: publishAll() puts every text of a batch, in order and persistent, in a durable
// quorum queue, all published before the first confirm is awaited. When the broker refuses
// part of a batch (a max-length policy with overflow reject-publish: the queue takes one
// message and nacks the rest, and the checker hands the broker's answers over one at a time),
// it rejects and says how many of how many, counted once every answer is in. The first batch
// holds the same text twice: two messages all the same. When the broker
// refuses the queue's declaration (406), it passes the error on and closes its connection.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/04-producers/01-publish-all.js';
import { confirmWindows, expectClosed, expectRefusedQueueHandled, refuseNewMessages, messageOf, settle, type ConfirmReport } from './support.js';

type Ctx = CheckContext<typeof Exercise>;

const PUBLISH = "channel.sendToQueue(queue, Buffer.from(text), { persistent: true }, (err) => (err ? reject(err) : resolve()))";

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'orders';
  const tag = Math.floor(Math.random() * 9000) + 1000;
  // The same order twice (a customer who ordered the same thing again): two messages.
  const first = [1, 2, 3, 3, 4].map((i) => `order ${tag}-${i}`);

  // 1. A batch the broker accepts.
  t.provoke([1, 2, 3], `called publishAll(url, "${queue}", [${first.length} texts, the 3rd and 4th the same]) on an empty vhost`);
  confirmWindows.reset();
  await t.call(`publishAll(url, "${queue}", [${first.length} texts])`, () => t.target.publishAll(t.url, queue, first));
  const window = confirmWindows.report();
  await expectClosed(t, 'publishAll()');

  const q = await expectQuorumQueue(t, queue);
  if (!q.durable) {
    t.fail({
      summary: `The queue "${queue}" is not durable.`,
      expected: 'durable: true',
      saw: 'durable: false',
      fix: `channel.assertQueue('${queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
      link: t.ui('queues', queue),
    });
  }
  t.observe(1, `read "${queue}" from the management API: a durable quorum queue`);

  const messages = await t.takeMessages(queue, first.length + 5);
  if (messages.length < first.length) {
    // Lost on the way: say why, when amqplib's bookkeeping shows it.
    expectConfirmChannel(t, window);
    expectAllConfirmed(t, window);
  }
  expectBatch(t, queue, messages, first);
  t.observe(2, `took the ${messages.length} messages from "${queue}": the texts byte for byte, in order, each persistent`);
  expectNoWaitInBetween(t, window, first.length);
  t.observe(2, `read amqplib's confirm bookkeeping: up to ${window.maxUnconfirmed} messages were waiting for their confirm at once`);
  expectAllConfirmed(t, window);
  t.observe(3, `all ${first.length} messages were in "${queue}" when publishAll() resolved, and none was still waiting for its confirm`);

  // 2. The broker refuses part of the next batch.
  await checkRefusedBatch(t, queue, tag);

  // 3. The broker refuses the queue's declaration.
  await expectRefusedQueueHandled(t, { line: 5, name: 'publishAll()', queue: 'invoices', call: () => t.target.publishAll(t.url, 'invoices', [`invoice ${tag}`]) });
});

/** The queue holds the texts, byte for byte, in order, each once and persistent. */
function expectBatch(t: Ctx, queue: string, messages: GetMessage[], texts: string[]): void {
  const bodies = messages.map((m) => m.content.toString());
  if (messages.length === 0) {
    t.fail({
      summary: `publishAll() resolved, but the queue "${queue}" is empty.`,
      expected: `${texts.length} messages`,
      saw: '0 messages',
      why: 'A message that is still in the client when the connection closes is lost. Only the confirm tells you the broker has it.',
      fix: `Publish on a confirm channel, and wait for every confirm before closing: ${PUBLISH}, then await Promise.allSettled(...).`,
      link: t.ui('queues', queue),
    });
  }
  const same = messages.length === texts.length && messages.every((m, i) => m.content.equals(Buffer.from(texts[i]!)));
  const distinct = [...new Set(texts)];
  if (!same && distinct.length < texts.length && bodies.length === distinct.length && bodies.every((b, i) => b === distinct[i])) {
    const twice = texts.find((x, i) => texts.indexOf(x) !== i)!;
    t.fail({
      summary: `publishAll() published each distinct text once: ${JSON.stringify(twice)} was given twice, and the queue "${queue}" holds it once.`,
      expected: `${texts.length} messages: ${texts.map((x) => JSON.stringify(x)).join(', ')}`,
      saw: `${bodies.length} messages: ${bodies.map((b) => JSON.stringify(b)).join(', ')}`,
      why: 'Two equal texts are two messages: a customer who orders the same thing twice made two orders. What to send is the caller\'s decision; a publisher that drops a repeat (a Set, a filter on earlier texts) loses a message and still reports success.',
      fix: `Publish every element of texts, in order, also one equal to an earlier one: texts.map((text) => new Promise(… ${PUBLISH} …)).`,
      link: t.ui('queues', queue),
    });
  }
  if (!same) {
    const reordered = messages.length === texts.length && texts.every((x) => bodies.includes(x));
    const quoted = messages.length === texts.length && bodies.every((b, i) => b === JSON.stringify(texts[i]));
    t.fail({
      summary: reordered
        ? `The queue "${queue}" holds the texts in another order than they were given.`
        : quoted
          ? 'publishAll() published each text JSON-encoded, in quotes, instead of the text itself.'
          : messages.length > texts.length
            ? `publishAll() was given ${texts.length} texts, but the queue "${queue}" holds ${messages.length} messages.`
            : messages.length < texts.length
              ? `publishAll() resolved, but the queue "${queue}" holds ${messages.length} of the ${texts.length} messages.`
              : `The messages in the queue "${queue}" are not the texts that were given.`,
      expected: texts.map((x) => JSON.stringify(x)).join(', '),
      saw: bodies.map((b) => JSON.stringify(b)).join(', '),
      why: reordered
        ? 'Consumers read a queue in the order it was filled: publish the texts one after the other, as they come, without awaiting anything that lets a later one overtake an earlier one.'
        : messages.length < texts.length
          ? 'A message that is still in the client when the connection closes is lost. Only the confirm tells you the broker has it.'
          : 'Each text is one message, published once, as it was given: Buffer.from(text).',
      fix: messages.length < texts.length ? 'Wait for every confirm before closing the connection.' : PUBLISH,
      link: t.ui('queues', queue),
    });
  }
  const transient = messages.filter((m) => m.properties.deliveryMode !== 2);
  if (transient.length > 0) {
    t.fail({
      summary: `${transient.length} of the ${messages.length} messages were not published as persistent.`,
      expected: 'deliveryMode 2 on every message (persistent: true)',
      saw: `deliveryMode ${transient[0]!.properties.deliveryMode ?? 'not set'} on ${transient.map((m) => JSON.stringify(m.content.toString())).join(', ')}`,
      why: 'Say what you mean on every message: a transient message in a classic queue does not survive a restart, and the queue a message lands in may change one day.',
      fix: 'Pass { persistent: true } (or deliveryMode: 2) to every sendToQueue.',
    });
  }
}

/** Line 2: the messages went out on a confirm channel. */
function expectConfirmChannel(t: Ctx, window: ConfirmReport): void {
  if (window.seen && window.confirmChannels === 0) {
    t.fail({
      summary: 'publishAll() published on a plain channel, not on a confirm channel.',
      expected: 'connection.createConfirmChannel()',
      saw: `${window.channels} channel(s) opened with createChannel()`,
      why: 'On a plain channel the broker never says whether it took a message: a refused or lost message looks exactly like a stored one.',
      fix: 'const channel = await connection.createConfirmChannel(); then give each sendToQueue a callback.',
    });
  }
}

/** Line 2: every message of the batch was out before the code waited for a confirm. */
function expectNoWaitInBetween(t: Ctx, window: ConfirmReport, count: number): void {
  if (!window.seen) {
    t.note("The checker could not see amqplib's confirm bookkeeping (another client library, or its internals changed): whether the messages were published before waiting was not checked.");
    return;
  }
  expectConfirmChannel(t, window);
  if (window.maxUnconfirmed < count) {
    t.fail({
      summary: `publishAll() waited for each confirm before publishing the next message: at most ${window.maxUnconfirmed} of the ${count} messages were ever waiting for their confirm at once.`,
      expected: `all ${count} messages published before the first confirm is awaited`,
      saw: `at most ${window.maxUnconfirmed} message(s) waiting for a confirm at a time`,
      why: 'Each confirm takes a round trip to the broker and a write to disk. Waiting for it before the next publish makes a batch of a thousand messages take a thousand round trips; publishing them all and then waiting lets the broker confirm them together.',
      fix: `Publish every text first, keeping one promise per message (${PUBLISH}), and only then await Promise.allSettled(confirms).`,
    });
  }
}

/** Line 3: nothing was still waiting for its confirm when the function resolved. */
function expectAllConfirmed(t: Ctx, window: ConfirmReport): void {
  if (!window.seen || window.unconfirmed === 0) return;
  t.fail({
    summary: `publishAll() resolved while ${window.unconfirmed} of its messages were still waiting for their confirm.`,
    expected: 'every message confirmed before publishAll() resolves',
    saw: `${window.unconfirmed} message(s) never confirmed: the connection closed before the broker answered`,
    why: 'Until the broker confirms a message it may still refuse it, or lose it with the connection. Resolving earlier tells the caller the messages are safe when nobody knows yet.',
    fix: 'await Promise.allSettled(confirms) (or channel.waitForConfirms()) before returning, and before closing the connection.',
  });
}

/**
 * Lines 4 and 5: the queue takes one more message and refuses the rest; publishAll() rejects
 * with an Error that says how many of how many, and closes its connection.
 */
async function checkRefusedBatch(t: Ctx, queue: string, tag: number): Promise<void> {
  const second = [6, 7, 8, 9].map((i) => `order ${tag}-${i}`);
  let attempt = 0;
  for (;;) {
    attempt++;
    // Exactly at its limit, a quorum queue takes the first message of a new publisher and
    // nacks the others, once the refusal reaches the publisher's channel. When the broker is
    // busy, that can come too late for a short batch: then all of it is taken, and the
    // checker tries again.
    if (!(await refuseNewMessages(t, queue, 'at'))) throw new Error(`the broker kept accepting messages on "${queue}" despite the max-length policy; the check cannot judge`);
    t.provoke([4, 5], `put a policy on "${queue}" (max-length 0, overflow reject-publish): the broker will take the first message of the next batch and refuse (nack) the rest; the checker hands its answers to publishAll() one at a time, a few milliseconds apart, as a busy broker sends them`);
    confirmWindows.reset();
    confirmWindows.paceAnswers(true);
    const outcome = await settle(t, `publishAll(url, "${queue}", [${second.length} more texts]) while the queue is full`, () => t.target.publishAll(t.url, queue, second)).finally(() =>
      confirmWindows.paceAnswers(false),
    );
    const answers = confirmWindows.report();
    await expectClosed(t, 'publishAll(), after the broker refused messages,');
    const kept = await t.takeMessages(queue, second.length + 1);
    const refused = second.length - kept.length;
    t.log(`the broker kept ${kept.length} and refused ${refused} of the ${second.length} messages`);
    if (refused > 0) return judgeRefusal(t, queue, second, kept.length, outcome, answers);
    if (outcome.rejected) {
      t.fail({
        summary: `publishAll() rejected with "${messageOf(outcome.err)}", but the broker had confirmed all ${second.length} messages.`,
        expected: 'publishAll() resolves when every message is acked',
        saw: `publishAll() rejected; the ${second.length} messages are in "${queue}"`,
        why: 'A caller that is told the batch failed sends it again: every message twice.',
        fix: 'Reject only when at least one confirm is a nack: count the rejected outcomes of Promise.allSettled(confirms).',
      });
    }
    if (attempt === 3) throw new Error(`the broker accepted all ${second.length} messages despite the max-length policy, three times; the check cannot judge`);
  }
}

/** Line 4: publishAll() rejected with an Error that says how many of how many (the broker's count). */
function judgeRefusal(t: Ctx, queue: string, second: string[], kept: number, outcome: Awaited<ReturnType<typeof settle>>, answers: ConfirmReport): void {
  const refused = second.length - kept;
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
  const message = messageOf(outcome.err);
  t.note(`publishAll() rejected with: "${message}"`);
  if (!(outcome.err instanceof Error)) {
    t.fail({
      summary: `publishAll() rejected with a ${typeof outcome.err}, not an Error: ${JSON.stringify(outcome.err)}.`,
      expected: `new Error("the broker refused ${refused} of ${second.length} messages")`,
      saw: `${typeof outcome.err} ${JSON.stringify(outcome.err)}`,
      why: 'Code that catches it reads err.message and err.stack; a thrown string has neither, and loggers print it without the place it came from.',
      fix: 'throw new Error(`the broker refused ${refused} of ${texts.length} messages`)',
    });
  }
  const numbers = (message.match(/\d+/g) ?? []).map(Number);
  const says = (n: number) => new RegExp(`(^|\\D)${n}(\\D|$)`).test(message);
  if (!says(refused) || !says(second.length) || (refused === second.length && numbers.filter((n) => n === refused).length < 2)) {
    // The count it gives: the number that is not the batch's size (or the size itself, said twice).
    const others = [...numbers];
    if (says(second.length)) others.splice(others.indexOf(second.length), 1);
    const claimed = says(second.length) ? others[0] : undefined;
    const blamesAll = claimed === second.length;
    // Rejected with answers still on their way: it did not wait for them all.
    const tooEarly = claimed !== undefined && claimed < refused && answers.seen && answers.unconfirmed > 0;
    const countsKept = !tooEarly && claimed !== undefined && claimed === kept && kept !== refused;
    t.fail({
      summary: blamesAll
        ? `publishAll() says the broker refused all ${second.length} messages, but the broker kept ${kept} of them and refused ${refused}.`
        : tooEarly
          ? `publishAll() says the broker refused ${claimed} of ${second.length} messages, but it refused ${refused}: publishAll() counted before every answer had arrived.`
          : countsKept
            ? `publishAll() says the broker refused ${claimed} of ${second.length} messages, but ${claimed} is how many it kept: it refused ${refused}.`
            : `publishAll() rejected, but its error does not say how many of how many messages were refused (${refused} of ${second.length}).`,
      expected: `an error like "the broker refused ${refused} of ${second.length} messages"`,
      saw: JSON.stringify(message),
      why: blamesAll
        ? 'waitForConfirms() rejects at the first nack, whatever happened to the other messages. A caller that believes all of them were refused sends the kept ones again: duplicates.'
        : tooEarly
          ? 'Promise.all() and waitForConfirms() reject at the FIRST nack. The broker may answer each message on its own, at its own time (the checker handed its answers over one at a time, as a busy broker sends them): when the first nack arrived, the other answers had not, and the count stopped there. A caller told that fewer were refused believes the others are safe.'
          : countsKept
            ? "The count filters the outcomes on the wrong status: 'fulfilled' is an ack (kept), 'rejected' a nack (refused). A caller that retries the refused ones would resend the wrong number."
            : 'waitForConfirms() rejects at the FIRST nack, with "message nacked": it does not tell you which messages, or how many, the broker kept. To retry only the refused ones, or to report them, you need each message\'s own answer.',
      fix: countsKept
        ? "const refused = outcomes.filter((o) => o.status === 'rejected').length;"
        : 'Give each sendToQueue a callback, turn each into a promise, await Promise.allSettled(...) (it waits for every answer) and count the rejected ones.',
    });
  }
  t.observe(4, `saw publishAll() reject with "${message}" while the broker had refused ${refused} of ${second.length} messages`);
  t.observe(5, 'saw no connection left open after the refused batch');
}

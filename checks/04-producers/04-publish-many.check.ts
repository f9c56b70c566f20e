// Check 4.4: publishMany() gets 5,000 messages of 4 KB into a durable quorum queue exactly
// once each, in order, byte for byte (bodies that are not text) and persistent, and never
// lets more than a few MB wait in amqplib's write buffer: it pauses on 'drain' when publish()
// returns false, instead of ignoring it, yielding for a moment, or publishing the message
// again; no message is published between a false and the 'drain' that follows it. It rejects when the broker refuses messages
// (a nack) and when the broker refuses the queue's declaration (406), and closes its
// connection every time.
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/04-producers/04-publish-many.js';
import { confirmWindows, expectClosed, expectClosedAfter, expectRefusedQueueHandled, refuseNewMessages, publishBuffers, settle, type ConfirmReport } from './support.js';

type Ctx = CheckContext<typeof Exercise>;

const COUNT = 5_000; // 20 MB in all: far above LIMIT if the code ignores false, and quick on two cores
const SIZE = 4096;
/** A publisher that waits for 'drain' peaks at about 4 MB with these messages (1,024 frames of each kind). */
const LIMIT = 8 * 1024 * 1024;
/** How long the checker holds the connection's outgoing data when the buffer first fills. */
const STALL_MS = 100;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const n = (x: number) => x.toLocaleString('en-US');

/** Bytes that are no text in any encoding (not valid UTF-8): a string round trip changes them. */
const BINARY_TAIL = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28, 0x9f]);

/** Message i: its number, then spaces, then bytes that are not text, 4 KB in all. */
function bodyOf(i: number): Buffer {
  const body = Buffer.alloc(SIZE, ' ');
  body.write(`#${i};`);
  BINARY_TAIL.copy(body, SIZE - BINARY_TAIL.length);
  return body;
}

/** What the checker read of one message. */
interface Seen {
  index: number;
  exact: boolean;
  persistent: boolean;
}

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'bulk';
  const made: number[] = [];
  const makeBody = (i: number) => {
    made.push(i);
    return bodyOf(i);
  };

  t.provoke([1, 2, 3, 4], `called publishMany(url, "${queue}", ${n(COUNT)}, makeBody) with bodies of 4 KB that end in bytes that are not text: ${mb(COUNT * SIZE)}, far more than amqplib's write buffer holds`);
  t.provoke(3, `held the connection's outgoing data for ${STALL_MS} ms the first time amqplib's buffer filled, as a slow network or a broker that blocks publishers does: no 'drain' meanwhile`);
  publishBuffers.reset();
  confirmWindows.reset();
  publishBuffers.stallWhenFull(STALL_MS);
  const started = Date.now();
  await t
    .call(`publishMany(url, "${queue}", ${n(COUNT)}, makeBody) with 4 KB bodies`, () => t.target.publishMany(t.url, queue, COUNT, makeBody), { timeoutMs: 12_000 })
    .finally(() => publishBuffers.stallWhenFull(0));
  const ms = Date.now() - started;
  const peak = publishBuffers.maxBytes;
  const window = confirmWindows.report();
  t.log(`publishMany() resolved after ${ms} ms; at most ${mb(peak)} waited in amqplib's write buffer`);
  await expectClosed(t, 'publishMany()');

  const q = await expectQuorumQueue(t, queue);
  if (!q.durable) {
    t.fail({ summary: `The queue "${queue}" is not durable.`, expected: 'durable: true', saw: 'durable: false', fix: `channel.assertQueue('${queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`, link: t.ui('queues', queue) });
  }
  t.observe(1, `read "${queue}" from the management API: a durable quorum queue`);

  // Back-pressure first: what amqplib's write buffer held is known already, and reading 20 MB
  // back for a publisher that did not wait for 'drain' would only delay its verdict.
  if (!publishBuffers.available) {
    t.note("The checker could not look into amqplib's write buffer (its internals changed): the back-pressure part was not checked.");
  } else {
    if (peak > LIMIT) {
      t.fail({
        summary: `publishMany() kept publishing while amqplib's buffer was full: up to ${mb(peak)} waited in memory (a publisher that waits for 'drain' stays near 4 MB).`,
        expected: `at most ${mb(LIMIT)} waiting in the write buffer`,
        saw: `${mb(peak)} at the peak (${n(COUNT)} messages of 4 KB is ${mb(COUNT * SIZE)})`,
        why: "publish() returns false when the channel's buffer is full. Ignoring it, or pausing on your own (setImmediate, a timer) instead of waiting for 'drain', a producer outruns the network and the broker, and the backlog grows in your process's memory until it crashes. The broker may also be slowing you down on purpose (a memory or disk alarm).",
        fix: "const hasRoom = channel.sendToQueue(...); if (!hasRoom) await once(channel, 'drain');",
      });
    }
    if (window.seen && window.sentWhileFull > 0) {
      const first = window.firstWhileFull ?? 0;
      t.fail({
        summary: `publishMany() published ${n(window.sentWhileFull)} messages while amqplib's buffer was full, the first of them #${n(first)}: it went on after publish() returned false, before the channel emitted 'drain'.`,
        expected: "after sendToQueue() returns false, nothing more is published until the channel emits 'drain'",
        saw: `${n(window.sentWhileFull)} of ${n(window.sent)} messages published while the buffer was full; at most ${mb(peak)} waited in it`,
        why: "false means: the buffer is full, stop until there is room. A pause of your own (setImmediate, a timer, a window of unconfirmed messages) lets the loop go on whether or not anything left: when the network is slow, or the broker blocks publishers (a memory or disk alarm), the buffer keeps growing. Only 'drain' says there is room again.",
        fix: "const hasRoom = channel.sendToQueue(...); if (!hasRoom) await once(channel, 'drain');",
      });
    }
    t.observe(3, `read amqplib's write buffer while publishMany() ran: at most ${mb(peak)} waited at once, and nothing was published between a false and the next 'drain'`);
  }

  const inQueue = await t.messageCount(queue);
  const seen = await readAll(t, queue, inQueue);
  expectEachOnce(t, queue, seen, window);
  expectInOrder(t, seen);
  t.observe(2, `read all ${n(seen.length)} messages of "${queue}": each index once, in order, byte for byte, persistent`);
  expectConfirmed(t, window);
  t.observe(4, `all ${n(COUNT)} messages were in "${queue}" when publishMany() resolved, and none was still waiting for its confirm`);
  if (made.length !== COUNT) t.note(`makeBody was called ${n(made.length)} times for ${n(COUNT)} messages.`);

  await checkRefused(t, queue, makeBody);
  await expectRefusedQueueHandled(t, { line: 5, name: 'publishMany()', queue: 'exports', call: () => t.target.publishMany(t.url, 'exports', 3, makeBody) });
});

/** Reads every message of the queue (removing them): its index (#i;), whether it is exactly bodyOf(i), and persistent. */
async function readAll(t: Ctx, queue: string, expected: number): Promise<Seen[]> {
  const seen: Seen[] = [];
  if (expected === 0) return seen;
  const ch = await t.channel();
  try {
    await new Promise<void>((resolve) => {
      let timer = setTimeout(resolve, 3000);
      ch.consume(
        queue,
        (m) => {
          if (!m) return;
          const index = Number(/^#(\d+);/.exec(m.content.toString('latin1', 0, 16))?.[1] ?? -1);
          seen.push({ index, exact: index >= 0 && m.content.equals(bodyOf(index)), persistent: m.properties.deliveryMode === 2 });
          clearTimeout(timer);
          if (seen.length >= expected) resolve();
          else timer = setTimeout(resolve, 3000); // nothing more for 3 s: the queue said more than it had
        },
        { noAck: true },
      ).catch(() => resolve()); // the queue refused a consumer: judge what was read
    });
  } finally {
    await ch.close().catch(() => undefined);
  }
  return seen;
}

/** Line 2 (and 3 and 4 for why): every index exactly once. */
function expectEachOnce(t: Ctx, queue: string, seen: Seen[], window: ConfirmReport): void {
  const counts = new Map<number, number>();
  for (const s of seen) counts.set(s.index, (counts.get(s.index) ?? 0) + 1);
  const twice = [...counts].filter(([, c]) => c > 1).map(([i]) => i);
  if (twice.length > 0) {
    t.fail({
      summary: `${n(twice.length)} messages arrived more than once: the queue holds ${n(seen.length)} messages for ${n(COUNT)} published.`,
      expected: `${n(COUNT)} messages, each once`,
      saw: `duplicates of #${twice.slice(0, 5).join(', #')}${twice.length > 5 ? ', …' : ''}`,
      why: "false does not mean \"not sent\": the message is already in amqplib's buffer and will go out. It means \"the buffer is full, stop for a moment\". Publishing it again sends it twice, and every consumer processes it twice.",
      fix: "When sendToQueue returns false, await once(channel, 'drain') and go on with the NEXT message.",
      link: t.ui('queues', queue),
    });
  }
  const extra = seen.filter((s) => s.index < 0 || s.index >= COUNT);
  if (extra.length > 0) {
    t.fail({
      summary: `publishMany() was asked for ${n(COUNT)} messages, makeBody(0) to makeBody(${COUNT - 1}), but it also published ${extra.map((s) => (s.index < 0 ? 'a message makeBody never made' : `makeBody(${s.index})`)).slice(0, 3).join(', ')}.`,
      expected: `#0 to #${COUNT - 1}, ${n(COUNT)} messages`,
      saw: `${n(seen.length)} messages, the last one #${seen.at(-1)!.index}`,
      why: 'count messages are the indexes 0 to count - 1: a loop that runs while i <= count publishes one message too many, which nobody asked for.',
      fix: 'for (let i = 0; i < count; i++) { … makeBody(i) … }',
      link: t.ui('queues', queue),
    });
  }
  const missing = COUNT - [...counts.keys()].filter((i) => i >= 0 && i < COUNT).length;
  if (missing > 0) {
    if (window.seen && window.unconfirmed > 0) {
      t.fail({
        summary: `publishMany() resolved while ${n(window.unconfirmed)} of its messages were still waiting for their confirm, and ${n(missing)} of the ${n(COUNT)} never reached the queue.`,
        expected: `all ${n(COUNT)} messages confirmed before publishMany() resolves`,
        saw: `${n(seen.length)} messages in "${queue}"`,
        why: "Messages still in the client (its buffer, or on the wire) when the connection closes are lost. 'drain' only says the buffer has room again; only the confirms say the broker has them all.",
        fix: 'await channel.waitForConfirms() after the loop, before closing.',
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: `publishMany() resolved, but ${n(missing)} of the ${n(COUNT)} messages are missing from the queue.`,
      expected: `${n(COUNT)} messages`,
      saw: `${n(seen.length)} messages`,
      why: 'Messages still in the client (its buffer, or on the wire) when the connection closes are lost. Only the confirms say the broker has them all.',
      fix: 'Publish makeBody(i) for every i from 0 to count - 1, then await channel.waitForConfirms() before closing.',
      link: t.ui('queues', queue),
    });
  }
}

/** Line 2: in order, byte for byte, persistent. */
function expectInOrder(t: Ctx, seen: Seen[]): void {
  const outOfPlace = seen.findIndex((s, i) => s.index !== i);
  if (outOfPlace >= 0) {
    t.fail({
      summary: `The messages are not in the order makeBody made them: message #${seen[outOfPlace]!.index} is at place ${outOfPlace} of the queue.`,
      expected: `#0, #1, #2, … #${COUNT - 1}`,
      saw: seen.slice(Math.max(0, outOfPlace - 2), outOfPlace + 3).map((s) => `#${s.index}`).join(', ') + ' …',
      why: 'A queue keeps the order in which one channel published. Publishing from several promises at once (or per batch in parallel) shuffles them, and a consumer that relies on the order (an update after its create) goes wrong.',
      fix: 'One loop, one message after the other: for (let i = 0; i < count; i++) { … }',
    });
  }
  const altered = seen.find((s) => !s.exact);
  if (altered) {
    t.fail({
      summary: `Message #${altered.index} is not the Buffer makeBody(${altered.index}) returned.`,
      expected: `the 4 KB Buffer makeBody(${altered.index}) returned, byte for byte`,
      saw: 'other bytes',
      why: 'The body is bytes: publish the Buffer you were given, without turning it into a string and back.',
      fix: 'channel.sendToQueue(queue, makeBody(i), { persistent: true })',
    });
  }
  const transient = seen.filter((s) => !s.persistent);
  if (transient.length > 0) {
    t.fail({
      summary: `${n(transient.length)} of the ${n(seen.length)} messages were not published as persistent.`,
      expected: 'deliveryMode 2 on every message (persistent: true)',
      saw: `not persistent: #${transient.slice(0, 5).map((s) => s.index).join(', #')}${transient.length > 5 ? ', …' : ''}`,
      why: 'A transient message in a classic queue is lost when the broker restarts. Say what you mean on every message.',
      fix: 'channel.sendToQueue(queue, makeBody(i), { persistent: true })',
    });
  }
}

/** Line 4: on a confirm channel, and nothing unconfirmed when the function resolved. */
function expectConfirmed(t: Ctx, window: ConfirmReport): void {
  if (!window.seen) {
    t.note("The checker could not see amqplib's confirm bookkeeping (another client library, or its internals changed): the confirms were not checked.");
    return;
  }
  if (window.confirmChannels === 0) {
    t.fail({
      summary: 'publishMany() published on a plain channel, not on a confirm channel.',
      expected: 'connection.createConfirmChannel()',
      saw: `${window.channels} channel(s) opened with createChannel()`,
      why: 'On a plain channel the broker never says whether it took a message: a refused or lost message looks exactly like a stored one.',
      fix: 'const channel = await connection.createConfirmChannel(); … await channel.waitForConfirms();',
    });
  }
  if (window.unconfirmed > 0) {
    t.fail({
      summary: `publishMany() resolved while ${n(window.unconfirmed)} of its messages were still waiting for their confirm.`,
      expected: 'every message confirmed before publishMany() resolves',
      saw: `${n(window.unconfirmed)} message(s) never confirmed: the connection closed before the broker answered`,
      why: "'drain' only says amqplib's buffer has room again. Until the broker confirms a message it may still refuse it, or lose it with the connection.",
      fix: 'await channel.waitForConfirms() after the loop, before closing.',
    });
  }
}

/** Lines 4 and 5: the queue takes one message and refuses the rest; publishMany() rejects, and closes. */
async function checkRefused(t: Ctx, queue: string, makeBody: (i: number) => Buffer): Promise<void> {
  // Over its limit, a quorum queue refuses every new message.
  if (!(await refuseNewMessages(t, queue, 'over'))) throw new Error(`the broker kept accepting messages on "${queue}" despite the max-length policy; the check cannot judge`);
  const before = await t.messageCount(queue);
  const count = 20;
  t.provoke([4, 5], `filled "${queue}" past a policy of max-length 0 with overflow reject-publish: the broker will refuse (nack) the next messages`);
  const outcome = await settle(t, `publishMany(url, "${queue}", ${count}, makeBody) while the queue is full`, () => t.target.publishMany(t.url, queue, count, makeBody), 5000);
  const kept = (await t.messageCount(queue)) - before;
  if (kept >= count) throw new Error(`the broker accepted all ${count} messages despite the max-length policy; the check cannot judge`);
  if (!outcome.rejected) {
    t.fail({
      summary: `The broker refused ${count - kept} of ${count} messages (it sent nacks), but publishMany() resolved.`,
      expected: 'publishMany() rejects',
      saw: 'publishMany() resolved',
      why: 'A nacked message is in no queue. A caller told that all went well never sends those messages again: they are lost without a trace.',
      fix: 'await channel.waitForConfirms() after the loop (it rejects on a nack), and let the rejection reach the caller.',
      link: t.ui('queues', queue),
    });
  }
  await expectClosedAfter(t, 'publishMany()', 'when the broker refused messages');
  t.observe([4, 5], `saw publishMany() reject while the broker had refused ${count - kept} of ${count} messages, and leave no connection open`);
}

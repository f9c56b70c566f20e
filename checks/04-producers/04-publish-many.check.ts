// Check 4.4: publishMany() gets 20,000 messages of 4 KB into the queue exactly once each,
// and never lets more than a few MB wait in amqplib's write buffer: it pauses on 'drain'
// when publish() returns false, instead of ignoring it or publishing the message again.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/04-publish-many.js';
import { publishBuffers } from './support.js';

const COUNT = 5_000; // 20 MB in all: far above LIMIT if the code ignores false, and quick on two cores
const SIZE = 4096;
/** A publisher that waits for 'drain' peaks at about 4 MB with these messages (1,024 frames of each kind). */
const LIMIT = 8 * 1024 * 1024;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'bulk';
  const made: number[] = [];
  const makeBody = (i: number) => {
    made.push(i);
    const body = Buffer.alloc(SIZE, ' ');
    body.write(`#${i};`);
    return body;
  };

  publishBuffers.reset();
  const started = Date.now();
  await t.call(`publishMany(url, "${queue}", ${COUNT.toLocaleString('en-US')}, makeBody) with 4 KB bodies`, () => t.target.publishMany(t.url, queue, COUNT, makeBody), { timeoutMs: 8000 });
  const ms = Date.now() - started;
  const peak = publishBuffers.maxBytes;
  t.log(`publishMany() resolved after ${ms} ms; at most ${mb(peak)} waited in amqplib's write buffer`);
  await t.expectConnectionsClosed('publishMany()');

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

  const inQueue = await t.messageCount(queue);
  if (inQueue !== COUNT) {
    const seen = await readIndexes(inQueue);
    const counts = new Map<number, number>();
    for (const i of seen) counts.set(i, (counts.get(i) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1).map(([i]) => i);
    const missing = COUNT - counts.size;
    if (twice.length > 0) {
      t.fail({
        summary: `${twice.length.toLocaleString('en-US')} messages arrived more than once: the queue holds ${inQueue.toLocaleString('en-US')} messages for ${COUNT.toLocaleString('en-US')} published.`,
        expected: `${COUNT.toLocaleString('en-US')} messages, each once`,
        saw: `duplicates of #${twice.slice(0, 5).join(', #')}${twice.length > 5 ? ', …' : ''}`,
        why: "false does not mean \"not sent\": the message is already in amqplib's buffer and will go out. It means \"the buffer is full, stop for a moment\". Publishing it again sends it twice, and every consumer processes it twice.",
        fix: "When sendToQueue returns false, await once(channel, 'drain') and go on with the NEXT message.",
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: `publishMany() resolved, but ${missing.toLocaleString('en-US')} of the ${COUNT.toLocaleString('en-US')} messages are missing from the queue.`,
      expected: `${COUNT.toLocaleString('en-US')} messages`,
      saw: `${inQueue.toLocaleString('en-US')} messages`,
      why: 'Messages still in the client (its buffer, or on the wire) when the connection closes are lost. Only the confirms say the broker has them all.',
      fix: 'await channel.waitForConfirms() after the loop, before closing.',
      link: t.ui('queues', queue),
    });
  }
  if (made.length !== COUNT) {
    t.note(`makeBody was called ${made.length} times for ${COUNT} messages.`);
  }

  if (!publishBuffers.available) {
    t.note("The checker could not look into amqplib's write buffer (its internals changed): the back-pressure part was not checked.");
    return;
  }
  if (peak > LIMIT) {
    t.fail({
      summary: `publishMany() kept publishing while amqplib's buffer was full: up to ${mb(peak)} waited in memory (a publisher that waits for 'drain' stays near 4 MB).`,
      expected: `at most ${mb(LIMIT)} waiting in the write buffer`,
      saw: `${mb(peak)} at the peak (${COUNT.toLocaleString('en-US')} messages of 4 KB is ${mb(COUNT * SIZE)})`,
      why: "publish() returns false when the channel's buffer is full. Ignoring it, a producer outruns the network and the broker, and the backlog grows in your process's memory until it crashes. The broker may also be slowing you down on purpose (a memory or disk alarm).",
      fix: "const hasRoom = channel.sendToQueue(...); if (!hasRoom) await once(channel, 'drain');",
    });
  }

  /** Reads the index (#i;) of every message in the queue, removing them. */
  async function readIndexes(expected: number): Promise<number[]> {
    const ch = await t.channel();
    const seen: number[] = [];
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 3000);
        void ch.consume(
          queue,
          (m) => {
            if (!m) return;
            seen.push(Number(/^#(\d+);/.exec(m.content.toString('latin1', 0, 16))?.[1] ?? -1));
            if (seen.length >= expected) {
              clearTimeout(timer);
              resolve();
            }
          },
          { noAck: true },
        );
      });
    } finally {
      await ch.close().catch(() => undefined);
    }
    return seen;
  }
});

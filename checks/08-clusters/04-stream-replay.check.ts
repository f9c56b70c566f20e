// Check 8.4: a stream replayed from an offset and from a point in time, and a reader that resumes
// where it stopped. replay() is called before the stream exists, and the checker publishes 20
// events once the learner's code has declared it; a second later, 20 more. It then asks for the
// events from a point in time between the two batches, and for 30 events from offset 5 (more
// than the prefetch limit: only acks let them all come). The reader is started four times on one
// offset file: the first run is stopped while handle() is stuck on offset 12; the second must
// start at 12 (not 13: that event never finished; not 11 or 0: those are done), takes events as
// they are published, and has its connection cut; the third starts after the last one done and
// stops when handle() rejects offset 43; the fourth starts at 43 again and is stopped while
// handle() works on 46, after which nothing more may be handled. The broker says which offset
// each reader asked for: its consumer's x-stream-offset, in the management API.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/08-clusters/04-stream-replay.js';
import { connectionMark, connectionsSince, sentBy, type AmqpConnection } from '../../runner/check/frames.js';
import { explainError } from '../../runner/check/explain-error.js';
import { cutConnectionsAndSurvive, deleteQueueUnderConsumer, describeValue, expectMethods, settleWithin } from '../06-patterns/support.js';
import { consumerArgument, describeOffsetSpec, localPorts } from './support.js';

type T = CheckContext<typeof Exercise>;
type StreamEvent = Exercise.StreamEvent;

const STREAM = 'events';
const BATCH = 20;
const body = (offset: number) => `event-${String(offset).padStart(2, '0')}`;
const bodies = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => body(from + i));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

/** The offset of the event the first reader is stopped on. */
const HANG_AT = 12;

export default defineCheck<typeof Exercise>(async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'workbook-8.4-'));
  try {
    await checkReplay(t);
    await checkReader(t, path.join(dir, 'events.offset'));
    await checkEnd(t, dir);
  } finally {
    // A reader of a failed check may still be writing its file: never let that break the verdict.
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // left in the temp folder
    }
  }
});

// ---- replay() ---------------------------------------------------------------------------

async function checkReplay(t: T): Promise<void> {
  // 1. replay() before the stream exists: it declares it, and the events come once published.
  const mark = connectionMark();
  const first = callReplay(t, 0, BATCH);
  t.provoke(1, `called replay(url, "${STREAM}", 0, ${BATCH}) in a vhost where "${STREAM}" does not exist yet`);
  // The management API may answer 500 for a stream that is still starting: ask again.
  const declared = await t.waitFor(() => t.mgmt.queue(t.vhost, STREAM).catch(() => undefined), 4000, 50);
  if (!declared) {
    const outcome = await settleWithin(first, 100);
    if (outcome.status === 'rejected') brokerRefused(t, `replay(url, "${STREAM}", 0, ${BATCH})`, outcome.error);
    t.fail({
      summary: `replay() did not declare "${STREAM}": after 4 s the vhost still had no queue or stream of that name.`,
      expected: `channel.assertQueue("${STREAM}", { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } }) before consume()`,
      saw: 'no queue at all',
      why: 'Whichever reader starts first creates the stream; a reader that only consumes fails with NOT_FOUND when it starts before any publisher.',
      fix: `In replay() and in startReader(): await channel.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } }).`,
      link: t.ui('queues'),
    });
  }
  await t.publish(STREAM, bodies(0, BATCH - 1));
  t.provoke(3, `published ${BATCH} events (${body(0)} … ${body(BATCH - 1)}) once "${STREAM}" was declared`);
  const got = await settle(t, first, `replay(url, "${STREAM}", 0, ${BATCH})`, mark, 0);
  await expectStreamDeclared(t);
  expectEvents(t, `replay(url, "${STREAM}", 0, ${BATCH})`, got, range(0, BATCH - 1), 'offset 0, the first event of the stream');
  t.observe(3, `replay(…, 0, ${BATCH}) resolved with offsets 0 to ${BATCH - 1}, in order, each with its body`);
  await t.expectConnectionsClosed('replay()');
  t.observe(3, 'replay() closed its connection before it resolved');

  // 3. From a point in time between two batches.
  const boundary = Math.floor(Date.now() / 1000) + 1; // whole seconds, as AMQP timestamps are
  while (Date.now() < boundary * 1000 + 150) await sleep(25);
  await t.publish(STREAM, bodies(BATCH, 2 * BATCH - 1));
  const at = new Date(boundary * 1000);
  t.provoke(3, `published ${BATCH} more events (offsets ${BATCH} to ${2 * BATCH - 1}) after ${at.toISOString()}; the first ${BATCH} were published before it`);
  const markTime = connectionMark();
  const byTime = await settle(t, callReplay(t, at, BATCH), `replay(url, "${STREAM}", new Date("${at.toISOString()}"), ${BATCH})`, markTime, BATCH, at);
  expectEvents(t, `replay(url, "${STREAM}", new Date("${at.toISOString()}"), ${BATCH})`, byTime, range(BATCH, 2 * BATCH - 1), `the first event published after ${at.toISOString()} (offset ${BATCH})`, at);
  t.observe(3, `replay(…, new Date("${at.toISOString()}"), ${BATCH}) resolved with exactly the second batch: offsets ${BATCH} to ${2 * BATCH - 1}`);

  // 2 and 3. From an offset, more events than the prefetch limit lets through unacknowledged.
  const markLong = connectionMark();
  t.provoke([2, 3], `called replay(url, "${STREAM}", 5, 30): 30 events, three times the prefetch limit of 10`);
  const long = await settle(t, callReplay(t, 5, 30), `replay(url, "${STREAM}", 5, 30)`, markLong, 5);
  expectEvents(t, `replay(url, "${STREAM}", 5, 30)`, long, range(5, 34), 'offset 5');
  t.observe(3, 'replay(…, 5, 30) resolved with offsets 5 to 34, across both batches');
  const replays = connectionsSince(mark);
  const qos = sentBy(replays, 'basic.qos').map((m) => m.prefetchCount ?? 0);
  const acks = sentBy(replays, 'basic.ack').length;
  if (qos.some((n) => n === 0 || n > 10)) {
    t.fail({
      summary: `replay() set a prefetch of ${qos.join(', ')}: more than the 10 unacknowledged events the contract allows.`,
      expected: 'channel.prefetch(10) (or less) before consume()',
      saw: `basic.qos with prefetch ${qos.join(', ')}`,
      why: 'A stream sends a consumer as many events as its prefetch allows, at once, whatever the size of the stream. The limit is what keeps a replay of a million events from landing in your process all together.',
      fix: 'await channel.prefetch(10) before channel.consume(...).',
    });
  }
  t.observe(2, `read the frames of the three replays: prefetch ${qos.join(', ')}, and ${acks} acks: each one let one more event come`);
}

/** Calls replay(); settle() judges how it ends (its rejection is the learner's error, as thrown). */
function callReplay(t: T, from: number | Date, count: number): Promise<StreamEvent[]> {
  t.log(`called replay(url, "${STREAM}", ${from instanceof Date ? `new Date("${from.toISOString()}")` : from}, ${count})`);
  const p = Promise.resolve().then(() => t.target.replay(t.url, STREAM, from, count));
  p.catch(() => undefined); // judged by settle()
  return p;
}

/**
 * Waits up to 5 s for a replay, and explains what went wrong when it does not resolve: it asked
 * for another offset (the broker says which), or it stopped after the prefetch limit (no acks).
 */
async function settle(t: T, promise: Promise<StreamEvent[]>, label: string, mark: number, from: number, at?: Date): Promise<StreamEvent[]> {
  const outcome = await settleWithin(promise, 5000);
  if (outcome.status === 'resolved') return outcome.value;
  if (outcome.status === 'rejected') brokerRefused(t, label, outcome.error);
  const mine = connectionsSince(mark).filter((c) => !c.closed);
  const asked = await consumerArgument(t, STREAM, localPorts(mine));
  const acks = sentBy(mine, 'basic.ack').length;
  const delivered = sentBy(mine, 'basic.consume').length > 0;
  const seconds = at && Math.floor(at.getTime() / 1000);
  if (asked.found && at && asked.value === at.getTime()) {
    t.fail({
      summary: `${label} did not resolve within 5 s: your consumer asked for x-stream-offset ${asked.value}, a plain number, which the broker reads as an offset, not as a point in time.`,
      expected: `x-stream-offset { '!': 'timestamp', value: ${seconds} } (an AMQP timestamp, whole seconds)`,
      saw: `x-stream-offset ${asked.value}: the stream has ${2 * BATCH} events, so the consumer waits for offset ${asked.value}, which may never come`,
      why: 'x-stream-offset takes a number as an offset. A point in time must travel as an AMQP timestamp (a field of type timestamp), which amqplib writes when you pass { "!": "timestamp", value: seconds }; it counts whole seconds, not milliseconds.',
      fix: "const offset = from instanceof Date ? { '!': 'timestamp', value: Math.floor(from.getTime() / 1000) } : from;",
    });
  }
  if (asked.found && asked.value !== (at ? seconds : from)) {
    t.fail({
      summary: `${label} did not resolve within 5 s: your consumer asked for x-stream-offset ${describeOffsetSpec(asked.value)}, not ${at ? `the timestamp ${seconds}` : from}.`,
      expected: `x-stream-offset ${at ? `{ '!': 'timestamp', value: ${seconds} }` : from}`,
      saw: `x-stream-offset ${describeOffsetSpec(asked.value)}`,
      why: 'A consumer of a stream starts where its x-stream-offset says; without one it starts at "next", the end of the stream, and sees only what is published after it.',
      fix: "channel.consume(stream, onEvent, { noAck: false, arguments: { 'x-stream-offset': from } })",
    });
  }
  if (delivered && acks === 0) {
    t.fail({
      summary: `${label} did not resolve within 5 s, and your code acknowledged none of the events it got: the stream stopped sending at the prefetch limit.`,
      expected: 'an ack for each event, so that the next ones come',
      saw: 'no basic.ack at all',
      why: 'A stream never deletes an event because it was acked; but with manual acks the prefetch limit counts the events not acked yet, and the broker sends nothing more until some are. Acks are the credit of a stream consumer.',
      fix: 'channel.ack(msg) for every event, including those after the first `count`.',
    });
  }
  t.fail({
    summary: `${label} did not resolve within 5 s.`,
    expected: 'it resolves as soon as the events asked for have come',
    saw: asked.found ? `your consumer asked for x-stream-offset ${describeOffsetSpec(asked.value)}; ${acks} ack(s) sent` : `${acks} ack(s) sent`,
    why: 'Every event asked for is in the stream already: a replay that waits is waiting for something else (a count never reached, a promise nobody resolves).',
    fix: 'Resolve once `count` events have come; then cancel the consumer and close the connection.',
  });
}

/** A replay or a reader that threw: the broker's refusals that beginners meet on streams, explained. */
function brokerRefused(t: T, label: string, err: Error): never {
  const message = err.message;
  if (/prefetch count is not set/.test(message)) {
    t.fail({
      summary: `The broker refused your consumer: ${label} consumed the stream without a prefetch limit.`,
      expected: 'await channel.prefetch(10) before channel.consume(...)',
      saw: message,
      why: 'A stream only takes consumers with a prefetch limit (and manual acks): it sends a consumer that many events, and one more for each ack. Without a limit it would push the whole stream at once.',
      fix: 'await channel.prefetch(10) before channel.consume(...), in both functions.',
    });
  }
  const queueType = /invalid arg 'x-stream-offset'.*of queue type rabbit_(\w+?)_queue/.exec(message)?.[1];
  if (queueType) {
    t.fail({
      summary: `"${STREAM}" is a ${queueType} queue, not a stream: the broker refused the consumer argument x-stream-offset of ${label}.`,
      expected: "a stream: arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' }",
      saw: message,
      why: 'Only a stream keeps its events after they are read and knows offsets: a queue deletes each message once it is acked, so nothing could be read twice. The broker refuses x-stream-offset on any other queue type.',
      fix: "channel.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } }) (delete the old queue first if you ran your file on its own: npm run reset 8.4)",
      link: t.ui('queues', STREAM),
    });
  }
  if (/invalid arg 'x-stream-offset'/.test(message)) {
    t.fail({
      summary: `The broker refused the x-stream-offset of ${label}: ${message}`,
      expected: "a number (an offset), 'first', 'last', 'next', or an AMQP timestamp: { '!': 'timestamp', value: seconds }",
      saw: message,
      why: 'The broker reads x-stream-offset by its type: a number is an offset, a string one of a few words (or an interval like "1h"), a timestamp a point in time. A number written as a string ("7") or a Date object is none of them.',
      fix: "arguments: { 'x-stream-offset': typeof from === 'number' ? from : { '!': 'timestamp', value: Math.floor(from.getTime() / 1000) } }",
    });
  }
  if (/ack.*stream|noAck|basic\.consume.*no_ack|manual/i.test(message)) {
    t.fail({ ...explainError(label, err), why: 'A stream only takes consumers with manual acks (noAck: false) and a prefetch limit.', fix: 'channel.consume(stream, onEvent, { noAck: false, arguments: { ... } })' });
  }
  t.fail(explainError(label, err));
}

/** "events" must be a durable stream that keeps a week of events. */
async function expectStreamDeclared(t: T): Promise<void> {
  await t.waitFor(() => t.mgmt.queue(t.vhost, STREAM).catch(() => undefined), 3000, 100);
  const q = await t.queue(STREAM);
  if (q.type !== 'stream') {
    t.fail({
      summary: `"${STREAM}" is a ${q.type ?? 'classic'} queue, not a stream: a queue deletes each event once it is acked, so nothing could be read twice.`,
      expected: "type stream (arguments: { 'x-queue-type': 'stream' })",
      saw: `type ${q.type ?? 'classic'}, arguments ${JSON.stringify(q.arguments)}`,
      why: 'A stream is an append-only log: reading does not remove anything, every reader has its own position (its offset), and any reader can go back to any offset or point in time still kept. That is what replay needs; x-stream-offset means nothing to a queue.',
      fix: "channel.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } })",
      link: t.ui('queues', STREAM),
    });
  }
  if (q.arguments['x-max-age'] !== '7D') {
    t.fail({
      summary: `The stream "${STREAM}" has ${q.arguments['x-max-age'] === undefined ? 'no x-max-age: no retention limit, so it keeps every event for ever' : `x-max-age ${JSON.stringify(q.arguments['x-max-age'])}, not '7D'`}.`,
      expected: "x-max-age '7D': events older than a week are dropped",
      saw: `arguments ${JSON.stringify(q.arguments)}`,
      why: 'A stream deletes nothing when it is read. Its retention (x-max-age, or x-max-length-bytes) is the only thing that ever removes events, a whole segment at a time; without one it grows until the disk alarm blocks every publisher of the broker.',
      fix: "arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' }",
      link: t.ui('queues', STREAM),
    });
  }
  t.observe(1, `read "${STREAM}" from the broker: type stream, durable, x-max-age 7D`);
}

/** Fails unless `got` holds exactly the events at `offsets`, in order, each with its body. */
function expectEvents(t: T, label: string, got: unknown, offsets: number[], start: string, at?: Date): void {
  const list = Array.isArray(got) ? (got as unknown[]) : undefined;
  if (!list) {
    t.fail({
      summary: `${label} resolved with ${describeValue(got)}, not an array of events.`,
      expected: `[{ offset: ${offsets[0]}, body: "${body(offsets[0]!)}" }, …]`,
      saw: describeValue(got),
      fix: 'Collect each event as { offset, body } in an array, and resolve with it.',
    });
  }
  const shown = (e: unknown) => {
    const ev = e as Partial<StreamEvent> | undefined;
    return typeof ev === 'object' && ev !== null ? `${String(ev.offset)}:${typeof ev.body === 'string' ? ev.body : describeValue(ev.body)}` : describeValue(e);
  };
  const wanted = offsets.map((o) => `${o}:${body(o)}`);
  const seen = list.map(shown);
  if (seen.join() === wanted.join()) return;
  const bodiesSeen = list.map((e) => (e as Partial<StreamEvent>)?.body);
  const offsetsSeen = list.map((e) => (e as Partial<StreamEvent>)?.offset);
  const rightBodies = bodiesSeen.join() === offsets.map(body).join();
  const firstBody = typeof bodiesSeen[0] === 'string' ? (bodiesSeen[0] as string) : undefined;
  const startedAt = firstBody ? Number(firstBody.slice('event-'.length)) : undefined;
  if (rightBodies) {
    const notNumbers = offsetsSeen.some((o) => typeof o !== 'number');
    t.fail({
      summary: `${label} returned the right events, but not their offsets: ${notNumbers ? `the offsets were ${describeValue(offsetsSeen.find((o) => typeof o !== 'number'))}, not numbers` : `offsets ${offsetsSeen.slice(0, 3).join(', ')}… for the events at ${offsets.slice(0, 3).join(', ')}…`}.`,
      expected: `offsets ${offsets[0]} to ${offsets.at(-1)}`,
      saw: `offsets ${offsetsSeen.slice(0, 5).map(String).join(', ')}${offsetsSeen.length > 5 ? ', …' : ''}`,
      why: 'Each event has its offset in the stream, which the broker puts in the header x-stream-offset of every delivery. The delivery tag counts the deliveries on your channel, from 1; it is not the offset, and a position you store must be the offset to mean anything to the next reader.',
      fix: "offset: Number(msg.properties.headers?.['x-stream-offset'])",
    });
  }
  if (startedAt !== undefined && startedAt !== offsets[0] && bodiesSeen.length > 0) {
    t.fail({
      summary: `${label} started at ${body(startedAt)} (offset ${startedAt}), not at ${start}.`,
      expected: `${offsets.length} events, ${body(offsets[0]!)} to ${body(offsets.at(-1)!)}`,
      saw: `${list.length} events, from ${firstBody}`,
      why: at
        ? 'From a point in time the stream starts at the first chunk of events written at or after it. A timestamp in whole seconds is what the broker compares; the wrong unit (milliseconds) or the wrong type lands somewhere else.'
        : 'The consumer argument x-stream-offset says where a stream consumer starts: a number is that exact offset.',
      fix: at ? "{ 'x-stream-offset': { '!': 'timestamp', value: Math.floor(from.getTime() / 1000) } }" : "{ 'x-stream-offset': from } in the consume options' arguments",
    });
  }
  t.fail({
    summary: `${label} did not return exactly the ${offsets.length} events from ${start}, in order.`,
    expected: `${wanted.slice(0, 3).join(', ')}, … ${wanted.at(-1)} (offset:body)`,
    saw: `${seen.slice(0, 4).join(', ')}${seen.length > 4 ? ', …' : ''} (${seen.length} events)`,
    why: 'A replay gives the events exactly as the stream holds them: every one from the starting point, once, in order, `count` of them.',
    fix: 'Push each event as it comes ({ offset, body: msg.content.toString() }), and resolve when there are `count`.',
  });
}

// ---- startReader() ------------------------------------------------------------------------

interface Handler {
  handle: (event: StreamEvent) => Promise<void>;
  /** Offsets handle() was called with, in order. */
  calls: number[];
  /** Offsets whose handle() resolved. */
  resolved: number[];
  maxAtOnce: number;
  /** Set when an event's offset did not match its body, or was not an event at all. */
  wrong?: string;
  /** Lets the handle() held at `holdAt` resolve. */
  release: () => void;
}

/**
 * A handle() that takes 3 ms an event and records everything. It never resolves for `hang`,
 * rejects for `reject`, and for `holdAt` waits until release() is called.
 */
function scriptedHandler(opts: { hang?: number; reject?: number; holdAt?: number } = {}): Handler {
  let active = 0;
  let release = () => undefined as void;
  const held = new Promise<void>((r) => (release = r));
  const h: Handler = {
    calls: [],
    resolved: [],
    maxAtOnce: 0,
    release: () => release(),
    handle: async (event: StreamEvent) => {
      const offset = typeof event === 'object' && event !== null ? event.offset : undefined;
      if (typeof offset !== 'number' || event.body !== body(offset)) {
        h.wrong ??= `handle(${typeof event === 'object' && event !== null ? `{ offset: ${describeValue(event.offset)}, body: ${describeValue(event.body)} }` : describeValue(event)})`;
      }
      h.calls.push(Number(offset));
      active++;
      h.maxAtOnce = Math.max(h.maxAtOnce, active);
      try {
        if (offset === opts.hang) await never;
        if (offset === opts.holdAt) await held;
        await sleep(3);
        if (offset === opts.reject) throw new Error(`handle() failed on purpose at offset ${offset}`);
        h.resolved.push(offset as number);
      } finally {
        active--;
      }
    },
  };
  return h;
}

/** Offsets 40 and 41 are published while the second reader runs, 42 to 44 before the third, 45 to 49 before the fourth. */
const LIVE = [40, 41];
const REJECT_AT = 43;
const HOLD_AT = 46;
const LAST = 49;

async function checkReader(t: T, offsetFile: string): Promise<void> {
  const total = 2 * BATCH; // offsets 0 to 39 are in the stream now
  const start = async (h: Handler, label: string) => {
    const mark = connectionMark();
    const reader = await t.call(`startReader(url, "${STREAM}", offsetFile, handle)${label}`, () => t.target.startReader(t.url, STREAM, offsetFile, h.handle));
    const conns = connectionsSince(mark);
    return { reader, conns, ports: localPorts(conns) };
  };

  // Run 1: no offset file yet, so from the first event; stopped while handle() works on HANG_AT.
  const run1 = scriptedHandler({ hang: HANG_AT });
  t.provoke(4, `started a reader with an offset file that does not exist yet (${total} events in the stream)`);
  const first = await start(run1, '');
  expectMethods(t, 'startReader()', first.reader, ['stop']);
  expectDeclares(t, first.conns);
  t.provoke(5, `handle() takes 3 ms an event, and never finishes for offset ${HANG_AT}`);
  await t.waitFor(() => run1.calls.includes(HANG_AT), 4000);
  await sleep(300); // time for an event after it to reach handle(), if the reader takes more than one at a time
  await expectHandled(t, run1, 0, HANG_AT, first.conns, 'the first event of the stream (offset 0): the offset file did not exist');
  t.observe(4, 'the first reader started at offset 0: no offset file yet');
  t.observe(5, `handle() was called for offsets 0 to ${HANG_AT}, one at a time, in order; nothing after ${HANG_AT} while it was still working on it`);
  t.provoke(6, `called stop() while handle() was still working on offset ${HANG_AT}`);
  await t.expectClosedOnReturn('stop()', first.conns, () => first.reader.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(6, 'stop() closed the connection before it resolved');

  // Run 2: must start at HANG_AT, which never finished; events published while it runs; a network failure.
  const run2 = scriptedHandler();
  t.provoke(4, `started the reader again with the same offset file: offsets 0 to ${HANG_AT - 1} were handled, ${HANG_AT} was not finished`);
  const second = await start(run2, ', again');
  await t.waitFor(() => run2.calls.includes(total - 1) || run2.calls.length >= total, 4000);
  await expectHandled(t, run2, HANG_AT, total - 1, second.conns, `offset ${HANG_AT}, whose handle() never finished`, run1);
  await expectAskedFor(t, second.ports, HANG_AT);
  t.observe([4, 5], `the second reader started at offset ${HANG_AT} (its consumer asked the broker for x-stream-offset ${HANG_AT}) and handled ${HANG_AT} to ${total - 1}, each once`);
  await t.publish(STREAM, LIVE.map(body));
  t.provoke(5, `published offsets ${LIVE.join(' and ')} while the reader runs`);
  await t.waitFor(() => run2.calls.includes(LIVE.at(-1)!), 3000);
  await expectHandled(t, run2, HANG_AT, LIVE.at(-1)!, second.conns, `offset ${HANG_AT}`, run1);
  t.observe(5, `the reader handled ${LIVE.join(' and ')} as they came`);
  await t.waitFor(() => run2.resolved.includes(LIVE.at(-1)!), 1000);
  await sleep(100); // the offset written and the ack sent: the cut hits a reader at rest
  await cutConnectionsAndSurvive(t, 6, 'a network failure under a running reader');

  // Run 3: events published while no reader runs; handle() rejects one of them.
  await t.publish(STREAM, bodies(LIVE.at(-1)! + 1, HOLD_AT - 2));
  const run3 = scriptedHandler({ reject: REJECT_AT });
  t.provoke(4, `published offsets ${LIVE.at(-1)! + 1} to ${HOLD_AT - 2} while no reader ran, then started the reader a third time`);
  t.provoke(5, `handle() rejects offset ${REJECT_AT}`);
  const third = await start(run3, ', a third time');
  await t.waitFor(() => run3.calls.includes(REJECT_AT), 3000);
  const closed = await t.waitFor(() => third.conns.every((c) => c.closed !== undefined), 2000);
  await sleep(200);
  const after = run3.calls.filter((o) => o > REJECT_AT);
  if (after.length > 0 || !closed) {
    t.fail({
      summary: `When handle() rejected offset ${REJECT_AT}, the reader ${after.length ? `went on with offset ${after.join(', ')}` : 'kept its connection open'}.`,
      expected: `the reader stops at ${REJECT_AT}: no handle() after it, and its connection closed`,
      saw: `handle() called after the failure for: ${after.join(', ') || 'none'}; connection ${closed ? 'closed' : 'still open after 2 s'}`,
      why: `A stream never redelivers: the next event comes whatever happened to this one. A reader that goes on after a failure moves its offset past the failed event, and nobody handles it again; one that keeps quiet with its connection open holds on to the stream for nothing. Stop, and the next reader starts at ${REJECT_AT} again.`,
      fix: 'In the catch of handle(): do not write the offset, do not ack; close the connection, and let the events already received go.',
    });
  }
  await expectHandled(t, run3, LIVE.at(-1)! + 1, REJECT_AT, third.conns, `offset ${LIVE.at(-1)! + 1}, the first one published while no reader ran`, run2);
  t.observe(5, `the third reader started at ${LIVE.at(-1)! + 1}; after handle() rejected offset ${REJECT_AT}, it handled nothing more and closed its connection`);

  // Run 4: must start at REJECT_AT again; stopped while handle() works on HOLD_AT, which then resolves.
  await t.publish(STREAM, bodies(HOLD_AT - 1, LAST));
  const run4 = scriptedHandler({ holdAt: HOLD_AT });
  t.provoke(4, `published offsets ${HOLD_AT - 1} to ${LAST}, then started the reader a fourth time`);
  const fourth = await start(run4, ', a fourth time');
  await t.waitFor(() => run4.calls.includes(HOLD_AT), 3000);
  await sleep(200);
  await expectHandled(t, run4, REJECT_AT, HOLD_AT, fourth.conns, `offset ${REJECT_AT}, whose handle() rejected`, run3);
  await expectAskedFor(t, fourth.ports, REJECT_AT);
  t.observe([4, 5], `the fourth reader started at ${REJECT_AT} (x-stream-offset ${REJECT_AT}), the event whose handle() had rejected`);
  t.provoke(6, `called stop() while handle() was working on offset ${HOLD_AT} (offsets up to ${LAST} had arrived), then let that handle() resolve`);
  await t.expectClosedOnReturn('stop()', fourth.conns, () => fourth.reader.stop());
  run4.release();
  await sleep(300);
  const afterStop = run4.calls.filter((o) => o > HOLD_AT);
  if (afterStop.length > 0) {
    t.fail({
      summary: `After stop() had resolved, the reader still called handle() for offset${afterStop.length === 1 ? '' : 's'} ${afterStop.join(', ')}.`,
      expected: `no handle() after stop(), beyond the one for ${HOLD_AT} already in progress`,
      saw: `handle() called for ${afterStop.join(', ')} once handle(${HOLD_AT}) resolved`,
      why: 'Once stop() has resolved, the caller counts on the reader doing nothing more: it exits, or starts another reader, which would handle the same events at the same time. The events already received but not started belong to the next reader.',
      fix: 'In stop(), set a flag that the next handle() in the chain checks before it starts: if (stopped) return;',
    });
  }
  await t.expectConnectionsClosed('stop()');
  t.observe(6, `stop() closed the connection, and nothing after offset ${HOLD_AT} reached handle()`);
}

/**
 * The last part: an offset file that cannot be read; a replay whose events come one by one; a
 * replay and a reader whose stream is deleted under them; and a network failure under both.
 */
async function checkEnd(t: T, dir: string): Promise<void> {
  // An offset file that exists but cannot be read (a folder): no silent restart from the first event.
  t.provoke(4, 'called startReader() with an offset file that cannot be read (it is a folder: EISDIR)');
  const unreadable = await settleWithin(
    Promise.resolve().then(() => t.target.startReader(t.url, STREAM, dir, async () => undefined)),
    5000,
  );
  if (unreadable.status !== 'rejected') {
    t.fail({
      summary: `startReader() ${unreadable.status === 'resolved' ? 'started' : 'did not settle within 5 s'}, though its offset file could not be read (EISDIR): it treated the error as "no offset yet".`,
      expected: 'startReader() rejects with the error of readFile()',
      saw: unreadable.status === 'resolved' ? 'it resolved, and started reading' : 'still pending after 5 s',
      why: 'Only a missing file (ENOENT) means "no reader ran yet". A file that exists but cannot be read (permissions, a folder, a broken disk) hides a position that may be far along the stream: starting from the first event again would handle a week of events a second time.',
      fix: "catch (err) { if (err.code === 'ENOENT') return undefined; throw err; }",
    });
  }
  t.observe(4, `startReader() rejected: ${unreadable.error.message.slice(0, 80)}`);

  // Events that come one at a time: the replay resolves with `count` of them, not with the first.
  const next = LAST + 1;
  const markLive = connectionMark();
  const live = callReplay(t, next, 3);
  t.provoke(3, `called replay(url, "${STREAM}", ${next}, 3) before those events existed, then published them one at a time, 150 ms apart`);
  await t.waitFor(() => sentBy(connectionsSince(markLive), 'basic.consume').length > 0, 3000);
  await sleep(100);
  for (const offset of [next, next + 1, next + 2]) {
    await t.publish(STREAM, [body(offset)]);
    await sleep(150);
  }
  const liveEvents = await settle(t, live, `replay(url, "${STREAM}", ${next}, 3)`, markLive, next);
  expectEvents(t, `replay(url, "${STREAM}", ${next}, 3)`, liveEvents, [next, next + 1, next + 2], `offset ${next}`);
  t.observe(3, `replay(…, ${next}, 3) waited for the three events and resolved with offsets ${next} to ${next + 2}`);

  // A replay still waiting and a reader at the end of the stream; the stream is deleted under them.
  const pending = callReplay(t, next + 3, 1);
  void pending.catch(() => undefined);
  const run5 = scriptedHandler();
  t.provoke(6, `called replay(url, "${STREAM}", ${next + 3}, 1), an event that never comes, and started a reader with a new offset file`);
  const reader = await t.call(`startReader(url, "${STREAM}", anotherOffsetFile, handle)`, () => t.target.startReader(t.url, STREAM, path.join(dir, 'another.offset'), run5.handle));
  void reader;
  await t.waitFor(() => run5.calls.includes(next + 2), 4000);
  await deleteQueueUnderConsumer(t, STREAM, 6);
  await cutConnectionsAndSurvive(t, 6, 'a network failure under a waiting replay and a running reader');
}

/** The reader declared the stream too (queue.declare on its connection). */
function expectDeclares(t: T, conns: AmqpConnection[]): void {
  const declared = sentBy(conns, 'queue.declare').some((m) => m.queue === STREAM);
  if (!declared) {
    t.fail({
      summary: `startReader() did not declare "${STREAM}": it relies on replay() having run first.`,
      expected: `channel.assertQueue("${STREAM}", …) in startReader() too, with the same arguments`,
      saw: 'no queue.declare on the reader\'s connection',
      why: 'A reader may well start before any publisher or any replay; consuming a stream nobody declared fails with NOT_FOUND.',
      fix: "Declare the stream in startReader() exactly as in replay(): a shared constant for the options keeps them the same.",
    });
  }
  t.observe(1, `startReader() declared "${STREAM}" too, with the same arguments (the broker accepted it)`);
}

/** The handler saw exactly `from`…`to`, once each, one at a time, with offsets that match the bodies. */
async function expectHandled(t: T, h: Handler, from: number, to: number, conns: AmqpConnection[], start: string, previous?: Handler): Promise<void> {
  if (h.wrong) {
    t.fail({
      summary: `handle() was called with ${h.wrong}: not the event at that offset.`,
      expected: `handle({ offset: ${from}, body: "${body(from)}" }), then the next ones`,
      saw: h.wrong,
      why: 'The offset is the event\'s position in the stream, from the x-stream-offset header of each delivery (not the delivery tag, which counts deliveries on your channel from 1). The reader stores it, so a wrong one sends the next reader to the wrong place.',
      fix: "{ offset: Number(msg.properties.headers?.['x-stream-offset']), body: msg.content.toString() }",
    });
  }
  const wanted = range(from, to);
  if (h.calls.length === 0) {
    const asked = await consumerArgument(t, STREAM, localPorts(conns));
    if (typeof asked.value === 'number' && asked.value > from) {
      t.fail({
        summary: `The reader started at offset ${asked.value} (its consumer asked for x-stream-offset ${asked.value}), not at ${start}: offsets ${from} to ${asked.value - 1} were never handled.`,
        expected: `x-stream-offset ${from}, and handle() for offsets ${from} to ${to}`,
        saw: `x-stream-offset ${asked.value}; no call of handle()`,
        why: 'The offset may only move past an event once its handle() has resolved. Written earlier (when the event arrives, or before handle() finishes), it points past events whose work never happened, and no reader will ever do it.',
        fix: 'await handle(event); then write event.offset to the file; then ack.',
      });
    }
    t.fail({
      summary: `The reader handled nothing within 4 s, though the stream holds offsets ${from} to ${to}: it did not start at ${start}.`,
      expected: `handle() for offsets ${from} to ${to}`,
      saw: 'no call of handle()',
      why: 'A stream consumer without x-stream-offset starts at "next": the end of the stream, after everything already in it. A reader must say where to start: right after the last offset it stored, or "first" the first time.',
      fix: "arguments: { 'x-stream-offset': last === undefined ? 'first' : last + 1 }",
    });
  }
  const first = h.calls[0]!;
  if (first !== from) {
    const repeated = previous ? previous.resolved.filter((o) => o >= first && o < from) : [];
    t.fail({
      summary:
        first < from
          ? `The reader started at offset ${first}, not at ${start}: ${repeated.length ? `offset${repeated.length === 1 ? '' : 's'} ${repeated.length > 3 ? `${repeated[0]} to ${repeated.at(-1)}` : repeated.join(', ')}, handled by the previous reader, ${repeated.length === 1 ? 'was' : 'were'} handled again` : 'events before it were handled'}.`
          : `The reader started at offset ${first}, not at ${start}: offset${first - from === 1 ? '' : 's'} ${range(from, first - 1).join(', ')} ${first - from === 1 ? 'was' : 'were'} never handled.`,
      expected: `the first handle() for offset ${from}`,
      saw: `handle() called for ${h.calls.slice(0, 5).join(', ')}${h.calls.length > 5 ? ', …' : ''}`,
      why:
        first < from
          ? 'The offset file holds the last event that is done; the next reader starts right after it (x-stream-offset: last + 1). Starting at the stored offset itself, or at the beginning, repeats work that was done.'
          : 'The offset may only move past an event once its handle() has resolved. Written earlier (when the event arrives, or before handle() finishes), it points past an event whose work never happened, and no reader will ever do it.',
      fix:
        first < from
          ? "arguments: { 'x-stream-offset': last === undefined ? 'first' : last + 1 }, where last is the offset read from the file"
          : 'await handle(event); then write event.offset to the file; then ack.',
    });
  }
  if (h.maxAtOnce > 1 || h.calls.join() !== wanted.slice(0, h.calls.length).join() || h.calls.length < wanted.length) {
    const prefetch = sentBy(conns, 'basic.qos').map((m) => m.prefetchCount).join(', ');
    t.fail({
      summary:
        h.maxAtOnce > 1
          ? `The reader ran handle() for ${h.maxAtOnce} events at once, not one after the other.`
          : `The reader did not handle offsets ${from} to ${to} exactly once each, in order.`,
      expected: `handle() for ${from}, ${from + 1}, … ${to}, the next one only after the previous one resolved`,
      saw: `handle() called for ${h.calls.slice(0, 8).join(', ')}${h.calls.length > 8 ? ', …' : ''} (${h.calls.length} calls, up to ${h.maxAtOnce} at once); prefetch ${prefetch || 'none'}`,
      why: 'The reader stores one offset: the last event done. If handle() runs for several events at once, a later one can finish first and move the offset past an earlier one still in progress, which is then lost when the reader stops.',
      fix: 'Chain the work of each event on a promise: chain = chain.then(async () => { await handle(event); … }). prefetch(1) does not do it on a stream: the broker sends events a chunk at a time, past the limit.',
    });
  }
}

/** The reader's consumer asked the broker for x-stream-offset `offset` (the management API lists consumers after a statistics tick). */
async function expectAskedFor(t: T, ports: number[], offset: number): Promise<void> {
  const asked = await consumerArgument(t, STREAM, ports);
  if (!asked.found) {
    t.note(`The management API did not list the reader's consumer in time, so its x-stream-offset was not read (expected ${offset}).`);
    return;
  }
  if (asked.value === offset) return;
  t.fail({
    summary: `The reader asked the broker for x-stream-offset ${describeOffsetSpec(asked.value)} and skipped the events before ${offset} itself: it reads the whole stream again at every start.`,
    expected: `x-stream-offset ${offset}`,
    saw: `x-stream-offset ${describeOffsetSpec(asked.value)}`,
    why: 'A stream can start a consumer at any offset, for free. Reading from the beginning and skipping what was done sends you every event ever kept, at every restart: a week of events to reach the last few.',
    fix: "arguments: { 'x-stream-offset': last + 1 }",
  });
}

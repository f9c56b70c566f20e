// Exercise 8.4: replay an event stream from an offset, from a point in time, and from where you stopped
// Text: chapters/08-clusters/README.md   Check: npm run check 8.4   Hint: npm run hint 8.4
//
// replay(url, stream, from, count) and startReader(url, stream, offsetFile, handle) must:
//   1. declare `stream` as a stream: durable, x-queue-type 'stream', keeping a week of events
//      (x-max-age '7D'); both functions declare it, with the same arguments,
//   2. consume with manual acks after channel.prefetch(10): a stream refuses a consumer without a
//      prefetch limit, and an ack deletes nothing, it only lets the broker send more events,
//   3. replay(): start at `from` with the consumer argument x-stream-offset, which is the offset
//      itself when `from` is a number, and an AMQP timestamp in whole seconds when it is a Date
//      ({ '!': 'timestamp', value: seconds }); resolve with the first `count` events, in order,
//      as { offset, body } (the offset is in the message header x-stream-offset), once the
//      consumer is cancelled and the connection closed,
//   4. startReader(): start right after the last event handled, whose offset is kept in
//      `offsetFile` (written by an earlier reader, in a format of your choice), or at the first
//      event of the stream when that file does not exist; when it exists but cannot be read,
//      reject, rather than start again from the first event,
//   5. call handle(event) for one event at a time, in order (the prefetch limit does not do that
//      on a stream: the broker sends events a chunk at a time), and write the event's offset to
//      `offsetFile` only once handle() has resolved: an event whose handle() never finished is
//      handled again by the next reader; when handle() rejects, leave the offset as it is and
//      stop reading (close the connection),
//   6. listen for 'error' on the connection, skip the null message a consumer gets when the
//      broker cancels it (the stream was deleted), and return { stop }, where stop() cancels the
//      consumer and closes the connection.
import amqp, { type ConsumeMessage } from 'amqplib';
import { readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

export interface StreamEvent {
  offset: number;
  body: string;
}

export interface Reader {
  stop(): Promise<void>;
}

// A stream keeps its events until its retention limit drops them (by whole segments), whoever
// has read them. Without a limit it grows until the disk alarm stops every publisher.
const STREAM = { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' } };

function toEvent(msg: ConsumeMessage): StreamEvent {
  // The broker stamps every message it delivers from a stream with the offset it has there.
  return { offset: Number(msg.properties.headers?.['x-stream-offset']), body: msg.content.toString() };
}

export async function replay(url: string, stream: string, from: number | Date, count: number): Promise<StreamEvent[]> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(stream, STREAM);
    await channel.prefetch(10); // required on a stream; the acks let more events come
    // A number is an offset. A point in time travels as an AMQP timestamp, in whole seconds (a
    // number of milliseconds would be read as an offset far beyond the end of the stream).
    const offset = from instanceof Date ? { '!': 'timestamp', value: Math.floor(from.getTime() / 1000) } : from;

    const events: StreamEvent[] = [];
    let allThere!: () => void;
    const done = new Promise<void>((resolve) => (allThere = resolve));
    const { consumerTag } = await channel.consume(
      stream,
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        if (events.length < count) events.push(toEvent(msg));
        channel.ack(msg); // deletes nothing: it is the credit for the next event
        if (events.length === count) allThere();
      },
      { noAck: false, arguments: { 'x-stream-offset': offset } },
    );
    await done;
    await channel.cancel(consumerTag);
    return events;
  } finally {
    await connection.close();
  }
}

/** The offset of the last event handled, or undefined when no reader has written one yet. */
async function lastHandled(offsetFile: string): Promise<number | undefined> {
  try {
    return Number(await readFile(offsetFile, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function startReader(url: string, stream: string, offsetFile: string, handle: (event: StreamEvent) => Promise<void>): Promise<Reader> {
  const last = await lastHandled(offsetFile);
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(stream, STREAM);
  await channel.prefetch(10);

  // One event at a time, in the order of the stream: each handle() waits for the one before it.
  // (prefetch(1) would not do it: a stream sends the rest of a chunk as soon as it has credit.)
  let chain = Promise.resolve();
  let stopped = false;
  const { consumerTag } = await channel.consume(
    stream,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer
      const event = toEvent(msg);
      chain = chain.then(async () => {
        if (stopped) return;
        try {
          await handle(event);
          await writeFile(offsetFile, String(event.offset)); // only now is this event done
          channel.ack(msg);
        } catch (err) {
          // The offset stays where it was: the next reader starts at this event again.
          stopped = true;
          console.error(`event ${event.offset} failed, the reader stops: ${err}`);
          await connection.close().catch(() => undefined);
        }
      });
    },
    // Right after the last event handled; from the start of the stream the first time.
    { noAck: false, arguments: { 'x-stream-offset': last === undefined ? 'first' : last + 1 } },
  );

  return {
    async stop() {
      stopped = true; // the events already here are left for the next reader
      await channel.cancel(consumerTag);
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/08-clusters/04-stream-replay.ts   (Ctrl-C to stop)
// Reads "events" from where it stopped last time (the offset is kept in events.offset); publish
// to "events" from the management UI and run it again.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  const reader = await startReader(url, 'events', 'events.offset', async (event) => {
    console.log(`offset ${event.offset}: ${event.body}`);
  });
  console.log('Reading "events" from where the last run stopped. Ctrl-C to stop.');
  process.once('SIGINT', () => void reader.stop());
}

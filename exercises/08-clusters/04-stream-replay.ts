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

// TODO 1: the declaration options of the stream, shared by both functions: durable, with the
//         arguments x-queue-type 'stream' and x-max-age '7D'.
const STREAM = { durable: true, arguments: {} };

function toEvent(msg: ConsumeMessage): StreamEvent {
  // TODO 2: the offset is in the header x-stream-offset of every delivery (not the delivery tag).
  return { offset: -1, body: msg.content.toString() };
}

export async function replay(url: string, stream: string, from: number | Date, count: number): Promise<StreamEvent[]> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(stream, STREAM);
    // TODO 3: a prefetch of 10, before consume() (a stream refuses a consumer without one).
    // TODO 4: x-stream-offset: `from` itself when it is a number; for a Date, an AMQP timestamp in
    //         whole seconds: { '!': 'timestamp', value: Math.floor(from.getTime() / 1000) }.
    // TODO 5: consume with { noAck: false, arguments: { 'x-stream-offset': … } }; push toEvent(msg)
    //         until there are `count`, ack every message (the ack is the credit for the next one),
    //         and resolve a promise once there are `count`. Then cancel the consumer and return
    //         the events (the finally block closes the connection).
    throw new Error('TODO: replay in exercises/08-clusters/04-stream-replay.ts');
  } finally {
    await connection.close();
  }
}

export async function startReader(url: string, stream: string, offsetFile: string, handle: (event: StreamEvent) => Promise<void>): Promise<Reader> {
  // TODO 6: read the last offset handled from offsetFile (readFile); when the file does not
  //         exist (err.code === 'ENOENT'), there is none yet; any other error is thrown on.
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(stream, STREAM);
  await channel.prefetch(10);
  // TODO 7: consume with x-stream-offset last + 1 ('first' when there is no offset yet).
  // TODO 8: one event at a time: chain the work of each message (skip null) on a promise,
  //         chain = chain.then(async () => { … }), because prefetch(1) would not do it on a stream.
  //         In it: await handle(toEvent(msg)); then write the offset to offsetFile (writeFile);
  //         then ack. When handle() rejects: no write, no ack; close the connection, and handle
  //         nothing more (a flag that the next link of the chain checks).
  throw new Error('TODO: startReader in exercises/08-clusters/04-stream-replay.ts');

  return {
    async stop() {
      // TODO 9: set that flag (the events already received are left for the next reader), cancel
      //         the consumer, then close the connection.
    },
  };
}

// On its own: npx tsx exercises/08-clusters/04-stream-replay.ts   (Ctrl-C to stop)
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

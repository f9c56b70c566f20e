// Exercise 5.2: as many at once as the prefetch allows, and no more
// Text: chapters/05-consumers/README.md   Check: npm run check 5.2   Hint: npm run hint 5.2
//
// startWorkers(url, queue, prefetch, handle) must:
//   1. declare `queue` (durable quorum queue) and consume from it with manual acks; skip the null that
//      amqplib passes the callback when the broker cancels the consumer (the queue was deleted),
//   2. work on up to `prefetch` messages at the same time: handle() is async and slow (think of
//      an HTTP call), so the messages must be handled concurrently, never more than `prefetch` at once,
//   3. call handle(text) with the body as a string, ack the message when its handle() resolves, and
//      reject it with requeue each time handle() rejects,
//   4. listen for 'error' on the connection and the channel; when the broker refuses the declaration,
//      close the connection and reject with the broker's error,
//   5. return { stop }, where stop() stops consuming, then closes the channel and the connection: a
//      message whose handle() has not resolved goes back to the queue.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Workers {
  stop(): Promise<void>;
}

export async function startWorkers(url: string, queue: string, prefetch: number, handle: (text: string) => Promise<void>): Promise<Workers> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // The broker keeps at most `prefetch` unacknowledged messages on this consumer. amqplib calls
    // the callback for each delivery at once, without waiting: the prefetch IS the concurrency limit.
    await channel.prefetch(prefetch);

    const { consumerTag } = await channel.consume(
      queue,
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        // Not awaited, on purpose: the next delivery must not wait for this one.
        handle(msg.content.toString()).then(
          () => channel.ack(msg), // frees a slot: the broker sends the next message
          (err) => {
            console.error(`handling failed, requeued: ${err}`);
            channel.reject(msg, true);
          },
        );
      },
      { noAck: false }, // with noAck: true the prefetch would be ignored
    );

    return {
      async stop() {
        await channel.cancel(consumerTag);
        await channel.close(); // waits until the broker has taken every ack sent before it
        await connection.close();
      },
    };
  } catch (err) {
    // Nothing to hand back: close what was opened, and let the caller see the broker's error.
    await connection.close();
    throw err;
  }
}

// On its own: npx tsx solutions/05-consumers/02-prefetch.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  let inFlight = 0;
  const workers = await startWorkers(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'jobs', 10, async (text) => {
    inFlight++;
    console.log(`start ${text} (${inFlight} in flight)`);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a slow call to another service
    inFlight--;
  });
  console.log('Working on "jobs", 10 at a time. Ctrl-C to stop.');
  process.once('SIGINT', () => void workers.stop());
}

// Exercise 5.3: stop without losing or repeating work
// Text: chapters/05-consumers/README.md   Check: npm run check 5.3   Hint: npm run hint 5.3
//
// start(url, queue, handle) must:
//   1. declare `queue` (durable quorum queue) and consume from it with manual acks and prefetch 5,
//      handling messages concurrently (as in 5.2): ack each when its handle() resolves, reject it with
//      requeue when its handle() rejects, and skip the null amqplib passes when the broker cancels
//      the consumer,
//   2. return { shutdown }, where shutdown():
//      a. first stops new deliveries (cancel the consumer),
//      b. then waits until every handler already running has settled and its message is answered
//         (acked, or requeued when its handle() rejected),
//      c. then closes the channel and the connection, and only then resolves,
//   3. listen for 'error' on the connection and the channel; when the broker refuses the declaration,
//      close the connection and reject with the broker's error.
//   A shutdown must not lose a message, nor make the broker deliver a finished one again.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Service {
  shutdown(): Promise<void>;
}

export async function start(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Service> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.prefetch(5);

    const inFlight = new Set<Promise<void>>(); // the work that has started and not yet been answered
    // TODO 1: consume `queue` with { noAck: false }. For each message (skip null), start
    //         handle(msg.content.toString()), ack in its .then() (reject with requeue when it rejects),
    //         and keep THAT promise (the one that ends after the ack or reject) in `inFlight` until it
    //         settles (.finally(() => inFlight.delete(work))).
    throw new Error('TODO: consume in exercises/05-consumers/03-shutdown.ts');

    return {
      async shutdown() {
        // TODO 2: stop new deliveries: cancel the consumer (await channel.cancel(consumerTag)).
        // TODO 3: wait for every handler still running: await Promise.all(inFlight).
        // TODO 4: only then close: the channel first (await channel.close(): its reply comes after the
        //         broker has processed your acks), then the connection.
      },
    };
  } catch (err) {
    // TODO 5: the setup failed (the broker refused the declaration, say): close the connection here,
    //         then let the caller see the error.
    throw err;
  }
}

// On its own: npx tsx exercises/05-consumers/03-shutdown.ts   (Ctrl-C shuts down gracefully)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const service = await start(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'emails', async (text) => {
    await new Promise((resolve) => setTimeout(resolve, 1000)); // sending an email takes a while
    console.log(`sent: ${text}`);
  });
  console.log('Sending emails from "emails". Ctrl-C (or SIGTERM) to shut down gracefully.');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log('Shutting down: finishing the emails in progress...');
      void service.shutdown().then(() => console.log('Done, nothing lost.'));
    });
  }
}

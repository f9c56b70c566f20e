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
    const { consumerTag } = await channel.consume(
      queue,
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        // The promise kept is the one that ends after the answer (ack or reject), and never rejects.
        const work: Promise<void> = handle(msg.content.toString())
          .then(
            () => channel.ack(msg),
            (err) => {
              console.error(`handling failed, requeued: ${err}`);
              channel.reject(msg, true);
            },
          )
          .finally(() => inFlight.delete(work));
        inFlight.add(work);
      },
      { noAck: false },
    );

    return {
      async shutdown() {
        // 1. No new deliveries. When cancel() resolves, every message the broker sent before
        //    the cancel has reached the callback above, so `inFlight` is complete.
        await channel.cancel(consumerTag);
        // 2. Let the running handlers finish; each answers its message on the still-open channel.
        await Promise.all(inFlight);
        // 3. Close the channel first: an ack has no reply, but the channel's close does, and it comes
        //    after the broker has processed every ack sent before it. connection.close() alone can
        //    drop acks still on their way, and those messages would come back.
        await channel.close();
        await connection.close();
      },
    };
  } catch (err) {
    // Nothing to hand back: close what was opened, and let the caller see the broker's error.
    await connection.close();
    throw err;
  }
}

// On its own: npx tsx solutions/05-consumers/03-shutdown.ts   (Ctrl-C shuts down gracefully)
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

// Exercise 8.5: single active consumer: one consumer at a time, and a standby that takes over in order
// Text: chapters/08-clusters/README.md   Check: npm run check 8.5   Hint: npm run hint 8.5
//
// startConsumer(url, queue, handle) must:
//   1. declare `queue` as a durable quorum queue with single active consumer
//      (x-single-active-consumer: true): the broker delivers to one of its consumers at a time,
//      and the others wait as standbys, in case it goes away; and with a delivery limit of 20
//      (x-delivery-limit: 20, the default of 4.x), which also makes a rejected message come
//      back at the head of the queue on 3.x, as on 4.x,
//   2. take one message at a time: await channel.prefetch(1) before consume(), so that the only
//      message a failover sends back to the queue is the one in progress,
//   3. consume with manual acks, call handle(text) for each message and ack it when its promise
//      resolves; reject it with requeue when it rejects (it goes back to the head of the queue,
//      and the active consumer gets it again, before the next one),
//   4. listen for 'error' on the connection, and skip the null message the consumer gets when the
//      broker cancels it (its queue was deleted),
//   5. return { stop }, where stop() cancels the consumer, then closes the channel and the
//      connection: a standby takes over.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

// TODO 1: the declaration options: durable, with the arguments x-queue-type 'quorum',
//         x-single-active-consumer true and x-delivery-limit 20.
const QUEUE = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function startConsumer(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Consumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, QUEUE);
  // TODO 2: one message at a time, before consume().
  // TODO 3: consume `queue` with { noAck: false }. For each message (skip null): call
  //         handle(msg.content.toString()); ack when its promise resolves, reject with requeue
  //         (channel.reject(msg, true)) when it rejects. Keep the consumerTag.
  throw new Error('TODO: consume in exercises/08-clusters/05-sac-failover.ts');

  return {
    async stop() {
      // TODO 4: cancel the consumer, then close the channel, then the connection.
    },
  };
}

// On its own: npx tsx exercises/08-clusters/05-sac-failover.ts A   (Ctrl-C to stop)
// Start it twice (A and B) in two terminals, publish to "orders" from the management UI: only A
// gets them. Stop A: B takes over.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const name = process.argv[2] ?? 'A';
  const consumer = await startConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'orders', async (text) => {
    console.log(`${name} handles "${text}"`);
  });
  console.log(`${name} consumes "orders" (active, or waiting as a standby). Ctrl-C to stop.`);
  process.once('SIGINT', () => void consumer.stop());
}

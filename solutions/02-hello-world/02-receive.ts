// Exercise 2.2: receive messages, and acknowledge each one only when its work is done
// Text: chapters/02-hello-world/README.md   Check: npm run check 2.2   Hint: npm run hint 2.2
//
// startReceiver(url, queue, handle) must:
//   1. declare `queue` (durable quorum queue, as in 2.1) and consume from it with manual acks,
//      at most 10 unacknowledged messages at a time (prefetch 10),
//   2. call `handle(text)` with the body of each message as text, in the order they arrive, and:
//      a. ack the message once handle's promise for it resolves, never before,
//      b. give it back to the queue when that promise rejects (a reject with requeue),
//         so that the broker delivers it again,
//   3. listen for 'error' on the connection, so a lost connection does not crash the process,
//   4. keep running when the broker cancels the consumer (someone deleted the queue): amqplib
//      then calls your callback with null instead of a message,
//   5. return { stop }, where stop() ends the consumer and closes the channel and the connection.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Receiver {
  stop(): Promise<void>;
}

export async function startReceiver(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Receiver> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.prefetch(10); // at most 10 unacknowledged messages in our hands at once

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer, e.g. the queue was deleted
      handle(msg.content.toString()).then(
        () => channel.ack(msg), // the work is done: now the broker may forget the message
        (err) => {
          console.error(`handling failed, the message goes back to the queue: ${err}`);
          channel.reject(msg, true); // requeued, and counted towards a quorum queue's delivery limit
        },
      );
    },
    { noAck: false },
  );

  return {
    async stop() {
      await channel.cancel(consumerTag); // no new deliveries
      await channel.close(); // flushes our last acks: closing only the connection can drop them
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/02-hello-world/02-receive.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const receiver = await startReceiver(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'hello', async (text) => {
    console.log(`Received: ${text}`);
  });
  console.log('Waiting for messages on "hello". Ctrl-C to stop.');
  process.once('SIGINT', () => void receiver.stop());
}

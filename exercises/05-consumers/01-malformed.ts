// Exercise 5.1: reject what can never be processed
// Text: chapters/05-consumers/README.md   Check: npm run check 5.1   Hint: npm run hint 5.1
//
// startJsonConsumer(url, queue, handle) must:
//   1. declare `queue` (durable quorum queue) and consume from it with manual acks and a prefetch of 10;
//      skip the null that amqplib passes the callback when the broker cancels the consumer (the queue
//      was deleted),
//   2. parse each body as JSON, call handle(value), and ack the message once handle's promise resolves,
//   3. requeue the message (reject it with requeue) each time handle's promise rejects: that failure
//      may pass,
//   4. reject a body that is not valid JSON WITHOUT requeue, and that message alone: it will never parse,
//      and requeueing it would only loop (the broker dead-letters it if the queue has a dead-letter
//      exchange, else drops it),
//   5. keep consuming after a malformed message: no exception may escape the message callback,
//   6. listen for 'error' on the connection and the channel; when the broker refuses the declaration,
//      close the connection and reject with the broker's error,
//   7. return { stop }, where stop() stops consuming, then closes the channel and the connection: a
//      message whose handle() has not resolved goes back to the queue.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startJsonConsumer(url: string, queue: string, handle: (value: unknown) => Promise<void>): Promise<Consumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.prefetch(10);

    // TODO 1: consume `queue` with { noAck: false }; skip a null message (the broker cancelled the consumer).
    // TODO 2: parse msg.content.toString() with JSON.parse inside try/catch. When it throws, reject the
    //         message WITHOUT requeue (channel.reject(msg, false)) and return.
    // TODO 3: otherwise call handle(value); ack when its promise resolves, reject with requeue
    //         (channel.reject(msg, true)) when it rejects.
    // TODO 4: keep the consumerTag for stop().
    throw new Error('TODO: consume in exercises/05-consumers/01-malformed.ts');

    return {
      async stop() {
        // TODO 5: cancel the consumer, then close the channel, then the connection
      },
    };
  } catch (err) {
    // TODO 6: the setup failed (the broker refused the declaration, say): close the connection here,
    //         then let the caller see the error.
    throw err;
  }
}

// On its own: npx tsx exercises/05-consumers/01-malformed.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startJsonConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'orders', async (order) => {
    console.log('Order:', order);
  });
  console.log('Waiting for JSON orders on "orders". Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

// Exercise 7.3: let the delivery limit catch poison messages
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.3   Hint: npm run hint 7.3
//
// startPoisonAwareConsumer(url, queue, deliveryLimit, handle) must:
//   1. declare the durable fanout exchange `<queue>.dlx` and the durable quorum queue `<queue>.dead`,
//      bound to it,
//   2. declare `queue` as a durable quorum queue with the arguments:
//      a. x-delivery-limit: deliveryLimit, set explicitly (RabbitMQ 3.10 has no limit by default, 4.x
//         has 20),
//      b. x-dead-letter-exchange: `<queue>.dlx`,
//      c. x-dead-letter-strategy "at-least-once" AND x-overflow "reject-publish": with the default
//         overflow (drop-head) the broker silently falls back to at-most-once,
//   3. consume `queue` with manual acks and a prefetch of 10; call handle(text) with the body as text and
//      ack the message once handle's promise resolves; skip the null that amqplib passes when the broker
//      cancels the consumer,
//   4. when it rejects, reject the message WITH requeue (channel.reject(msg, true), never channel.nack:
//      on RabbitMQ 4.3 a nack does not count towards the limit), so that it is tried again until the
//      delivery limit dead-letters it,
//   5. listen for 'error' on the connection and the channel; when the broker refuses a declaration, close
//      the connection and reject with the broker's error; return { stop }, where stop() cancels the
//      consumer, then closes the channel and the connection.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startPoisonAwareConsumer(
  url: string,
  queue: string,
  deliveryLimit: number,
  handle: (text: string) => Promise<void>,
): Promise<Consumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));

    // TODO 1: assertExchange(`${queue}.dlx`, 'fanout', { durable: true }); assertQueue(`${queue}.dead`,
    //         a durable quorum queue); bindQueue(`${queue}.dead`, `${queue}.dlx`, '').
    // TODO 2: assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum',
    //         'x-delivery-limit': deliveryLimit, 'x-dead-letter-exchange': `${queue}.dlx`,
    //         'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' } }).
    // TODO 3: prefetch 10; consume with { noAck: false }; skip a null message;
    //         handle(msg.content.toString()).then(() => channel.ack(msg), () => channel.reject(msg, true)).
    throw new Error('TODO: declare and consume in exercises/07-dead-letters/03-poison-limit.ts');

    return {
      async stop() {
        // TODO 4: cancel the consumer, then close the channel and the connection.
      },
    };
  } catch (err) {
    await connection.close();
    throw err;
  }
}

// On its own: npx tsx exercises/07-dead-letters/03-poison-limit.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startPoisonAwareConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'payments', 3, async (text) => {
    // A bug that only some messages trigger: the consumer cannot tell it from a passing failure.
    if (text.includes('€')) throw new Error('the payment provider client crashed on this body');
    console.log(`Payment: ${text}`);
  });
  console.log('Waiting for payments on "payments"; a body with "€" in it ends in "payments.dead" after 4 deliveries. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

// Exercise 7.2: retries with growing delays that never wait behind a longer one
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.2   Hint: npm run hint 7.2
//
// startRetryingConsumer(url, queue, delaysMs, handle) must:
//   1. declare `queue`, one wait queue `<queue>.wait.<d>` for each delay d of delaysMs, and the parking
//      queue `<queue>.parked`, all durable quorum queues; a wait queue has x-message-ttl d and
//      dead-letters back to `queue` (x-dead-letter-exchange "", x-dead-letter-routing-key `queue`),
//   2. consume `queue` with manual acks and a prefetch of 10; call handle(msg) and ack the message once
//      handle's promise resolves; skip the null that amqplib passes when the broker cancels the consumer,
//   3. when it rejects, read the retry count from the message's own "retry-count" header (0 when it is
//      absent; never from x-death, which belongs to the broker) and send a copy with "retry-count" one
//      higher to the wait queue of that retry: the 1st retry waits delaysMs[0], the 2nd delaysMs[1]…,
//   4. when every delay has been used, send the copy to the parking queue instead, with the headers
//      "retry-count" (as it is) and "failure-reason" (the error's message),
//   5. keep the body and the properties in every copy: content type, message id, and the other headers,
//   6. publish each copy on a confirm channel and ack the original only once the broker has confirmed
//      the copy; when the broker refuses the copy, reject the original with requeue: nothing is lost,
//   7. listen for 'error' on the connection and the channels; when the broker refuses a declaration, close
//      the connection and reject with the broker's error; return { stop }, where stop() cancels the
//      consumer, then closes the channels and the connection.
import amqp, { type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface RetryingConsumer {
  stop(): Promise<void>;
}

const quorum = (extra: Record<string, unknown> = {}) => ({ durable: true, arguments: { 'x-queue-type': 'quorum', ...extra } });

export async function startRetryingConsumer(
  url: string,
  queue: string,
  delaysMs: number[],
  handle: (msg: ConsumeMessage) => Promise<void>,
): Promise<RetryingConsumer> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    // Copies go out on a channel in confirm mode: the broker says whether it took each one.
    const publisher = await connection.createConfirmChannel();
    publisher.on('error', (err) => console.error(`publisher channel error: ${err.message}`));

    await channel.assertQueue(queue, quorum());
    // TODO 1: for each delay d: assertQueue(`${queue}.wait.${d}`, quorum({ 'x-message-ttl': d,
    //         'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue })); then `${queue}.parked`.
    // TODO 2: prefetch 10, then consume `queue` with { noAck: false }. For each message (skip a null):
    //         handle(msg).then(() => channel.ack(msg), (err) => retryLater(msg, err)).
    // TODO 3: retryLater(msg, err): retries = Number(msg.properties.headers?.['retry-count'] ?? 0).
    //         retries < delaysMs.length: the copy goes to the wait queue of delaysMs[retries], with
    //         'retry-count': retries + 1; otherwise to `${queue}.parked`, with 'retry-count': retries and
    //         'failure-reason': the error's message. Copy msg.properties (headers included; the broker's own
    //         x-… headers may stay out) and send msg.content.
    // TODO 4: publishConfirmed(publisher, target, content, options).then(() => channel.ack(msg),
    //         () => channel.reject(msg, true)), and a .catch() in case the channel is gone.
    throw new Error('TODO: consume and retry in exercises/07-dead-letters/02-growing-delays.ts');

    return {
      async stop() {
        // TODO 5: cancel the consumer, then close the publisher channel, the channel and the connection.
      },
    };
  } catch (err) {
    await connection.close();
    throw err;
  }
}

/** sendToQueue on a confirm channel, as a promise: resolves when the broker confirms, rejects when it refuses. */
function publishConfirmed(channel: ConfirmChannel, queue: string, content: Buffer, options: amqp.Options.Publish): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.sendToQueue(queue, content, options, (err) => (err ? reject(err) : resolve()));
  });
}

// On its own: npx tsx exercises/07-dead-letters/02-growing-delays.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startRetryingConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'emails', [1000, 5000, 30000], async (msg) => {
    console.log(`Email (retry ${msg.properties.headers?.['retry-count'] ?? 0}): ${msg.content.toString()}`);
    if (Math.random() < 0.5) throw new Error('the mail server did not answer');
  });
  console.log('Waiting for emails on "emails"; half of them fail. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

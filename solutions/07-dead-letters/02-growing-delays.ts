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
    // One wait queue per delay: messages expire at the head of a queue, so a single queue holding
    // several delays would keep a short one behind a long one. Named after the delay: another delay
    // is another queue, never a redeclaration with a new TTL (which the broker would refuse).
    const waitQueues = delaysMs.map((d) => `${queue}.wait.${d}`);
    for (const [i, d] of delaysMs.entries()) {
      await channel.assertQueue(waitQueues[i]!, quorum({ 'x-message-ttl': d, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': queue }));
    }
    await channel.assertQueue(`${queue}.parked`, quorum());
    await channel.prefetch(10);

    const { consumerTag } = await channel.consume(
      queue,
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        handle(msg).then(
          () => channel.ack(msg),
          (err: unknown) => retryLater(msg, err),
        );
      },
      { noAck: false },
    );

    /** Sends a copy to the next wait queue (or to parking), and acks the original once the copy is safe. */
    function retryLater(msg: ConsumeMessage, err: unknown): void {
      const { headers = {}, ...properties } = msg.properties;
      const retries = Number(headers['retry-count'] ?? 0);
      // The broker's own x-… headers (x-death and its friends) stay out: it writes them itself.
      const own = Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith('x-')));
      const target = retries < delaysMs.length ? waitQueues[retries]! : `${queue}.parked`;
      const copyHeaders = retries < delaysMs.length
        ? { ...own, 'retry-count': retries + 1 }
        : { ...own, 'retry-count': retries, 'failure-reason': err instanceof Error ? err.message : String(err) };
      publishConfirmed(publisher, target, msg.content, { ...properties, headers: copyHeaders, persistent: true }).then(
        () => channel.ack(msg),
        // Refused (or the channel is gone): the original stays ours to retry, not lost.
        () => channel.reject(msg, true),
      ).catch((e: Error) => console.error(`could not answer the message: ${e.message}`));
    }

    return {
      async stop() {
        await channel.cancel(consumerTag);
        await publisher.close();
        await channel.close();
        await connection.close();
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

// On its own: npx tsx solutions/07-dead-letters/02-growing-delays.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startRetryingConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'emails', [1000, 5000, 30000], async (msg) => {
    console.log(`Email (retry ${msg.properties.headers?.['retry-count'] ?? 0}): ${msg.content.toString()}`);
    if (Math.random() < 0.5) throw new Error('the mail server did not answer');
  });
  console.log('Waiting for emails on "emails"; half of them fail. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

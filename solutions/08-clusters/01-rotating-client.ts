// Exercise 8.1: a consumer that moves to another node when its node goes away
// Text: chapters/08-clusters/README.md   Check: npm run check 8.1   Hint: npm run hint 8.1
//
// startBillingConsumer(urls, handle, backoff) must:
//   1. connect to the nodes of `urls` in rotation: urls[0] first, and after a node that refused (or
//      whose connection was lost), the next one in the list (after the last one, urls[0] again),
//   2. after each failed attempt, wait before the next one: backoff.initialDelayMs after the first
//      failure, twice as long after each further one, never longer than backoff.maxDelayMs, and each
//      wait multiplied by 0.5 + backoff.random() / 2 (jitter: many clients do not all retry at the
//      same moment); after a successful connection, start again from backoff.initialDelayMs,
//   3. on every connection, the first one and each new one: create a channel, declare the exchange
//      "orders" (durable, topic), the durable quorum queue "billing", bind it with "order.created",
//      set a prefetch of 10 and consume with manual acks: ack once handle(text) resolves, reject with
//      requeue (channel.reject(msg, true)) when it rejects, and skip the null message that says the
//      broker cancelled the consumer (its queue was deleted),
//   4. listen for 'error' on each connection, and when a connection closes that stop() did not close,
//      connect again at once, to the next node (as in 1, waiting as in 2 when attempts fail),
//   5. resolve once the first connection consumes, with { stop }: stop() ends the reconnecting (a wait
//      in progress included), closes the connection, and resolves once it is closed.
import amqp, { type ChannelModel } from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Backoff {
  initialDelayMs: number;
  maxDelayMs: number;
  /** A number in [0, 1): Math.random, or a fixed value in tests. */
  random: () => number;
}

export interface Consumer {
  stop(): Promise<void>;
}

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function startBillingConsumer(
  urls: string[],
  handle: (text: string) => Promise<void>,
  backoff: Backoff,
): Promise<Consumer> {
  let next = 0; // index of the URL to try next
  let failures = 0; // failed attempts since the last connection that consumed
  let stopped = false;
  let current: ChannelModel | undefined;
  let wakeUp = () => {}; // ends a wait early (stop)
  let connecting = Promise.resolve();

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  // Everything a consumer needs, made again on every connection: a new connection starts empty.
  async function setup(connection: ChannelModel): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertExchange('orders', 'topic', { durable: true });
    await channel.assertQueue('billing', QUORUM);
    await channel.bindQueue('billing', 'orders', 'order.created');
    await channel.prefetch(10);
    await channel.consume(
      'billing',
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        handle(msg.content.toString())
          .then(
            () => channel.ack(msg),
            () => channel.reject(msg, true),
          )
          // The connection may be gone by now: the answer throws, and the broker redelivers the message.
          .catch((err) => console.error(`message left unanswered: ${err.message}`));
      },
      { noAck: false },
    );
  }

  // Tries the URLs in turn until one accepts and consumes, waiting longer after each failure.
  async function connect(): Promise<void> {
    while (!stopped) {
      const url = urls[next]!;
      next = (next + 1) % urls.length;
      let connection: ChannelModel | undefined;
      try {
        connection = await amqp.connect(url);
        connection.on('error', (err) => console.error(`connection error: ${err.message}`));
        await setup(connection);
      } catch (err) {
        console.error(`no connection: ${(err as Error).message}`);
        await connection?.close().catch(() => {});
        const delay = Math.min(backoff.maxDelayMs, backoff.initialDelayMs * 2 ** failures) * (0.5 + backoff.random() / 2);
        failures++;
        await wait(delay);
        continue;
      }
      failures = 0;
      current = connection;
      connection.on('close', () => {
        current = undefined;
        if (!stopped) connecting = connect(); // lost: the next node, at once
      });
      return;
    }
  }

  connecting = connect();
  await connecting;

  return {
    async stop() {
      stopped = true;
      wakeUp();
      await connecting; // an attempt in progress ends, and may leave a connection in `current`
      await current?.close();
    },
  };
}

// On its own: RABBITMQ_URLS=amqp://localhost:5673,amqp://localhost:5674,amqp://localhost:5675 npx tsx solutions/08-clusters/01-rotating-client.ts
// (npm run broker -- cluster status prints the three URLs.) Kill the node it is connected to, and watch it move.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const urls = (process.env.RABBITMQ_URLS ?? process.env.RABBITMQ_URL ?? 'amqp://localhost').split(',');
  const consumer = await startBillingConsumer(
    urls,
    async (text) => {
      console.log(`Billing: ${text}`);
    },
    { initialDelayMs: 200, maxDelayMs: 10_000, random: Math.random },
  );
  console.log(`Consuming "billing" through ${urls.length} node(s). Ctrl-C to stop.`);
  process.once('SIGINT', () => void consumer.stop());
}

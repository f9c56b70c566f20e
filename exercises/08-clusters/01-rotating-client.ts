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

  // A wait that stop() can end early.
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function setup(connection: ChannelModel): Promise<void> {
    // TODO 3: everything a consumer needs, on this connection: createChannel() (listen for its
    //         'error'), assertExchange('orders', 'topic', { durable: true }), assertQueue('billing',
    //         QUORUM), bindQueue('billing', 'orders', 'order.created'), prefetch(10), and consume
    //         with { noAck: false }: skip null, ack when handle(text) resolves, channel.reject(msg, true)
    //         when it rejects, and .catch() after (an answer on a dead connection throws).
    throw new Error('TODO: setup() in exercises/08-clusters/01-rotating-client.ts');
  }

  async function connect(): Promise<void> {
    while (!stopped) {
      // TODO 1: take urls[next], and move `next` on to the following URL (wrapping round).
      // TODO 2: try amqp.connect(url), listen for 'error' on the connection, and await setup().
      //         When either fails: close what was opened (ignore errors), compute the wait
      //         min(maxDelayMs, initialDelayMs * 2 ** failures) * (0.5 + backoff.random() / 2),
      //         count the failure, await wait(delay), and try again (continue).
      // TODO 4: once it consumes: reset `failures`, keep it in `current`, and on its 'close'
      //         (when not stopped) start connect() again, kept in `connecting`. Then return.
      throw new Error('TODO: connect() in exercises/08-clusters/01-rotating-client.ts');
    }
  }

  connecting = connect();
  await connecting;

  return {
    async stop() {
      // TODO 5: set `stopped`, end a wait in progress (wakeUp()), await `connecting` (an attempt in
      //         progress ends, and may leave a new connection in `current`), then close `current`.
    },
  };
}

// On its own: RABBITMQ_URLS=amqp://localhost:5673,amqp://localhost:5674,amqp://localhost:5675 npx tsx exercises/08-clusters/01-rotating-client.ts
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

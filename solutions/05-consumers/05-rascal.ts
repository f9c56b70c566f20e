// Exercise 5.5: the same consumer, configured with rascal
// Text: chapters/05-consumers/README.md   Check: npm run check 5.5   Hint: npm run hint 5.5
//
// startRascalConsumer(url, queue, handle) must, with rascal's BrokerAsPromised:
//   1. configure a vhost whose connection is `url`, exactly as given (its vhost, user and options such
//      as ?heartbeat=), with `queue` as a durable quorum queue and a subscription "work" on it,
//   2. create the broker and listen for its 'error' events,
//   3. subscribe to "work": call handle(content) with each body as a string, ackOrNack() once it
//      resolves, and nack with requeue when it rejects (ackOrNack(err) alone drops the message);
//      listen for the subscription's 'error' events,
//   4. leave rascal's reconnect and resubscribe on (its defaults do both): a message whose handle()
//      outlived its connection comes back, and answering it late must not crash the process,
//   5. return { stop }, where stop() shuts the broker down.
import rascal from 'rascal';
import { pathToFileURL } from 'node:url';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startRascalConsumer(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Consumer> {
  const config = rascal.withDefaultConfig({
    vhosts: {
      // Rascal names each vhost it works with. Given a connection URL, it takes the real vhost
      // (and user, and options) from the URL: the name is only a label.
      service: {
        connection: { url },
        // Rascal's default queue is a classic one: ask for a quorum queue.
        queues: { [queue]: { options: { durable: true, arguments: { 'x-queue-type': 'quorum' } } } },
        subscriptions: { work: { queue, prefetch: 10 } },
      },
    },
  });
  const broker = await rascal.BrokerAsPromised.create(config);
  // Rascal re-emits every connection error here, and reconnects. Unheard, the error would crash the process.
  broker.on('error', (err, { vhost: name }) => console.error(`broker error on vhost ${name}: ${err.message}`));

  const subscription = await broker.subscribe('work');
  subscription
    .on('message', (_message, content, ackOrNack) => {
      handle(String(content)).then(
        () => ackOrNack(),
        // ackOrNack(err) alone would nack WITHOUT requeue: say what you mean. Rascal has no reject:
        // on RabbitMQ 4.3 this requeue does not count towards the quorum queue's delivery limit.
        (err: Error) => ackOrNack(err, { strategy: 'nack', requeue: true }),
      );
    })
    .on('error', (err) => console.error(`subscription error: ${err.message}`)); // a lost channel; rascal resubscribes

  return {
    async stop() {
      await broker.shutdown(); // cancels the subscription and closes the connection
    },
  };
}

// On its own: npx tsx solutions/05-consumers/05-rascal.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startRascalConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'payments', async (text) => {
    console.log(`Payment: ${text}`);
  });
  console.log('Consuming "payments" through rascal. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

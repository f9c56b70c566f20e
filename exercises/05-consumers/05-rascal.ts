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
  // TODO 1: build the configuration with rascal.withDefaultConfig({ vhosts: { service: { … } } }) (rascal
  //         names each vhost; with a connection URL the name is only a label): connection: { url },
  //         queues: { [queue]: { options: … a durable quorum queue … } }, subscriptions: { work: { queue, prefetch: 10 } }.
  // TODO 2: const broker = await rascal.BrokerAsPromised.create(config); and listen for its 'error' events.
  // TODO 3: const subscription = await broker.subscribe('work'); on 'message' (message, content, ackOrNack):
  //         handle(String(content)), then ackOrNack(); on failure ackOrNack(err, { strategy: 'nack', requeue: true }).
  //         Listen for the subscription's 'error' events too.
  throw new Error('TODO: configure rascal in exercises/05-consumers/05-rascal.ts');

  return {
    async stop() {
      // TODO 4: shut the broker down (it cancels the subscription and closes the connection)
    },
  };
}

// On its own: npx tsx exercises/05-consumers/05-rascal.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const consumer = await startRascalConsumer(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'payments', async (text) => {
    console.log(`Payment: ${text}`);
  });
  console.log('Consuming "payments" through rascal. Ctrl-C to stop.');
  process.once('SIGINT', () => void consumer.stop());
}

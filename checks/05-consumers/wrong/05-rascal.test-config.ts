// Known-wrong 5.5: built with rascal.withTestConfig(): namespaced, purged, non-durable queues.
import rascal from 'rascal';

export interface Consumer {
  stop(): Promise<void>;
}

export async function startRascalConsumer(url: string, queue: string, handle: (text: string) => Promise<void>): Promise<Consumer> {
  // Rascal's configuration is keyed by vhost name: take it from the URL ("/" when the URL names none).
  const vhost = decodeURIComponent(new URL(url).pathname.slice(1)) || '/';
  const config = rascal.withTestConfig({
    vhosts: {
      [vhost]: {
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
        // ackOrNack(err) alone would nack WITHOUT requeue: say what you mean.
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

// Exercise 6.3: an event bus: each service listens to the events it cares about, by topic
// Text: chapters/06-patterns/README.md   Check: npm run check 6.3   Hint: npm run hint 6.3
//
// startListener(url, { exchange, queue, patterns }, onEvent) must:
//   1. declare `exchange` as a durable topic exchange,
//   2. declare the service's own queue `queue`, durable quorum, so that events wait there while
//      the service is down,
//   3. bind the queue to the exchange once for EVERY pattern in `patterns`,
//   4. consume with manual acks, at most 10 events in progress at once (prefetch 10), call
//      onEvent(routingKey, text) for each event, and ack it when the promise onEvent returns
//      resolves (reject it with requeue when it rejects, so that it comes back and is tried again),
//   5. listen for 'error' on the connection, and skip the null message the consumer gets when the
//      broker cancels it (its queue was deleted),
//   6. return { stop }, where stop() cancels the consumer, then closes the channel and the connection.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface ListenerSpec {
  exchange: string;
  queue: string;
  patterns: string[];
}

export interface Listener {
  stop(): Promise<void>;
}

export async function startListener(url: string, spec: ListenerSpec, onEvent: (routingKey: string, text: string) => Promise<void>): Promise<Listener> {
  const { exchange, queue, patterns } = spec;
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  // TODO 1: declare `exchange`, durable, of the type that matches routing keys against patterns
  // TODO 2: declare `queue`: durable, quorum (which kind of queue keeps events while the service is down?)
  // TODO 3: bind `queue` to `exchange` with each of the patterns
  await channel.prefetch(10);
  // TODO 4: consume `queue` with { noAck: false }; for each message (skip null) call
  //         onEvent(msg.fields.routingKey, msg.content.toString()), ack when it resolves,
  //         reject with requeue when it rejects (channel.reject(msg, true)). Keep the consumerTag.
  throw new Error('TODO: finish startListener() in exercises/06-patterns/03-event-bus.ts');

  return {
    async stop() {
      // TODO 5: cancel the consumer, then close the channel, then the connection
    },
  };
}

// On its own: npx tsx exercises/06-patterns/03-event-bus.ts "order.*" "*.failed"   (Ctrl-C to stop)
// Then publish to the exchange "events" from the management UI with keys like order.placed or payment.failed.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const patterns = process.argv.slice(2).length ? process.argv.slice(2) : ['#'];
  const listener = await startListener(process.env.RABBITMQ_URL ?? 'amqp://localhost', { exchange: 'events', queue: 'my-service', patterns }, async (key, text) => {
    console.log(`${key}: ${text}`);
  });
  console.log(`Queue "my-service" listens to "events" for ${patterns.join(', ')}. Ctrl-C to stop.`);
  process.once('SIGINT', () => void listener.stop());
}

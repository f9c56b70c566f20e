// Exercise 6.2: publish/subscribe: every subscriber gets its own copy of every event
// Text: chapters/06-patterns/README.md   Check: npm run check 6.2   Hint: npm run hint 6.2
//
// subscribe(url, exchange, onEvent) must:
//   1. declare `exchange` as a durable fanout exchange,
//   2. declare a queue of its own for this subscriber: server-named ('') and exclusive, so that
//      the broker deletes it when the subscriber goes away, however it goes (stop, crash),
//   3. bind that queue to the exchange, and consume from it, calling onEvent(text) with the text
//      of each message, in the order they were published,
//   4. listen for 'error' on the connection,
//   5. return { stop }, where stop() closes the connection (and with it the queue).
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export interface Subscription {
  stop(): Promise<void>;
}

export async function subscribe(url: string, exchange: string, onEvent: (text: string) => void): Promise<Subscription> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: true });

  // TODO 1: declare this subscriber's own queue: let the broker name it, and make it exclusive.
  //         assertQueue() returns { queue }: the name the broker chose.
  // TODO 2: bind that queue to `exchange` (which key does a fanout exchange read?)
  // TODO 3: consume from it and call onEvent(msg.content.toString()) for each message (skip null).
  //         Which ack mode makes sense for a queue that dies with this connection?
  throw new Error('TODO: finish subscribe() in exercises/06-patterns/02-publish-subscribe.ts');

  return {
    async stop() {
      // TODO 4: close the connection
    },
  };
}

// On its own: npx tsx exercises/06-patterns/02-publish-subscribe.ts   (run it in two terminals; Ctrl-C to stop)
// Then publish to the exchange "news" from the management UI: both print every message.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const subscription = await subscribe(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'news', (text) => console.log(`news: ${text}`));
  console.log('Subscribed to "news". Ctrl-C to stop.');
  process.once('SIGINT', () => void subscription.stop());
}

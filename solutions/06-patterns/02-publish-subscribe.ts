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

  // '' asks the broker to name the queue (amq.gen-…); exclusive: only this connection may use it,
  // and the broker deletes it when the connection closes. Classic on purpose: quorum queues can
  // be neither exclusive nor server-named.
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, exchange, ''); // a fanout exchange ignores the key

  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      onEvent(msg.content.toString());
    },
    // The queue dies with this connection, so a redelivery after a crash could never happen:
    // automatic acks cost nothing here.
    { noAck: true },
  );

  return {
    async stop() {
      await connection.close(); // the exclusive queue goes with it
    },
  };
}

// On its own: npx tsx solutions/06-patterns/02-publish-subscribe.ts   (run it in two terminals; Ctrl-C to stop)
// Then publish to the exchange "news" from the management UI: both print every message.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const subscription = await subscribe(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'news', (text) => console.log(`news: ${text}`));
  console.log('Subscribed to "news". Ctrl-C to stop.');
  process.once('SIGINT', () => void subscription.stop());
}

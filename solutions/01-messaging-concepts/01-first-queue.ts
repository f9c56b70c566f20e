// Exercise 1.1: open a connection, declare your first queue, close
// Text: chapters/01-messaging-concepts/README.md   Check: npm run check 1.1   Hint: npm run hint 1.1
//
// declareQueue(url, name) must:
//   1. open a connection to `url` (it names the broker AND the virtual host: use it as given),
//      and a channel on that connection,
//   2. declare `name` as a durable quorum queue,
//   3. close the channel, then the connection, also when something failed, and let the error
//      reach the caller (a declaration the broker refuses must not look like a success).
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function declareQueue(url: string, name: string): Promise<void> {
  const connection = await amqp.connect(url);
  // Without a listener, an 'error' event (the broker going away) would end the whole process.
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    // Idempotent: creates the queue, or checks that the existing one has these settings.
    await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.close();
  } finally {
    await connection.close(); // in finally: also when the declaration failed
  }
}

// On its own: npx tsx solutions/01-messaging-concepts/01-first-queue.ts   (then look for it in the UI)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await declareQueue(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'first-queue');
  console.log('Declared "first-queue". See it at http://localhost:15672/#/queues (guest / guest).');
}

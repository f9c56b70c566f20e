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
  // TODO 1: open a connection to `url` with amqp.connect, and listen for its 'error' event
  // TODO 2: open a channel on it: connection.createChannel()
  // TODO 3: declare the queue: durable, with the argument 'x-queue-type': 'quorum'
  // TODO 4: close the channel, then the connection (in a finally block, so it also happens after an error)
  throw new Error('TODO: write declareQueue() in exercises/01-messaging-concepts/01-first-queue.ts');
}

// On its own: npx tsx exercises/01-messaging-concepts/01-first-queue.ts   (then look for it in the UI)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await declareQueue(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'first-queue');
  console.log('Declared "first-queue". See it at http://localhost:15672/#/queues (guest / guest).');
}

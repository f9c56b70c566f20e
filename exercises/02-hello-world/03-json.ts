// Exercise 2.3: send JSON, and say that it is JSON
// Text: chapters/02-hello-world/README.md   Check: npm run check 2.3   Hint: npm run hint 2.3
//
// sendJson(url, queue, value) must:
//   1. declare `queue` as a durable quorum queue (as in 2.1),
//   2. publish `value` to it once, as JSON text encoded as UTF-8, labelled with the content
//      type 'application/json',
//   3. publish it persistent, on a confirm channel: wait for the confirm, and reject if the
//      broker refuses the message (a nack),
//   4. close the connection it opened, also when something failed.
// readJson(message) must:
//   5. return the parsed value of a message labelled 'application/json',
//   6. throw an Error, naming the content type it got, when the message is labelled otherwise
//      or not at all,
//   7. throw an Error that says why when the body is not valid JSON.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function sendJson(url: string, queue: string, value: unknown): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // TODO 1: turn `value` into bytes: JSON text, encoded as UTF-8
    // TODO 2: publish them persistent, with contentType 'application/json', and wait for the confirm
    throw new Error('TODO: publish JSON in exercises/02-hello-world/03-json.ts');
  } finally {
    await connection.close();
  }
}

export interface ReceivedMessage {
  content: Buffer;
  properties: { contentType?: string };
}

export function readJson(message: ReceivedMessage): unknown {
  // TODO 3: throw an Error unless message.properties.contentType is 'application/json'
  // TODO 4: parse the body (UTF-8 text) and return the value; throw a clear Error when it is not valid JSON
  throw new Error('TODO: read JSON in exercises/02-hello-world/03-json.ts');
}

// On its own: npx tsx exercises/02-hello-world/03-json.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await sendJson(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'orders', { id: 1, city: 'São Paulo' });
  console.log('Sent {"id":1,"city":"São Paulo"} to "orders".');
}

// Exercise 2.1: send a message the broker promises to keep
// Text: chapters/02-hello-world/README.md   Check: npm run check 2.1   Hint: npm run hint 2.1
//
// send(url, queue, text) must:
//   1. declare `queue` as a durable quorum queue,
//   2. publish `text` to it, once, as a persistent message,
//   3. on a confirm channel, wait until the broker confirms it, and reject if the broker
//      refuses it (a nack),
//   4. close the connection it opened, also when something failed, and let the error reach
//      the caller (a queue the broker refuses to declare must not look like a success).
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function send(url: string, queue: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  // A refused declaration closes the channel with an 'error' event; without a listener it would end the process.
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
    await channel.waitForConfirms(); // rejects when the broker nacks
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/02-hello-world/01-send.ts "Hello!"
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await send(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'hello', process.argv[2] ?? 'Hello, RabbitMQ!');
  console.log('Sent, and the broker confirmed it.');
}

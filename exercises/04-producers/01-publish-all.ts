// Exercise 4.1: publish a batch, and know which part of it the broker kept
// Text: chapters/04-producers/README.md   Check: npm run check 4.1   Hint: npm run hint 4.1
//
// publishAll(url, queue, texts) must:
//   1. declare `queue` as a durable quorum queue,
//   2. publish every text, in order, as a persistent message on a confirm channel, all of
//      them before it waits for any confirm,
//   3. resolve only once the broker has confirmed every message,
//   4. reject when the broker refused (nacked) any of them, with an Error that says how many
//      of how many, e.g. "the broker refused 3 of 4 messages",
//   5. close the connection it opened, also when something failed; when the broker refuses
//      to declare `queue`, reject with the broker's error, without crashing on the
//      channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function publishAll(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // TODO 1: publish every text with channel.sendToQueue(queue, Buffer.from(text), { persistent: true }, callback).
    //         The callback gets null for an ack and an Error for a nack: turn each into a promise.
    // TODO 2: wait until EVERY message has its answer (Promise.allSettled), count the refused ones,
    //         and throw an Error that says how many when there are any.
    throw new Error('TODO: publish and wait for the confirms in exercises/04-producers/01-publish-all.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/04-producers/01-publish-all.ts one two three
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const texts = process.argv.length > 2 ? process.argv.slice(2) : ['order 1', 'order 2', 'order 3'];
  await publishAll(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'orders', texts);
  console.log(`The broker confirmed all ${texts.length} messages.`);
}

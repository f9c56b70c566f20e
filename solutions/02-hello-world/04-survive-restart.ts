// Exercise 2.4: messages that survive a broker restart
// Text: chapters/02-hello-world/README.md   Check: npm run check 2.4   Hint: npm run hint 2.4
//
// Quorum queues keep every message on disk whatever you ask. Classic queues make you choose,
// twice: this exercise uses one to feel both choices. sendDurable(url, queue, texts) must:
//   1. declare `queue` as a durable CLASSIC queue (argument 'x-queue-type': 'classic'),
//   2. publish every text, once and in order, as a persistent message on a confirm channel,
//   3. wait for the confirms, and reject if the broker refuses any of the messages (a nack),
//   4. close the connection it opened, also when something failed.
// The check restarts the broker (when the workbook started it) and counts what is left.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function sendDurable(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // Choice 1: the queue itself is written to disk and comes back after a restart.
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    for (const text of texts) {
      // Choice 2: each message is written to disk too. Without it, a durable queue comes back empty.
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/02-hello-world/04-survive-restart.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await sendDurable(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'audit-log', ['user 7 logged in', 'user 7 paid']);
  console.log('Sent 2 messages to "audit-log". Restart the broker and look again.');
}

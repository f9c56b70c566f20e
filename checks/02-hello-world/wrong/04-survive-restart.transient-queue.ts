// Known-wrong 2.4: declares the queue with durable: false.
import amqp from 'amqplib';

export async function sendDurable(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // Choice 1: the queue itself is written to disk and comes back after a restart.
    await channel.assertQueue(queue, { durable: false, arguments: { 'x-queue-type': 'classic' } });
    for (const text of texts) {
      // Choice 2: each message is written to disk too. Without it, a durable queue comes back empty.
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

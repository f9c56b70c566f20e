// Known-wrong 2.4: a durable queue, but messages published without persistent: true.
import amqp from 'amqplib';

export async function sendDurable(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // Choice 1: the queue itself is written to disk and comes back after a restart.
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    for (const text of texts) {
      // Choice 2: each message is written to disk too. Without it, a durable queue comes back empty.
      channel.sendToQueue(queue, Buffer.from(text));
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

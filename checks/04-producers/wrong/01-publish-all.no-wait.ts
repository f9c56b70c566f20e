// Known-wrong 4.1: a confirm channel, but it returns without waiting for the confirms.
import amqp from 'amqplib';

export async function publishAll(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (const text of texts) {
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    }
  } finally {
    await connection.close();
  }
}

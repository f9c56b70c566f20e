// Known-wrong 4.1: waitForConfirms() rejects at the first nack, and its error does not say how many were refused.
import amqp from 'amqplib';

export async function publishAll(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (const text of texts) {
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

// Known-wrong 4.1: a plain channel: nothing tells it whether the broker kept the messages.
import amqp from 'amqplib';

export async function publishAll(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (const text of texts) {
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    }
  } finally {
    await connection.close();
  }
}

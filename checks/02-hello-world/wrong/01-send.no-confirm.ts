// Known-wrong 2.1: a plain channel, and no wait for the broker's confirmation.
import amqp from 'amqplib';

export async function send(url: string, queue: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
  } finally {
    await connection.close();
  }
}

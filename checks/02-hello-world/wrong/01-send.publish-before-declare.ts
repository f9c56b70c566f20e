// Known-wrong 2.1: publishes first, declares the queue afterwards.
import amqp from 'amqplib';

export async function send(url: string, queue: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
    await channel.waitForConfirms();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  } finally {
    await connection.close();
  }
}

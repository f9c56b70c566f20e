// Known-wrong 2.1: the message is published without persistent: true.
import amqp from 'amqplib';

export async function send(url: string, queue: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    channel.sendToQueue(queue, Buffer.from(text));
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

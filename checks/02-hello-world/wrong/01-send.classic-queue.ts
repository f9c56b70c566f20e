// Known-wrong 2.1: a durable queue, but classic: the quorum argument is missing.
import amqp from 'amqplib';

export async function send(url: string, queue: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true });
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

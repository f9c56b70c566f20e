// Known-wrong 4.1: waits for the confirms, but catches the nack and only logs it.
import amqp from 'amqplib';

export async function publishAll(url: string, queue: string, texts: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (const text of texts) {
      channel.sendToQueue(queue, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    }
    try {
      await channel.waitForConfirms();
    } catch (err) {
      console.error('some messages were not confirmed:', (err as Error).message);
    }
  } finally {
    await connection.close();
  }
}

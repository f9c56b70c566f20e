// Known-wrong 4.4: ignores publish()'s return value: everything piles up in memory before the socket sends it.
import amqp from 'amqplib';

export async function publishMany(url: string, queue: string, count: number, makeBody: (i: number) => Buffer): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (let i = 0; i < count; i++) {
      channel.sendToQueue(queue, makeBody(i), { persistent: true });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

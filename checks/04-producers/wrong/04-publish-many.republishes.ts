// Known-wrong 4.4: takes false for "not sent": waits for 'drain', then publishes the same message again.
import amqp from 'amqplib';
import { once } from 'node:events';

export async function publishMany(url: string, queue: string, count: number, makeBody: (i: number) => Buffer): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (let i = 0; i < count; i++) {
      const body = makeBody(i);
      if (!channel.sendToQueue(queue, body, { persistent: true })) {
        await once(channel, 'drain');
        channel.sendToQueue(queue, body, { persistent: true }); // "it was not sent, try again"
      }
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

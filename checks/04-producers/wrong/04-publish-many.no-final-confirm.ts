// Known-wrong 4.4: waits for 'drain' but not for the confirms: closes while messages are still on their way.
import amqp from 'amqplib';
import { once } from 'node:events';

export async function publishMany(url: string, queue: string, count: number, makeBody: (i: number) => Buffer): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (let i = 0; i < count; i++) {
      const hasRoom = channel.sendToQueue(queue, makeBody(i), { persistent: true });
      // false: the message is in amqplib's buffer, which is now full. Let the socket catch up.
      if (!hasRoom) await once(channel, 'drain');
    }
  } finally {
    await connection.close();
  }
}

// Known-wrong 3.2: exclusive queues, as in the classic pub/sub tutorial: they are deleted when setupBroadcast() closes its connection.
import amqp from 'amqplib';

const EXCHANGE = 'notifications';
const SUBSCRIBERS = ['email', 'sms', 'push'];

export async function setupBroadcast(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'fanout', { durable: true });
    for (const queue of SUBSCRIBERS) {
      await channel.assertQueue(queue, { exclusive: true });
      // A fanout exchange ignores binding keys: '' says so. Every bound queue gets a copy.
      await channel.bindQueue(queue, EXCHANGE, '');
    }
  } finally {
    await connection.close();
  }
}

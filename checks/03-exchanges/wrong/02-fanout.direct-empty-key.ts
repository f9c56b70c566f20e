// Known-wrong 3.2: a direct exchange with every queue bound with the empty key, so only messages published with key "" reach them.
import amqp from 'amqplib';

const EXCHANGE = 'notifications';
const SUBSCRIBERS = ['email', 'sms', 'push'];

export async function setupBroadcast(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const queue of SUBSCRIBERS) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      // A fanout exchange ignores binding keys: '' says so. Every bound queue gets a copy.
      await channel.bindQueue(queue, EXCHANGE, '');
    }
  } finally {
    await connection.close();
  }
}

// Known-wrong 3.2: "sms" is declared but never bound, so it receives nothing.
import amqp from 'amqplib';

const EXCHANGE = 'notifications';
const SUBSCRIBERS = ['email', 'sms', 'push'];

export async function setupBroadcast(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'fanout', { durable: true });
    for (const queue of SUBSCRIBERS) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    await channel.bindQueue('email', EXCHANGE, '');
    await channel.bindQueue('push', EXCHANGE, '');
  } finally {
    await connection.close();
  }
}

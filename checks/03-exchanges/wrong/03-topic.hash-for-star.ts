// Known-wrong 3.3: "eu-orders" is bound with order.#.eu, which also takes "order.eu" and longer keys.
import amqp from 'amqplib';

const EXCHANGE = 'order-events';
const QUEUES = ['eu-orders', 'order-created', 'all-errors', 'audit'];

export async function bindTopics(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'topic', { durable: true });
    for (const queue of QUEUES) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    // * is exactly one word, # is zero or more words; words are separated by dots.
    await channel.bindQueue('eu-orders', EXCHANGE, 'order.#.eu');
    await channel.bindQueue('order-created', EXCHANGE, 'order.created.#');
    await channel.bindQueue('all-errors', EXCHANGE, '#.error');
    await channel.bindQueue('audit', EXCHANGE, '#');
  } finally {
    await connection.close();
  }
}

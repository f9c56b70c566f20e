// Known-wrong 3.6: "billing" is a direct exchange: the queues are bound with "", and payment events keep their keys.
import amqp from 'amqplib';

const SHOP = 'shop-events';
const BILLING = 'billing';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function wireBilling(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(SHOP, 'topic', { durable: true });
    for (const queue of ['billing-ledger', 'billing-fraud']) {
      await channel.assertQueue(queue, QUORUM);
    }
    await channel.assertExchange(BILLING, 'direct', { durable: true });
    await channel.bindQueue('billing-ledger', BILLING, '');
    await channel.bindQueue('billing-fraud', BILLING, '');
    // bindExchange(destination, source, pattern): like bindQueue, the receiving end comes first.
    await channel.bindExchange(BILLING, SHOP, 'payment.#');
  } finally {
    await connection.close();
  }
}

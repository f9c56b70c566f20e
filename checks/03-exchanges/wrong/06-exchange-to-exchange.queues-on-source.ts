// Known-wrong 3.6: binds both queues to "shop-events" directly (and to "billing"), with no exchange-to-exchange binding.
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
    await channel.assertExchange(BILLING, 'fanout', { durable: true });
    await channel.bindQueue('billing-ledger', BILLING, '');
    await channel.bindQueue('billing-fraud', BILLING, '');
    await channel.bindQueue('billing-ledger', SHOP, 'payment.#');
    await channel.bindQueue('billing-fraud', SHOP, 'payment.#');
  } finally {
    await connection.close();
  }
}

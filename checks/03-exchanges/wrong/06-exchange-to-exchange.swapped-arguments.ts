// Known-wrong 3.6: bindExchange(source, destination, …): the arguments swapped, so "shop-events" receives from "billing".
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
    await channel.bindExchange(SHOP, BILLING, 'payment.#');
  } finally {
    await connection.close();
  }
}

// Known-wrong 3.5: the alternate exchange and the "unrouted" queue are declared, but the queue is never bound to it.
import amqp from 'amqplib';

const EXCHANGE = 'payments';
const ALTERNATE = 'payments-unrouted';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function setupPayments(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // The safety net first. A fanout: whatever key an unroutable message has, it lands in "unrouted".
    await channel.assertExchange(ALTERNATE, 'fanout', { durable: true });
    await channel.assertQueue('unrouted', QUORUM);

    // amqplib sends alternateExchange as the exchange argument 'alternate-exchange'.
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true, alternateExchange: ALTERNATE });
    await channel.assertQueue('card-payments', QUORUM);
    await channel.assertQueue('bank-transfers', QUORUM);
    await channel.bindQueue('card-payments', EXCHANGE, 'card');
    await channel.bindQueue('bank-transfers', EXCHANGE, 'transfer');
  } finally {
    await connection.close();
  }
}

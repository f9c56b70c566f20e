// Exercise 3.6: give the billing team an exchange of its own, fed by the shop's events
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.6   Hint: npm run hint 3.6
//
// The shop publishes everything to the topic exchange "shop-events" ("order.created",
// "payment.captured", "payment.refund.issued"...). The billing team wants one exchange,
// "billing", that its own services publish to as well, and that feeds all its queues.
// wireBilling(url) must:
//   1. declare a durable fanout exchange "billing" and bind the two quorum queues
//      "billing-ledger" and "billing-fraud" to it (the queues are declared for you),
//   2. bind the exchange "billing" to the exchange "shop-events" with a pattern that takes
//      every payment event: "payment" followed by any number of words, even none,
//   3. bind the queues to "billing" only, never to "shop-events" directly,
//   4. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const SHOP = 'shop-events';
const BILLING = 'billing';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function wireBilling(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    await channel.assertExchange(SHOP, 'topic', { durable: true });
    for (const queue of ['billing-ledger', 'billing-fraud']) {
      await channel.assertQueue(queue, QUORUM);
    }
    await channel.assertExchange(BILLING, 'fanout', { durable: true });
    await channel.bindQueue('billing-ledger', BILLING, '');
    await channel.bindQueue('billing-fraud', BILLING, '');
    // bindExchange(destination, source, pattern): like bindQueue, the receiving end comes first.
    await channel.bindExchange(BILLING, SHOP, 'payment.#');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/03-exchanges/06-exchange-to-exchange.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await wireBilling(url);
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.publish(SHOP, 'payment.captured', Buffer.from('order 42 paid'), { persistent: true });
    channel.publish(SHOP, 'order.created', Buffer.from('order 43 created'), { persistent: true }); // not billing's business
    channel.publish(BILLING, 'manual-adjustment', Buffer.from('refund 5.00 EUR'), { persistent: true });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  console.log('"billing-ledger" and "billing-fraud" each hold the payment and the manual adjustment, not the order.');
}

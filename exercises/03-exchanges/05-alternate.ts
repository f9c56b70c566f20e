// Exercise 3.5: catch unroutable payments with an alternate exchange
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.5   Hint: npm run hint 3.5
//
// setupPayments(url) must:
//   1. declare a durable fanout exchange "payments-unrouted", a durable quorum queue
//      "unrouted", and bind the queue to that exchange,
//   2. declare a durable direct exchange "payments" whose alternate exchange is
//      "payments-unrouted", so that a message no binding of "payments" matches is handed
//      to "payments-unrouted" instead of being dropped,
//   3. bind the quorum queues "card-payments" (key "card") and "bank-transfers" (key
//      "transfer") to "payments"; the queues are declared for you,
//   4. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const EXCHANGE = 'payments';
const ALTERNATE = 'payments-unrouted';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function setupPayments(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    // TODO 1: the safety net: declare ALTERNATE (durable; which type takes every key?),
    //         declare the queue "unrouted" (QUORUM) and bind it to ALTERNATE
    // TODO 2: declare EXCHANGE as a durable direct exchange whose alternate exchange is ALTERNATE
    //         (the exchange argument 'alternate-exchange'; amqplib's option for it is alternateExchange)
    await channel.assertQueue('card-payments', QUORUM);
    await channel.assertQueue('bank-transfers', QUORUM);
    // TODO 3: bind "card-payments" to EXCHANGE with the key 'card', "bank-transfers" with 'transfer'
    throw new Error('TODO: finish setupPayments() in exercises/03-exchanges/05-alternate.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/03-exchanges/05-alternate.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await setupPayments(url);
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.publish(EXCHANGE, 'card', Buffer.from('42.00 EUR by card'), { persistent: true });
    channel.publish(EXCHANGE, 'crypto', Buffer.from('0.001 BTC'), { persistent: true }); // nobody takes crypto
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  console.log('Published a card payment and a crypto one. The crypto payment is waiting in "unrouted".');
}

// Exercise 4.2: find out when nobody could take your message
// Text: chapters/04-producers/README.md   Check: npm run check 4.2   Hint: npm run hint 4.2
//
// publishOrReport(url, exchange, routingKey, text) must:
//   1. publish `text` as a persistent message to `exchange` with `routingKey`, on a confirm
//      channel, with mandatory: true, so the broker hands back a message no queue is bound to take,
//   2. listen for the channel's 'return' event BEFORE publishing,
//   3. wait for the confirm (a returned message is acked too: basic.return comes first, then
//      the ack), and reject when the broker refuses the message (a nack),
//   4. resolve 'returned' if the message came back, 'routed' if it did not,
//   5. not declare `exchange`, which already exists: when it does not, reject,
//   6. close the connection it opened, also when something failed, without crashing on the
//      channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export type Outcome = 'routed' | 'returned';

export async function publishOrReport(url: string, exchange: string, routingKey: string, text: string): Promise<Outcome> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // Publishing to an exchange that does not exist closes the channel: the wait for the
    // confirm rejects ("channel closed"), and the channel emits 'error', which crashes the
    // process when nobody listens to it.
    channel.on('error', () => {});
    let returned = false;
    channel.on('return', () => {
      returned = true; // arrives before the ack of the same message
    });
    channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, mandatory: true });
    await channel.waitForConfirms(); // by now, a 'return' for this message has been emitted
    return returned ? 'returned' : 'routed';
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/04-producers/02-publish-or-report.ts order.created
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  // The exercise's setup: an exchange "shop" and a queue "orders" bound with "order.created".
  const setup = await amqp.connect(url);
  const ch = await setup.createChannel();
  await ch.assertExchange('shop', 'direct', { durable: true });
  await ch.assertQueue('orders', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue('orders', 'shop', 'order.created');
  await setup.close();
  const key = process.argv[2] ?? 'order.created';
  console.log(`"${key}": ${await publishOrReport(url, 'shop', key, 'Hello, shop!')}`);
}

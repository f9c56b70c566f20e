// Exercise 3.3: subscribe queues to order events with topic patterns
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.3   Hint: npm run hint 3.3
//
// The "order-events" topic exchange receives keys like "order.created.eu" (entity, event,
// region), sometimes longer ("order.created.eu.paris"), and errors like "payment.error".
// bindTopics(url) declares the exchange and four queues (done for you) and must bind, with
// one binding per queue:
//   1. "eu-orders":     every order event from the EU: exactly three words, "order", any
//                       event, "eu" (so "order.created.eu", not "order.eu" nor "order.created.eu.paris"),
//   2. "order-created": every "order.created" event, whatever follows, even nothing
//                       ("order.created", "order.created.us", "order.created.eu.paris"),
//   3. "all-errors":    every key whose LAST word is "error", at any depth, including "error" alone,
//   4. "audit":         every message, whatever its key (even the empty key),
// and must
//   5. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const EXCHANGE = 'order-events';
const QUEUES = ['eu-orders', 'order-created', 'all-errors', 'audit'];

export async function bindTopics(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    await channel.assertExchange(EXCHANGE, 'topic', { durable: true });
    for (const queue of QUEUES) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    // * is exactly one word, # is zero or more words; words are separated by dots.
    // TODO 1: bind "eu-orders":     await channel.bindQueue('eu-orders', EXCHANGE, '<pattern>')
    // TODO 2: bind "order-created"
    // TODO 3: bind "all-errors"
    // TODO 4: bind "audit"
    throw new Error('TODO: bind the four queues in exercises/03-exchanges/03-topic.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/03-exchanges/03-topic.ts
// (Bindings add up: after changing a pattern, npm run reset 3.3 drops the old ones.)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await bindTopics(url);
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    for (const key of ['order.created.eu', 'order.eu', 'order.created.eu.paris', 'payment.error', 'error']) {
      channel.publish(EXCHANGE, key, Buffer.from(key), { persistent: true });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  console.log('Published 5 order events. See which queue got which in the management UI (Get messages).');
}

// Exercise 1.2: wire an exchange to a queue
// Text: chapters/01-messaging-concepts/README.md   Check: npm run check 1.2   Hint: npm run hint 1.2
//
// wireUp(url) must, on one connection and channel:
//   1. declare a durable direct exchange "notifications",
//   2. declare a durable quorum queue "emails",
//   3. bind "emails" to "notifications" with the routing key "email",
//   4. close the connection, also when something failed, and let the error reach the caller.
// Afterwards, a message published to "notifications" with routing key "email" lands in
// "emails"; one with any other routing key ("sms") is dropped: nothing is bound for it.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function wireUp(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    // A direct exchange hands a message to the queues bound with exactly its routing key.
    await channel.assertExchange('notifications', 'direct', { durable: true });
    await channel.assertQueue('emails', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // bindQueue(queue, exchange, routing key): "what reaches notifications as 'email' goes to emails".
    await channel.bindQueue('emails', 'notifications', 'email');
    await channel.close();
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/01-messaging-concepts/02-wire-up.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await wireUp(process.env.RABBITMQ_URL ?? 'amqp://localhost');
  console.log('Wired notifications --email--> emails.');
  console.log('Try it: http://localhost:15672/#/exchanges/%2F/notifications, "Publish message" with routing key email, then sms.');
}

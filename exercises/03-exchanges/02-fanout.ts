// Exercise 3.2: broadcast every notification to every channel with a fanout exchange
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.2   Hint: npm run hint 3.2
//
// setupBroadcast(url) must:
//   1. declare a durable fanout exchange named "notifications",
//   2. declare three durable quorum queues: "email", "sms" and "push",
//   3. bind all three to "notifications", so that each of them receives a copy of every
//      message published there, whatever its routing key,
//   4. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const EXCHANGE = 'notifications';
const SUBSCRIBERS = ['email', 'sms', 'push'];

export async function setupBroadcast(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    // TODO 1: declare EXCHANGE as a durable exchange of the type that copies every message
    //         to every bound queue
    for (const queue of SUBSCRIBERS) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      // TODO 2: bind the queue to EXCHANGE (which binding key does this exchange type read?)
    }
    throw new Error('TODO: finish setupBroadcast() in exercises/03-exchanges/02-fanout.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/03-exchanges/02-fanout.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await setupBroadcast(url);
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.publish(EXCHANGE, 'user.signup', Buffer.from('Welcome, Ana!'), { persistent: true });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  console.log('Published one notification. "email", "sms" and "push" each hold a copy: see the management UI.');
}

// Exercise 5.7: messages that go stale
// Text: chapters/05-consumers/README.md   Check: npm run check 5.7   Hint: npm run hint 5.7
//
// sendExpiring(url, queue, text, ttlSeconds) must:
//   1. declare `queue` as a durable quorum queue (no queue-wide TTL: each message brings its own),
//   2. publish `text` as a persistent message that expires `ttlSeconds` after it entered the queue:
//      the `expiration` property, a string of WHOLE milliseconds (ttlSeconds may have decimals:
//      2.5 s is '2500', 2.01 s is '2010'),
//   3. publish on a confirm channel and wait for the broker's confirm: reject when the message is not
//      confirmed, because the broker refuses it (a nack) or the connection is lost before the confirm,
//   4. listen for 'error' on the connection and the channel, and close the connection, also when
//      something failed (the broker refused the declaration or the message).
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function sendExpiring(url: string, queue: string, text: string, ttlSeconds: number): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // Milliseconds, as a string of digits: '60000' is a minute, '60' is 60 ms. Round, because
    // 2.01 * 1000 is 2009.9999999999998 in JavaScript, and the broker refuses a fraction.
    const expiration = String(Math.round(ttlSeconds * 1000));
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true, expiration });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/05-consumers/07-expiration.ts "OTP 123456" 30
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ttl = Number(process.argv[3] ?? 30);
  await sendExpiring(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'codes', process.argv[2] ?? 'OTP 123456', ttl);
  console.log(`Sent. It disappears from "codes" ${ttl} s from now, if nothing stands before it.`);
}

// Known-wrong 5.7: the TTL in seconds, where the broker reads milliseconds.
import amqp from 'amqplib';

export async function sendExpiring(url: string, queue: string, text: string, ttlSeconds: number): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true, expiration: String(ttlSeconds) }); // as in kombu
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

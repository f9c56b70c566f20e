// Known-wrong 1.2: declares a fanout exchange, which ignores routing keys and copies every message to every bound queue.
import amqp from 'amqplib';

export async function wireUp(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange('notifications', 'fanout', { durable: true });
    await channel.assertQueue('emails', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue('emails', 'notifications', 'email');
    await channel.close();
  } finally {
    await connection.close();
  }
}

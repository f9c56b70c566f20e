// Known-wrong 1.2: declares the exchange and the queue but never binds them (relying on the default exchange's
// queue-name routing, which only works for messages published to "" with routing key "emails").
import amqp from 'amqplib';

export async function wireUp(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange('notifications', 'direct', { durable: true });
    await channel.assertQueue('emails', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.close();
  } finally {
    await connection.close();
  }
}

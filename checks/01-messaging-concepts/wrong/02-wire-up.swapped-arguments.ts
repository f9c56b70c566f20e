// Known-wrong 1.2: calls bindQueue(exchange, queue, key), the arguments swapped; amqplib's order is bindQueue(queue, exchange, key).
import amqp from 'amqplib';

export async function wireUp(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange('notifications', 'direct', { durable: true });
    await channel.assertQueue('emails', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue('notifications', 'emails', 'email');
    await channel.close();
  } finally {
    await connection.close();
  }
}


// Known-wrong 1.1: ignores the url argument and connects to a hard-coded 'amqp://localhost' (vhost "/").
import amqp from 'amqplib';

export async function declareQueue(url: string, name: string): Promise<void> {
  const connection = await amqp.connect('amqp://localhost');
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.close();
  } finally {
    await connection.close();
  }
}

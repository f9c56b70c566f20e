// Known-wrong 1.1: declares the queue right, but never closes the channel or the connection.
import amqp from 'amqplib';

export async function declareQueue(url: string, name: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
}

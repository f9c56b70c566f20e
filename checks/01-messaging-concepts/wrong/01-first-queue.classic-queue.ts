// Known-wrong 1.1: a durable queue, but classic: the x-queue-type argument is missing.
import amqp from 'amqplib';

export async function declareQueue(url: string, name: string): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue(name, { durable: true });
    await channel.close();
  } finally {
    await connection.close();
  }
}

// Known-wrong 3.1: binds each queue with its own name as binding key ("direct means the key is the queue name").
import amqp from 'amqplib';

const EXCHANGE = 'app-logs';

export async function setupLogRouting(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
    for (const queue of ['alerts', 'archive']) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await channel.bindQueue(queue, EXCHANGE, queue);
    }
  } finally {
    await connection.close();
  }
}

export async function publishLog(url: string, severity: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.publish(EXCHANGE, severity, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

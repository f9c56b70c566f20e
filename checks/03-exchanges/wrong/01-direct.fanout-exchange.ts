// Known-wrong 3.1: declares "app-logs" as a fanout exchange, so every queue gets every severity.
import amqp from 'amqplib';

const EXCHANGE = 'app-logs';

export async function setupLogRouting(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'fanout', { durable: true });
    for (const queue of ['alerts', 'archive']) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    await channel.bindQueue('alerts', EXCHANGE, 'error');
    for (const severity of ['info', 'warning', 'error']) {
      await channel.bindQueue('archive', EXCHANGE, severity);
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

// Known-wrong 3.4: "eu-pdf" is bound with the routing key "pdf.eu" and no header arguments, so it matches every job.
import amqp from 'amqplib';

const EXCHANGE = 'print-jobs';

export async function bindPrintJobs(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.assertExchange(EXCHANGE, 'headers', { durable: true });
    for (const queue of ['eu-pdf', 'rush']) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    // The binding key is ignored ('' says so); the conditions are the binding's arguments.
    // x-match says how to combine them: 'all' (every header must match) or 'any' (one is enough).
    await channel.bindQueue('eu-pdf', EXCHANGE, 'pdf.eu');
    await channel.bindQueue('rush', EXCHANGE, '', { 'x-match': 'any', priority: 'high', customer: 'vip' });
  } finally {
    await connection.close();
  }
}

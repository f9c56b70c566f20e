// Known-wrong 3.4: "rush" is bound without x-match, and the default is all, so only jobs that are high priority AND vip get in.
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
    await channel.bindQueue('eu-pdf', EXCHANGE, '', { 'x-match': 'all', format: 'pdf', region: 'eu' });
    await channel.bindQueue('rush', EXCHANGE, '', { priority: 'high', customer: 'vip' });
  } finally {
    await connection.close();
  }
}

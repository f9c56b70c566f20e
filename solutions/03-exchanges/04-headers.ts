// Exercise 3.4: route print jobs by their headers, with x-match all and any
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.4   Hint: npm run hint 3.4
//
// Print jobs carry their properties in message headers (format, region, priority,
// customer); their routing key means nothing. bindPrintJobs(url) must:
//   1. declare a durable headers exchange named "print-jobs",
//   2. declare two durable quorum queues, "eu-pdf" and "rush" (done for you),
//   3. bind "eu-pdf" so that it receives the jobs with format "pdf" AND region "eu" (both),
//   4. bind "rush" so that it receives the jobs with priority "high" OR customer "vip" (either),
//   5. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const EXCHANGE = 'print-jobs';

export async function bindPrintJobs(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    await channel.assertExchange(EXCHANGE, 'headers', { durable: true });
    for (const queue of ['eu-pdf', 'rush']) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    // The binding key is ignored ('' says so); the conditions are the binding's arguments.
    // x-match says how to combine them: 'all' (every header must match) or 'any' (one is enough).
    await channel.bindQueue('eu-pdf', EXCHANGE, '', { 'x-match': 'all', format: 'pdf', region: 'eu' });
    await channel.bindQueue('rush', EXCHANGE, '', { 'x-match': 'any', priority: 'high', customer: 'vip' });
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/03-exchanges/04-headers.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await bindPrintJobs(url);
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const jobs = [
      { format: 'pdf', region: 'eu' },
      { format: 'pdf', region: 'us', customer: 'vip' },
      { format: 'docx', region: 'eu' },
    ];
    for (const headers of jobs) {
      channel.publish(EXCHANGE, '', Buffer.from(JSON.stringify(headers)), { persistent: true, headers });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
  console.log('Published 3 print jobs. "eu-pdf" has the first, "rush" the second, nobody the third.');
}

// Exercise 3.1: route log lines by severity with a direct exchange
// Text: chapters/03-exchanges/README.md   Check: npm run check 3.1   Hint: npm run hint 3.1
//
// setupLogRouting(url) must:
//   1. declare a durable direct exchange named "app-logs",
//   2. declare two durable quorum queues, "alerts" and "archive",
//   3. bind "alerts" so that it receives the "error" log lines only,
//   4. bind "archive" so that it receives "info", "warning" and "error" (but not "debug"),
//   5. close the connection it opened, also when the broker refuses a declaration, and
//      then reject with the broker's error, without crashing on the channel's 'error' event.
// publishLog(url, severity, text) must:
//   6. publish `text` (UTF-8) to "app-logs" with the severity as routing key, persistent,
//   7. on a confirm channel: resolve once the broker confirms the message, and reject when
//      the broker refuses it (a nack),
//   8. close its connection, whether the message was confirmed or refused.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';

const EXCHANGE = 'app-logs';

export async function setupLogRouting(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    // TODO 1: declare the exchange: channel.assertExchange(EXCHANGE, <type>, { durable: true })
    for (const queue of ['alerts', 'archive']) {
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    }
    // TODO 2: bind "alerts" to the exchange: channel.bindQueue(queue, exchange, bindingKey)
    // TODO 3: bind "archive" for each severity it must receive (one binding per key)
    throw new Error('TODO: finish setupLogRouting() in exercises/03-exchanges/01-direct.ts');
  } finally {
    await connection.close();
  }
}

export async function publishLog(url: string, severity: string, text: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // TODO 4: publish Buffer.from(text) to EXCHANGE with the severity as routing key
    //         (channel.publish, not sendToQueue), persistent; then await the confirm.
    throw new Error('TODO: finish publishLog() in exercises/03-exchanges/01-direct.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/03-exchanges/01-direct.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  await setupLogRouting(url);
  for (const severity of ['debug', 'info', 'warning', 'error']) {
    await publishLog(url, severity, `a ${severity} line`);
  }
  console.log('Published debug, info, warning and error. Look at "alerts" and "archive" in the management UI.');
}

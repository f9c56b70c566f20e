// Exercise 4.4: publish a lot, at the pace the connection can take
// Text: chapters/04-producers/README.md   Check: npm run check 4.4   Hint: npm run hint 4.4
//
// publishMany(url, queue, count, makeBody) must:
//   1. declare `queue` as a durable quorum queue,
//   2. publish makeBody(0) … makeBody(count - 1), each once and in order, as persistent
//      messages on a confirm channel,
//   3. respect back-pressure: when publish()/sendToQueue() returns false, the message IS
//      buffered (do not send it again), but the buffer is full: wait for the channel's
//      'drain' event before publishing the next one,
//   4. resolve once the broker has confirmed every message, and reject when it refused any
//      (a nack),
//   5. close the connection it opened, also when something failed; when the broker refuses
//      to declare `queue`, reject with the broker's error, without crashing on the
//      channel's 'error' event.
import amqp from 'amqplib';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';

export async function publishMany(url: string, queue: string, count: number, makeBody: (i: number) => Buffer): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // A refused declaration closes the channel: the call that caused it rejects with the
    // broker's reason, which reaches the caller. The channel also emits 'error', and an
    // 'error' event nobody listens to crashes the process.
    channel.on('error', () => {});
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (let i = 0; i < count; i++) {
      const hasRoom = channel.sendToQueue(queue, makeBody(i), { persistent: true });
      // false: the message is in amqplib's buffer, which is now full. Let the socket catch up.
      if (!hasRoom) await once(channel, 'drain');
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx solutions/04-producers/04-publish-many.ts 20000
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const count = Number(process.argv[2] ?? 20_000);
  const started = Date.now();
  await publishMany(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'bulk', count, (i) => Buffer.alloc(4096, `message ${i} `));
  console.log(`${count} messages of 4 KB confirmed in ${Date.now() - started} ms.`);
}

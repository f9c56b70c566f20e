// Chapter 5's live demo, in two parts:
//   1. the prefetch bounds how many messages an async consumer works on at the same time
//      (and noAck makes the broker ignore it);
//   2. a message expires only when it reaches the head of its queue.
// Run it with: npm run chapter 5
import amqp, { type Channel, type ChannelModel } from 'amqplib';

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    await prefetchInAction(connection, say);
    await expiryAtTheHead(connection, say);
  } finally {
    await connection.close();
  }
}

// ---- 1. prefetch ----------------------------------------------------------------

async function prefetchInAction(connection: ChannelModel, say: (line: string) => void): Promise<void> {
  const queue = 'demo.jobs';
  say(`Part 1: 12 jobs in the quorum queue "${queue}"; each takes 100 ms (think of an HTTP call).`);
  for (const [prefetch, noAck] of [
    [1, false],
    [4, false],
    [4, true],
  ] as const) {
    const channel = await connection.createChannel();
    await channel.assertQueue(queue, QUORUM);
    await publishJobs(connection, queue, 12);
    const { maxInFlight, ms } = await work(channel, queue, prefetch, noAck, 12);
    await channel.close();
    say(
      `prefetch ${prefetch}${noAck ? ', noAck: true' : ''}: at most ${maxInFlight === 1 ? '1 job' : `${maxInFlight} jobs`} at the same time, all 12 done in ${ms} ms` +
        (noAck ? '. The prefetch was ignored: a consumer that does not ack has nothing to count.' : ''),
    );
  }
  say('amqplib never waits for your callback: the prefetch is the only bound on how much runs at once.');
}

async function publishJobs(connection: ChannelModel, queue: string, count: number): Promise<void> {
  const channel = await connection.createConfirmChannel();
  for (let i = 1; i <= count; i++) channel.sendToQueue(queue, Buffer.from(`job-${i}`), { persistent: true });
  await channel.waitForConfirms();
  await channel.close();
}

/** Consumes `count` messages with the given prefetch, and reports how many ran at once. */
async function work(channel: Channel, queue: string, prefetch: number, noAck: boolean, count: number) {
  const started = Date.now();
  let inFlight = 0;
  let maxInFlight = 0;
  let done = 0;
  let finished: () => void = () => undefined;
  const allDone = new Promise<void>((resolve) => (finished = resolve));
  const slowWork = () => new Promise((resolve) => setTimeout(resolve, 100));

  // #region consume
  await channel.prefetch(prefetch); // at most `prefetch` unacknowledged messages on this consumer
  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      // Not awaited: amqplib calls this function again as soon as the next message arrives.
      slowWork().then(() => {
        inFlight--;
        if (!noAck) channel.ack(msg); // frees a slot: the broker sends the next message
        if (++done === count) finished();
      });
    },
    { noAck },
  );
  // #endregion

  await allDone;
  await channel.cancel(consumerTag);
  return { maxInFlight, ms: Date.now() - started };
}

// ---- 2. expiry at the head ------------------------------------------------------

async function expiryAtTheHead(connection: ChannelModel, say: (line: string) => void): Promise<void> {
  const queue = 'demo.codes';
  const channel = await connection.createConfirmChannel();
  await channel.assertQueue(queue, QUORUM);
  const count = async () => (await channel.checkQueue(queue)).messageCount;
  say(`Part 2: per-message TTLs in the quorum queue "${queue}".`);

  // #region expiring
  // A newsletter that may wait an hour, then a one-time password valid for 0.3 s.
  channel.sendToQueue(queue, Buffer.from('newsletter'), { persistent: true, expiration: '3600000' });
  channel.sendToQueue(queue, Buffer.from('OTP 123456'), { persistent: true, expiration: '300' });
  await channel.waitForConfirms();
  // #endregion
  say('Published "newsletter" (expiration \'3600000\', 1 h), then "OTP 123456" (expiration \'300\', 0.3 s) behind it.');
  await new Promise((resolve) => setTimeout(resolve, 600));
  say(`0.6 s later the queue still counts ${await count()} messages: the OTP has expired, but it is not at the head.`);
  const head = await channel.get(queue, { noAck: true });
  say(`A consumer takes the head: "${head ? head.content.toString() : 'nothing'}". Now the OTP is at the head, expired, and dropped: ${await count()} message(s) left.`);
  say('No consumer ever received the expired OTP. But until then it was counted, kept, and (with a dead-letter exchange) not yet dead-lettered.');

  // The same again, left in place for you to look at in the management UI.
  channel.sendToQueue(queue, Buffer.from('newsletter'), { persistent: true, expiration: '3600000' });
  channel.sendToQueue(queue, Buffer.from('OTP 654321'), { persistent: true, expiration: '300' });
  await channel.waitForConfirms();
  // One TTL for every message of a queue keeps them in expiry order: a queue argument (or a policy).
  await channel.assertQueue('demo.otp', { ...QUORUM, arguments: { ...QUORUM.arguments, 'x-message-ttl': 30000 } });
  // A queue can expire too: unused (no consumer, no get) for 60 s, the broker deletes it.
  await channel.assertQueue('demo.temporary', { ...QUORUM, arguments: { ...QUORUM.arguments, 'x-expires': 60000 } });
  await channel.close();
  say(`Left for you: "${queue}" holds a newsletter and, behind it, an OTP that expires 0.3 s after it was sent. The count will keep saying 2.`);
  say('"demo.otp" has x-message-ttl 30000 (one TTL for all its messages); "demo.temporary" has x-expires 60000: refresh the Queues page in a minute, it is gone.');
}

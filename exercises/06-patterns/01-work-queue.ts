// Exercise 6.1: a work queue that shares tasks fairly between a slow and a fast worker
// Text: chapters/06-patterns/README.md   Check: npm run check 6.1   Hint: npm run hint 6.1
//
// startWorker(url, queue, work) must:
//   1. declare `queue` as a durable quorum queue (every worker declares it, with the same options),
//   2. take at most ONE unacknowledged task at a time: await channel.prefetch(1), before consume(),
//   3. consume with manual acks, call `work(task)` with the text of each task, and ack it only when
//      the promise work() returns resolves (reject it with requeue when it rejects, so that it goes
//      back to the queue and is tried again),
//   4. listen for 'error' on the connection, and skip the null message the consumer gets when the
//      broker cancels it (its queue was deleted),
//   5. return { stop }, where stop() cancels the consumer, then closes the channel and the
//      connection: a task still in progress is not acked, and goes back to the queue.
import amqp from 'amqplib';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Worker {
  stop(): Promise<void>;
}

export async function startWorker(url: string, queue: string, work: (task: string) => Promise<void>): Promise<Worker> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

  // TODO 1: limit this worker to one unacknowledged task at a time (before consume: why?)
  // TODO 2: consume `queue` with { noAck: false }. For each message (skip null), call
  //         work(msg.content.toString()); ack the message when its promise resolves,
  //         reject it with requeue when it rejects (channel.reject(msg, true)). Keep the
  //         consumerTag that consume() returns.
  throw new Error('TODO: consume in exercises/06-patterns/01-work-queue.ts');

  return {
    async stop() {
      // TODO 3: cancel the consumer, then close the channel, then the connection
    },
  };
}

// On its own: npx tsx exercises/06-patterns/01-work-queue.ts 500   (ms per task; Ctrl-C to stop)
// Start two, one with 100 and one with 2000, publish tasks to "tasks" from the management UI, and watch the split.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ms = Number(process.argv[2] ?? 1000);
  const worker = await startWorker(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'tasks', async (task) => {
    console.log(`working on "${task}" for ${ms} ms`);
    await sleep(ms);
  });
  console.log(`Waiting for tasks on "tasks" (${ms} ms each). Ctrl-C to stop.`);
  process.once('SIGINT', () => void worker.stop());
}

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

  // Fair dispatch: the broker sends this worker its next task only once it has acked the last one,
  // so a busy worker is skipped and an idle one gets the work. The limit applies to consumers
  // started after it: it must come before consume().
  await channel.prefetch(1);

  const { consumerTag } = await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer (the queue was deleted)
      work(msg.content.toString()).then(
        () => channel.ack(msg), // done: the broker forgets the task and sends the next one
        (err) => {
          console.error(`task failed, it goes back to the queue: ${err}`);
          // Requeued. reject, not nack: on RabbitMQ 4.3 only a reject counts towards the quorum
          // queue's delivery limit, so that a task failing for ever is stopped some day.
          channel.reject(msg, true);
        },
      );
    },
    { noAck: false },
  );

  return {
    async stop() {
      await channel.cancel(consumerTag);
      await channel.close(); // waits until the broker has taken every ack sent before it
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/06-patterns/01-work-queue.ts 500   (ms per task; Ctrl-C to stop)
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

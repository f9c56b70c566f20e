// Chapter 6's live demo: two workers of different speeds share 20 tasks, first with
// prefetch 1 (fair dispatch), then without a limit (round robin); then one RPC round trip
// with Direct Reply-to, and a call that times out and gets its reply too late.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

type Say = (line: string) => void;
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };
const TASKS = 20;

export async function demo(url: string, say: Say): Promise<void> {
  say(`Two workers share ${TASKS} tasks: "fast" needs 10 ms a task, "slow" needs 100 ms.`);
  await shareTasks(url, say, 'tasks', 1);
  await shareTasks(url, say, 'tasks-no-prefetch', undefined);
  await rpcRoundTrip(url, say);
  await leaveSomethingToLookAt(url, say);
}

// #region worker
// A worker that does one task at a time, like a process with one CPU, and acks each task
// when it is done. With `prefetch`, the broker sends it at most that many unacked tasks.
async function startWorker(url: string, queue: string, msPerTask: number, prefetch: number | undefined, done: string[]) {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, QUORUM);
  if (prefetch !== undefined) await channel.prefetch(prefetch); // before consume()

  let previous = Promise.resolve();
  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return;
      previous = previous.then(async () => {
        await sleep(msPerTask); // the "work"
        done.push(msg.content.toString());
        channel.ack(msg); // only now may the broker send the next task (with prefetch 1)
      });
    },
    { noAck: false },
  );
  return connection;
}
// #endregion

async function shareTasks(url: string, say: Say, queue: string, prefetch: number | undefined) {
  const fast: string[] = [];
  const slow: string[] = [];
  const workers = [await startWorker(url, queue, 100, prefetch, slow), await startWorker(url, queue, 10, prefetch, fast)];
  try {
    const started = Date.now();
    let fastLastDoneAt = started;
    let slowDoneThen = 0;
    await publishTasks(url, queue);
    for (let seen = 0; fast.length + slow.length < TASKS; await sleep(5)) {
      if (fast.length > seen) {
        seen = fast.length;
        fastLastDoneAt = Date.now();
        slowDoneThen = slow.length;
      }
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(2);
    if (prefetch !== undefined) {
      say(`prefetch ${prefetch}, on "${queue}": fast did ${fast.length} tasks, slow did ${slow.length}; all done in ${seconds} s.`);
      say('  Each worker gets its next task only after acking the last one, so tasks go to whoever is free.');
    } else {
      say(`no prefetch, on "${queue}": fast did ${fast.length} tasks, slow did ${slow.length}; all done in ${seconds} s.`);
      say(`  The broker dealt the tasks out in turn, as they arrived. The fast worker had nothing left to do after ${((fastLastDoneAt - started) / 1000).toFixed(2)} s, while ${slow.length - slowDoneThen} tasks were still waiting inside the slow one.`);
    }
  } finally {
    for (const connection of workers) await connection.close();
  }
}

// #region publish
async function publishTasks(url: string, queue: string) {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, QUORUM);
    for (let i = 1; i <= TASKS; i++) {
      channel.sendToQueue(queue, Buffer.from(`task ${i}`), { persistent: true });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}
// #endregion

async function rpcRoundTrip(url: string, say: Say) {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    // The server: answers in upper case; takes 300 ms for anything that starts with "slow".
    const server = await connection.createChannel();
    await server.assertQueue('rpc', QUORUM);
    await server.consume('rpc', (msg) => {
      if (msg === null) return;
      const text = msg.content.toString();
      void sleep(text.startsWith('slow') ? 300 : 0).then(() => {
        server.sendToQueue(msg.properties.replyTo, Buffer.from(text.toUpperCase()), { correlationId: msg.properties.correlationId });
        server.ack(msg);
      });
    });

    // #region rpc-client
    const channel = await connection.createChannel();
    const waiting = new Map<string, (reply: string) => void>();
    // Direct Reply-to: consume the pseudo-queue, in no-ack mode, BEFORE the first request.
    await channel.consume(
      'amq.rabbitmq.reply-to',
      (msg) => {
        if (msg === null) return;
        const resolve = waiting.get(msg.properties.correlationId);
        if (!resolve) {
          say(`  a reply nobody waits for arrived ("${msg.content.toString()}"), too late: ignored`);
          return;
        }
        waiting.delete(msg.properties.correlationId);
        resolve(msg.content.toString());
      },
      { noAck: true },
    );

    const call = (request: string, timeoutMs: number) =>
      new Promise<string>((resolve, reject) => {
        const correlationId = randomUUID();
        const timer = setTimeout(() => {
          waiting.delete(correlationId);
          reject(new Error(`no reply within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(correlationId, (reply) => {
          clearTimeout(timer);
          resolve(reply);
        });
        channel.sendToQueue('rpc', Buffer.from(request), { correlationId, replyTo: 'amq.rabbitmq.reply-to' });
      });
    // #endregion

    let started = Date.now();
    say(`RPC: call("hello") → "${await call('hello', 1000)}" in ${Date.now() - started} ms, through Direct Reply-to`);
    started = Date.now();
    await call('slow hello', 100).catch((err: Error) => say(`RPC: call("slow hello") with a 100 ms timeout → rejected after ${Date.now() - started} ms: ${err.message}`));
    await sleep(400); // give the late reply time to arrive, to watch it being ignored
  } finally {
    await connection.close();
  }
}

async function leaveSomethingToLookAt(url: string, say: Say) {
  await publishTasks(url, 'tasks');
  say(`left ${TASKS} tasks waiting in "tasks", with no worker. Open the queue in the management UI, or start two workers of your own, in two terminals:`);
  say(`  RABBITMQ_URL=${url} npx tsx solutions/06-patterns/01-work-queue.ts 100`);
  say(`  RABBITMQ_URL=${url} npx tsx solutions/06-patterns/01-work-queue.ts 1000`);
}

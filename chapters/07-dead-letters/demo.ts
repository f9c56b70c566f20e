// Chapter 7's live demo, in three parts:
//   1. a queue that exists already gets dead-lettering: the broker refuses a redeclaration with a new
//      argument (406), a policy gives it instead; then the four triggers, and the x-death of each
//      dead letter;
//   2. one wait queue for every delay keeps a short retry behind a long one; one queue per delay
//      does not;
//   3. left for the management UI: a dead letter nobody can route, kept by at-least-once
//      dead-lettering and lost by at-most-once.
// Run it with: npm run chapter 7
import amqp, { type ChannelModel, type Message } from 'amqplib';

/** The management API and the vhost the demo runs in (the workbook passes them). */
interface Management {
  url: string;
  user: string;
  password: string;
  vhost: string;
}

const quorum = (extra: Record<string, unknown> = {}) => ({ durable: true, arguments: { 'x-queue-type': 'quorum', ...extra } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function demo(url: string, say: (line: string) => void, management: Management): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    await deadLetters(connection, management, say);
    await headOfQueue(connection, say);
    await atLeastOnce(connection, say);
  } finally {
    await connection.close();
  }
}

// ---- 1. policies, and the four triggers ------------------------------------------

async function deadLetters(connection: ChannelModel, management: Management, say: (line: string) => void): Promise<void> {
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => say(`channel error: ${err.message}`));
  await channel.assertExchange('demo.dlx', 'fanout', { durable: true });
  await channel.assertQueue('demo.dead', quorum());
  await channel.bindQueue('demo.dead', 'demo.dlx', '');
  // An application declared "demo.orders" long ago, without dead-lettering; an order waits in it.
  await channel.assertQueue('demo.orders', quorum());
  channel.sendToQueue('demo.orders', Buffer.from('order 1'), { persistent: true });
  await channel.waitForConfirms();
  say('Part 1: "demo.orders" exists, a quorum queue without arguments, with order 1 in it.');

  // #region redeclare
  const attempt = await connection.createChannel();
  attempt.on('error', () => undefined); // the broker closes this channel: that is the point
  try {
    await attempt.assertQueue('demo.orders', quorum({ 'x-dead-letter-exchange': 'demo.dlx' }));
  } catch (err) {
    say(`Declaring it again with x-dead-letter-exchange: ${(err as Error).message}`);
  }
  // #endregion
  say('A queue keeps the arguments it was created with. A policy can change a live queue:');

  // #region policy
  const response = await fetch(`${management.url}/api/policies/${encodeURIComponent(management.vhost)}/demo-orders-dead-letters`, {
    method: 'PUT',
    headers: {
      authorization: `Basic ${Buffer.from(`${management.user}:${management.password}`).toString('base64')}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      pattern: '^demo\\.orders$', // a regular expression: anchored, and its "." escaped
      'apply-to': 'queues',
      priority: 10,
      definition: { 'dead-letter-exchange': 'demo.dlx', 'delivery-limit': 2, 'max-length': 3 },
    }),
  });
  if (!response.ok) throw new Error(`the management API answered ${response.status} to the policy`);
  // #endregion
  await sleep(100); // the queue applies a new policy a moment after the API has stored it
  say('PUT /api/policies/…/demo-orders-dead-letters: dead-letter-exchange demo.dlx, delivery-limit 2, max-length 3. Order 1 is still there.');

  // The four triggers, one message each.
  const first = await channel.get('demo.orders');
  if (first) channel.reject(first, false);
  say('rejected: order 1 taken and rejected without requeue.');

  channel.sendToQueue('demo.orders', Buffer.from('order 2'), { persistent: true, expiration: '100' });
  await channel.waitForConfirms();
  await sleep(300);
  say('expired: order 2 published with a TTL of 100 ms, and left alone.');

  channel.sendToQueue('demo.orders', Buffer.from('order 3'), { persistent: true });
  await channel.waitForConfirms();
  let deliveries = 0;
  const consumer = await connection.createChannel();
  const { consumerTag } = await consumer.consume('demo.orders', (msg) => {
    if (msg === null) return;
    deliveries++;
    consumer.reject(msg, true); // "try again", every time
  });
  await sleep(300);
  await consumer.cancel(consumerTag);
  await consumer.close();
  say(`delivery_limit: order 3 rejected with requeue at each delivery; it was delivered ${deliveries} times (2 returns allowed), then it came back no more.`);

  for (const n of [4, 5, 6, 7]) channel.sendToQueue('demo.orders', Buffer.from(`order ${n}`), { persistent: true });
  await channel.waitForConfirms();
  await sleep(100);
  say('maxlen: orders 4 to 7 published into a queue limited to 3: the oldest one makes room.');

  // #region x-death
  for (let msg = await channel.get('demo.dead'); msg; msg = await channel.get('demo.dead')) {
    const [death] = msg.properties.headers?.['x-death'] as { reason: string; queue: string; count: number }[];
    say(`  "demo.dead" holds "${msg.content.toString()}": x-death reason ${death!.reason}, queue ${death!.queue}, count ${death!.count}; x-first-death-reason ${String(msg.properties.headers?.['x-first-death-reason'])}`);
    channel.ack(msg);
  }
  // #endregion
  await channel.close();
}

// ---- 2. head-of-queue expiry --------------------------------------------------------

async function headOfQueue(connection: ChannelModel, say: (line: string) => void): Promise<void> {
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => say(`channel error: ${err.message}`));
  const back = { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'demo.back' };
  await channel.assertQueue('demo.back', quorum());
  // #region wait-queues
  // One wait queue for every delay: each message says how long it waits.
  await channel.assertQueue('demo.wait.any', quorum(back));
  channel.sendToQueue('demo.wait.any', Buffer.from('one queue, 1500 ms'), { persistent: true, expiration: '1500' });
  channel.sendToQueue('demo.wait.any', Buffer.from('one queue, 200 ms'), { persistent: true, expiration: '200' });
  // One wait queue per delay: the queue says how long its messages wait.
  await channel.assertQueue('demo.wait.1500', quorum({ ...back, 'x-message-ttl': 1500 }));
  await channel.assertQueue('demo.wait.200', quorum({ ...back, 'x-message-ttl': 200 }));
  channel.sendToQueue('demo.wait.1500', Buffer.from('queue per delay, 1500 ms'), { persistent: true });
  channel.sendToQueue('demo.wait.200', Buffer.from('queue per delay, 200 ms'), { persistent: true });
  await channel.waitForConfirms();
  // #endregion
  const sent = Date.now();
  say('Part 2: four retries go to wait queues that send them back to "demo.back" when they expire. In publish order:');
  say('  "demo.wait.any" (no TTL of its own): 1500 ms, then 200 ms; "demo.wait.1500" and "demo.wait.200": one each.');

  const arrivals: string[] = [];
  const { consumerTag } = await channel.consume('demo.back', (msg: Message | null) => {
    if (msg === null) return;
    arrivals.push(`${msg.content.toString()} after ${Date.now() - sent} ms`);
    channel.ack(msg);
  });
  await sleep(2000);
  await channel.cancel(consumerTag);
  for (const line of arrivals) say(`  back: ${line}`);
  say('The 200 ms retry of the shared queue waited behind the 1500 ms one: a message expires only at the head of its queue.');
  await channel.close();
}

// ---- 3. at-least-once dead-lettering --------------------------------------------------

async function atLeastOnce(connection: ChannelModel, say: (line: string) => void): Promise<void> {
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => say(`channel error: ${err.message}`));
  // An exchange with no queue bound to it: a dead letter sent there has nowhere to go.
  await channel.assertExchange('demo.nowhere', 'fanout', { durable: true });
  // #region at-least-once
  await channel.assertQueue('demo.at-least-once', quorum({
    'x-dead-letter-exchange': 'demo.nowhere',
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish', // without it, the broker quietly uses at-most-once
  }));
  // #endregion
  await channel.assertQueue('demo.at-most-once', quorum({ 'x-dead-letter-exchange': 'demo.nowhere' }));
  for (const queue of ['demo.at-least-once', 'demo.at-most-once']) {
    channel.sendToQueue(queue, Buffer.from(`rejected in ${queue}`), { persistent: true });
    await channel.waitForConfirms();
    const msg = await channel.get(queue);
    if (msg) channel.reject(msg, false);
  }
  await channel.close();
  say('Part 3: one message rejected in "demo.at-least-once" and one in "demo.at-most-once"; both dead-letter to "demo.nowhere", where no queue is bound.');
  say('Left for you: in the management UI (a few seconds later), "demo.at-least-once" counts 1 message in Total while Ready and Unacked say 0: the broker keeps the dead letter until a queue takes it. "demo.at-most-once" counts none: its dead letter is gone.');
}

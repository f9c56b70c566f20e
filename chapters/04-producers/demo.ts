// Live demo of chapter 4: a producer that knows what happened to every message.
// npm run chapter 4   (runs in a vhost of its own, which stays for you to explore)
import amqp, { type ConfirmChannel } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { renderBars, runConfirmsLab } from './confirms-lab.js';

const LAB_MESSAGES = 2000; // the full lab: npm run lab confirms (50,000 messages)

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  const connection = await amqp.connect(url, { clientProperties: { connection_name: 'chapter 4 demo' } });
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  // #region blocked
  // The broker stops reading from publishers when it runs short of memory or disk (an alarm).
  connection.on('blocked', (reason) => say(`the broker blocked this connection: ${reason}`));
  connection.on('unblocked', () => say('the broker unblocked this connection'));
  // #endregion
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => say(`channel error: ${err.message}`));
    await channel.assertExchange('shop', 'direct', { durable: true });
    await channel.assertQueue('orders', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue('orders', 'shop', 'order.created');
    say('Declared the direct exchange "shop" and the quorum queue "orders", bound with "order.created".');

    await persistentAndConfirmed(channel, say);
    await unroutable(channel, say);
    await jsonEvent(channel, say);
    await refused(channel, say);
    await backPressure(channel, say);
  } finally {
    await connection.close();
  }

  say(`The confirms lab, with ${LAB_MESSAGES.toLocaleString('en-US')} messages (the full run: npm run lab confirms):`);
  const results = await runConfirmsLab(url, { messages: LAB_MESSAGES });
  for (const line of renderBars(results).split('\n')) say(line);
}

async function persistentAndConfirmed(channel: ConfirmChannel, say: (line: string) => void): Promise<void> {
  // #region persistent
  channel.publish('shop', 'order.created', Buffer.from('order A-1001'), { persistent: true });
  await channel.waitForConfirms(); // resolves when the broker has the message; rejects on a nack
  // #endregion
  say('Published "order A-1001" as persistent and waited for the confirm: it is safe in "orders".');
}

async function unroutable(channel: ConfirmChannel, say: (line: string) => void): Promise<void> {
  // #region mandatory
  const events: string[] = [];
  const onReturn = (msg: amqp.Message) => events.push(`return of "${msg.content.toString()}"`);
  channel.on('return', onReturn);
  channel.publish('shop', 'order.refunded', Buffer.from('order A-1002'), { persistent: true, mandatory: true }, (err) => {
    events.push(err ? 'nack' : 'ack');
  });
  await channel.waitForConfirms();
  channel.off('return', onReturn);
  // #endregion
  say(`Published with the key "order.refunded", which no binding matches, and mandatory: true. What came back: ${events.join(', then ')}.`);
  say('The ack alone says nothing about routing: only the return (which always comes first) tells you no queue took it.');
}

async function jsonEvent(channel: ConfirmChannel, say: (line: string) => void): Promise<void> {
  // #region json
  const data = { orderId: 'A-1003', city: 'São Paulo', total: 42.5 };
  channel.publish('shop', 'order.created', Buffer.from(JSON.stringify(data), 'utf8'), {
    persistent: true,
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    messageId: randomUUID(),
    timestamp: Math.floor(Date.now() / 1000), // seconds, not milliseconds
    type: 'order.created',
    appId: 'order-service',
    headers: { 'schema-version': 1 },
  });
  await channel.waitForConfirms();
  // #endregion
  say('Published order A-1003 as JSON with contentType, contentEncoding, messageId, timestamp, type, appId and a header.');
  say('Open "orders" in the management UI and use "Get messages" to see those properties next to the body.');
}

async function refused(channel: ConfirmChannel, say: (line: string) => void): Promise<void> {
  // A queue that holds 2 messages and refuses more. (Arguments keep the demo short; in
  // production set max-length and overflow with a policy, which you can change later.)
  await channel.assertQueue('limited', {
    durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-max-length': 2, 'x-overflow': 'reject-publish' },
  });
  const answers: string[] = [];
  for (let i = 1; i <= 5; i++) {
    // #region nack
    const answer = await new Promise<string>((resolve) => {
      channel.sendToQueue('limited', Buffer.from(`message ${i}`), { persistent: true }, (err) => resolve(err ? 'nack' : 'ack'));
    });
    // #endregion
    answers.push(`${i}: ${answer}`);
  }
  say(`Published 5 messages, one at a time, to "limited" (max-length 2, overflow reject-publish): ${answers.join(', ')}.`);
  say('A nack means the broker did NOT take the message: retry it, park it, or report it, but do not forget it.');
  say('(A quorum queue applies the limit once it is over it, so one more than the limit may get in.)');
}

async function backPressure(channel: ConfirmChannel, say: (line: string) => void): Promise<void> {
  await channel.assertQueue('bulk', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const body = Buffer.alloc(4096, 'x');
  let pauses = 0;
  // #region drain
  for (let i = 0; i < 5000; i++) {
    const hasRoom = channel.sendToQueue('bulk', body, { persistent: true });
    if (!hasRoom) {
      pauses++;
      await once(channel, 'drain'); // the message is buffered: wait, do not send it again
    }
  }
  await channel.waitForConfirms();
  // #endregion
  const { messageCount } = await channel.checkQueue('bulk');
  say(`Published 5,000 messages of 4 KB to "bulk": publish() said "buffer full" ${pauses} times, and we waited for 'drain' each time.`);
  say(`"bulk" holds ${messageCount.toLocaleString('en-US')} messages: every one exactly once. Deleting it to keep the demo small.`);
  await channel.deleteQueue('bulk');
}

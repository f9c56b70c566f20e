// Chapter 3's live demo: a topic exchange routes sensor readings to queues bound by
// patterns, an alternate exchange catches the reading nobody asked for, and an exchange
// without one drops such a message silently (unless it is published as mandatory).
// The chapter text shows these regions.
import amqp, { type Channel, type ConfirmChannel } from 'amqplib';

type Say = (line: string) => void;
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

export async function demo(url: string, say: Say): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    await declareTopology(channel, say);
    await publishReadings(channel, say);
    await peek(await connection.createChannel(), say);
    await dropSilently(channel, say);
    await publishMandatory(channel, say);
  } finally {
    await connection.close();
  }
}

// #region topology
async function declareTopology(channel: ConfirmChannel, say: Say) {
  // The safety net: a fanout exchange and its queue, for readings no binding matches.
  await channel.assertExchange('sensors-unrouted', 'fanout', { durable: true });
  await channel.assertQueue('unrouted', QUORUM);
  await channel.bindQueue('unrouted', 'sensors-unrouted', '');

  // Routing keys look like <site>.<floor>.<kind>, e.g. "hq.floor1.temperature".
  await channel.assertExchange('sensors', 'topic', { durable: true, alternateExchange: 'sensors-unrouted' });
  const bindings: [queue: string, pattern: string][] = [
    ['hq-temperatures', 'hq.*.temperature'], // exactly three words
    ['hq-everything', 'hq.#'], // "hq" and whatever follows, even nothing
    ['alarms', '#.alarm'], // anything that ends in "alarm"
  ];
  for (const [queue, pattern] of bindings) {
    await channel.assertQueue(queue, QUORUM);
    await channel.bindQueue(queue, 'sensors', pattern);
    say(`bound "${queue}" to "sensors" with the pattern ${pattern}`);
  }
}
// #endregion

// #region publish
async function publishReadings(channel: ConfirmChannel, say: Say) {
  const keys = ['hq.floor1.temperature', 'hq.floor2.humidity', 'hq.floor1.smoke.alarm', 'lab.alarm', 'hq', 'lab.floor1.temperature'];
  for (const key of keys) {
    channel.publish('sensors', key, Buffer.from(`reading for ${key}`), { persistent: true });
  }
  await channel.waitForConfirms();
  say(`published ${keys.length} readings to "sensors": ${keys.join(', ')}`);
}
// #endregion

/** Reads every queue without acking, then closes the channel: the messages go back, for you to explore in the UI. */
async function peek(channel: Channel, say: Say) {
  for (const queue of ['hq-temperatures', 'hq-everything', 'alarms', 'unrouted']) {
    const keys: string[] = [];
    for (let m = await channel.get(queue); m; m = await channel.get(queue)) keys.push(m.fields.routingKey);
    say(`"${queue}" got ${keys.length ? keys.join(', ') : 'nothing'}`);
  }
  say('"lab.floor1.temperature" matched no binding: the alternate exchange put it in "unrouted", routing key intact');
  await channel.close(); // nothing was acked, so every message goes back to its queue
}

// #region dropped
async function dropSilently(channel: ConfirmChannel, say: Say) {
  await channel.assertExchange('sensors-no-net', 'topic', { durable: true }); // no alternate exchange, no bindings
  channel.publish('sensors-no-net', 'lab.floor1.temperature', Buffer.from('21.5'), { persistent: true });
  await channel.waitForConfirms();
  say('published to "sensors-no-net", which has no bindings: the broker confirmed it, and dropped it');
}
// #endregion

// #region mandatory
async function publishMandatory(channel: ConfirmChannel, say: Say) {
  // mandatory: true asks the broker to send an unroutable message back instead of dropping it.
  const returned = new Promise<string>((resolve) => channel.once('return', (msg) => resolve(msg.fields.replyText)));
  channel.publish('sensors-no-net', 'lab.floor1.temperature', Buffer.from('21.5'), { persistent: true, mandatory: true });
  await channel.waitForConfirms(); // the return, if any, arrives before the confirm
  say(`published it again with mandatory: true: the broker returned it (${await returned})`);
}
// #endregion

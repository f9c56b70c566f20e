// Check 5.4: the consumer resumes by itself after the checker force-closes its connection
// through the management API (as an operator would), and again after a network failure
// (ECONNRESET). Every message published before, between and after is handled.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/05-consumers/04-recovery.js';
import { clock, closeAsOperator } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'invoices';
  const handled: string[] = [];
  const handle = async (text: string) => {
    handled.push(text);
  };
  const missing = (texts: string[]) => texts.filter((x) => !handled.includes(x));

  const consumer = await t.call(`startResilientConsumer(url, "${queue}", handle)`, () => t.target.startResilientConsumer(t.url, queue, handle));
  if (!(await t.waitFor(async () => (await t.consumerCount(queue).catch(() => 0)) > 0, 3000, 50))) {
    t.fail({
      summary: `startResilientConsumer() returned, but there is no consumer on "${queue}" 3 s later.`,
      expected: '1 consumer',
      saw: '0 consumers',
      why: 'With waitForConnect: false, connect() returns before the first connection exists; setup() runs once it does.',
      fix: 'In recovery.setup: createChannel, assertQueue, prefetch, and consume. Await connection.waitForConnect() before returning.',
      link: t.ui('queues', queue),
    });
  }
  const first = ['invoice-1', 'invoice-2'];
  await t.publish(queue, first);
  if (!(await t.waitFor(() => missing(first).length === 0, 3000))) {
    t.fail({
      summary: `handle() got ${first.length - missing(first).length} of the ${first.length} messages published to "${queue}".`,
      expected: first.map((x) => `handle("${x}")`).join(', '),
      saw: handled.length ? handled.map((x) => `handle("${x}")`).join(', ') : 'no call',
      fix: 'Consume with { noAck: false } and call handle(msg.content.toString()) for each message, acking when it resolves.',
      link: t.ui('queues', queue),
    });
  }

  // 1. An operator closes the connection (management UI, "Force Close").
  const openedBefore = t.connectionsOpened();
  await closeAsOperator(t, queue);
  const closedAt = clock();
  const second = ['invoice-3', 'invoice-4'];
  await t.publish(queue, second);
  if (!(await t.waitFor(() => missing(second).length === 0, 5000))) {
    const reconnected = t.connectionsOpened() > openedBefore;
    const consumers = await t.consumerCount(queue);
    t.fail({
      summary: `The checker closed your connection at ${closedAt}; your consumer had not resumed 5 s later: ${
        !reconnected ? 'it never reconnected' : consumers === 0 ? 'it reconnected, but does not consume any more' : `handle() still missed ${missing(second).join(', ')}`
      }.`,
      expected: `${second.join(', ')} handled after the reconnect`,
      saw: `${t.connectionsOpened() - openedBefore} new connection(s), ${consumers} consumer(s) on "${queue}"`,
      why: !reconnected
        ? 'A plain amqp.connect() connection stays closed once it is closed, by an operator, a broker restart or the network. Nothing reconnects unless you ask for it.'
        : 'A new connection starts empty: no channel, no prefetch, no consumer. Whatever was made on the old connection is gone with it.',
      fix: !reconnected
        ? "Connect with recovery: amqp.connect(url, { recovery: { initialDelay: 200, maxDelay: 5000, setup } })."
        : 'Create the channel, declare the queue, set the prefetch and consume INSIDE recovery.setup(model): it runs after every reconnect.',
      link: t.ui('connections'),
    });
  }
  t.log(`your consumer resumed: handled ${second.join(', ')}`);

  // 2. The network fails: the socket is reset (ECONNRESET), and amqplib reports an 'error'.
  t.cutConnections('a network failure');
  const resetAt = clock();
  const third = ['invoice-5', 'invoice-6'];
  await t.publish(queue, third);
  if (!(await t.waitFor(() => missing(third).length === 0, 5000))) {
    t.fail({
      summary: `The checker reset your connection at ${resetAt} (ECONNRESET, like a network failure); your consumer had not resumed 5 s later.`,
      expected: `${third.join(', ')} handled after the reconnect`,
      saw: `handle() missed ${missing(third).join(', ')}`,
      why: 'A network failure reaches amqplib as an error on the connection, and recovery reconnects after it.',
      fix: "Keep connection.on('error', …) and the recovery options; do everything the consumer needs in recovery.setup.",
      link: t.ui('connections'),
    });
  }
  t.log(`your consumer resumed again: handled ${third.join(', ')}`);

  // 3. stop(): the connection closes for good, and nothing is left behind.
  await t.call('stop()', () => consumer.stop());
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0) {
    t.fail({
      summary: `After stop(), ${left} message(s) are back in "${queue}": they were handled but not acknowledged.`,
      expected: `"${queue}" empty`,
      saw: `${left} message(s)`,
      fix: 'Ack each message (on the channel that delivered it) when handle() resolves.',
      link: t.ui('queues', queue),
    });
  }
  t.note(`Closed by an operator at ${closedAt}, reset by the network at ${resetAt}: your consumer came back both times, and handled all ${handled.length >= 6 ? 6 : handled.length} messages.`);
});

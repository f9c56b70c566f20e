// Check 5.4: the consumer's first setup fails (the queue exists as a classic queue) and must be
// tried again; it then consumes with prefetch 10 and manual acks, requeues a failed message,
// and resumes by itself after the checker force-closes its connection through the management
// API (as an operator would) while a handler is still running, and again after a network failure
// (ECONNRESET). The message whose handler outlived its connection comes back, and answering it
// on the dead channel must not crash the process. A null message (the queue deleted) must not
// break the connection, and stop() ends the recovery.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionsSince, consumes } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/05-consumers/04-recovery.js';
import { clock, closeAsOperator, declareAsSomeoneElse, expectSurvivesQueueDeletion, expectSurvivesReset, learnerConnectionsOpen, pause, ScriptedHandler } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'invoices';
  // invoice-2 fails once; invoice-3 is still being handled when the connection goes.
  const handler = new ScriptedHandler<string>(String, (key) => (key === 'invoice-2' ? { kind: 'fail', times: 1 } : key === 'invoice-3' ? { kind: 'hold' } : { kind: 'ok' }));
  const missing = (texts: string[]) => texts.filter((x) => !handler.finished(x));

  // 1. The first setup fails: someone declared "invoices" as a classic queue.
  await declareAsSomeoneElse(t, queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  t.provoke(1, `declared "${queue}" as a classic queue first: your first setup fails (406 PRECONDITION_FAILED), and the checker deletes that queue once it has`);
  t.provoke(2, `called startResilientConsumer(url, "${queue}", handle)`);
  let settled: 'resolved' | 'rejected' | undefined;
  let failure = '';
  const started = t
    .call(`startResilientConsumer(url, "${queue}", handle)`, () => t.target.startResilientConsumer(t.url, queue, handler.handle), { timeoutMs: 8000 })
    .then(
      (c) => {
        settled = 'resolved';
        return c;
      },
      (err: unknown) => {
        // A call that never settles is its own verdict; a rejection is judged below.
        if ((err as { finding?: { summary?: string } }).finding?.summary?.includes('did not finish')) throw err;
        settled = 'rejected';
        failure = (err as { finding?: { summary?: string } }).finding?.summary ?? String(err);
        return undefined;
      },
    );
  started.catch(() => undefined); // awaited below
  const firstFailed = await t.waitFor(() => settled !== undefined || (t.connectionsOpened() >= 1 && learnerConnectionsOpen(t) === 0), 3000, 5);
  await t.mgmt.deleteQueue(t.vhost, queue);
  t.log(firstFailed && settled === undefined ? `your first attempt failed and closed its connection; deleted the classic "${queue}"` : `deleted the classic "${queue}"`);
  const consumer = await started;
  // Recovery waits before it tries again: initialDelay and maxDelay are milliseconds.
  const attempts = connectionsSince();
  const gap = attempts.length >= 2 ? attempts[1]!.opened - (attempts[0]!.closed ?? attempts[0]!.opened) : undefined;
  if (gap !== undefined && gap < 50) {
    t.fail({
      summary: `Your consumer tried again ${gap} ms after its first attempt failed: recovery hardly waits between attempts${consumer ? '' : `, and used up its retries in ${attempts.at(-1)!.opened - attempts[0]!.opened} ms`}.`,
      expected: 'a first retry a few hundred milliseconds later (initialDelay: 200), then longer waits, up to seconds (maxDelay: 5000)',
      saw: `the first connection closed, and the next opened ${gap} ms later; ${attempts.length} connections opened at ${attempts.map((c) => `+${c.opened - attempts[0]!.opened} ms`).join(', ')}`,
      why: 'initialDelay and maxDelay are milliseconds. Given as seconds (0.2, 5) they make a retry storm: while the broker is down, or refuses the setup, your service opens a connection every few milliseconds, and so does every other instance of it, just when the broker is in trouble.',
      fix: 'recovery: { initialDelay: 200, maxDelay: 5000, … }: milliseconds.',
      link: t.ui('connections'),
    });
  }
  if (!consumer) {
    t.fail({
      summary: `startResilientConsumer() gave up when its first setup failed: ${failure}`,
      expected: 'the failed attempt tried again (the queue was gone by then), and startResilientConsumer() resolving',
      saw: `startResilientConsumer() rejected after ${t.connectionsOpened()} connection attempt(s)`,
      why: 'A plain amqp.connect() tries once. With recovery, a connect or a setup that fails is tried again after initialDelay, up to initialMaxRetries times at startup: a broker that is still booting, or a queue that is being fixed, does not stop the service.',
      fix: 'amqp.connect(url, { recovery: { initialDelay: 200, maxDelay: 5000, initialMaxRetries: 5, waitForConnect: false, setup } }), with everything in setup.',
      link: t.ui('queues', queue),
    });
  }
  if (t.connectionsOpened() < 2) {
    t.fail({
      summary: `Your first setup should have failed on the classic "${queue}", but it did not: it never declared the queue as a quorum queue.`,
      expected: `a declaration of "${queue}" as a quorum queue, refused once (406), then accepted`,
      saw: `${t.connectionsOpened()} connection(s), no second attempt`,
      fix: "In setup: await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } })",
      link: t.ui('queues', queue),
    });
  }
  await expectQuorumQueue(t, queue);
  t.observe(1, `your first attempt failed, and recovery tried again ${gap ?? '?'} ms later: ${t.connectionsOpened()} connections, and the consumer started`);
  if (!(await t.waitFor(async () => (await t.consumerCount(queue).catch(() => 0)) > 0, 3000, 20))) {
    t.fail({
      summary: `startResilientConsumer() returned, but there is no consumer on "${queue}" 3 s later.`,
      expected: '1 consumer',
      saw: '0 consumers',
      why: 'With waitForConnect: false, connect() returns before the first connection exists; setup() runs once it does.',
      fix: 'In recovery.setup: createChannel, assertQueue, prefetch, and consume. Await connection.waitForConnect() before returning.',
      link: t.ui('queues', queue),
    });
  }

  // 2. Messages are handled; a failed one is requeued.
  const first = ['invoice-1', 'invoice-2'];
  await t.publish(queue, first);
  t.provoke(2, 'published invoice-1 and invoice-2; handle() rejects invoice-2 once');
  if (!(await t.waitFor(() => missing(first).length === 0, 3000))) {
    const got = handler.calls.map((x) => `handle(${JSON.stringify(x)})`).join(', ') || 'no call';
    t.fail({
      summary:
        handler.count('invoice-2') === 1 && handler.finished('invoice-1')
          ? 'handle() rejected invoice-2 once, and the message was not delivered again.'
          : `handle() got ${first.length - missing(first).length} of the ${first.length} messages published to "${queue}".`,
      expected: 'handle("invoice-1"), handle("invoice-2") twice (it fails once)',
      saw: got,
      why: handler.count('invoice-2') === 1 ? 'A failed handler is a passing problem: the message must go back to the queue, to be tried again.' : undefined,
      fix: 'Consume with { noAck: false }; handle(msg.content.toString()).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', queue),
    });
  }

  // 3. An operator closes the connection (management UI, "Force Close") while invoice-3 is being handled.
  await t.publish(queue, ['invoice-3']);
  await t.waitFor(() => handler.heldCount('invoice-3') > 0, 2000);
  const listed = await t.waitForConsumer(queue, 8000);
  if (listed && (listed.prefetch_count !== 10 || !listed.ack_required)) {
    t.fail({
      summary: `Your consumer ${!listed.ack_required ? 'does not acknowledge (noAck: true)' : `has a prefetch of ${listed.prefetch_count}, not 10`}.`,
      expected: 'manual acks (ack_required true), prefetch_count 10',
      saw: `ack_required ${listed.ack_required}, prefetch_count ${listed.prefetch_count}`,
      why: 'A consumer without a prefetch gets the whole backlog at once after every reconnect; one without acks loses what it held when the connection goes.',
      fix: 'In setup: await channel.prefetch(10) before consume(queue, onMessage, { noAck: false }).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, `read your consumer from the management API: ack_required ${listed?.ack_required}, prefetch_count ${listed?.prefetch_count}; invoice-2 came back after handle() rejected it`);
  const openedBefore = t.connectionsOpened();
  t.provoke([1, 4], 'closes your connection through the management API while handle("invoice-3") is still running');
  await closeAsOperator(t, queue);
  const closedAt = Date.now();
  const second = ['invoice-4'];
  await t.publish(queue, second);
  const back = await t.waitFor(() => (t.connectionsOpened() > openedBefore && learnerConnectionsOpen(t) > 0 ? Date.now() : undefined), 5000, 10);
  if (!(await t.waitFor(() => missing(second).length === 0 && handler.count('invoice-3') >= 2, 5000))) {
    const reconnected = t.connectionsOpened() > openedBefore;
    if (reconnected && missing(second).length === 0) {
      t.fail({
        summary: 'invoice-3, whose handle() had not finished when the connection was closed, did not come back after the reconnect: it had been acknowledged before handle() resolved.',
        expected: 'invoice-3 delivered again on the new connection (it was never acked)',
        saw: `handle() got invoice-3 ${handler.count('invoice-3')} time(s)`,
        why: 'An ack says "done, forget it". Sent before the work is done (or with noAck: true), the message is lost when the connection goes in the middle of the work.',
        fix: 'Consume with { noAck: false }, and ack in the .then() of handle(), once it has resolved.',
        link: t.ui('queues', queue),
      });
    }
    const consumers = await t.consumerCount(queue);
    t.fail({
      summary: `The checker closed your connection at ${clock(new Date(closedAt))}; your consumer had not resumed 5 s later: ${
        !reconnected ? 'it never reconnected' : consumers === 0 ? 'it reconnected, but does not consume any more' : `handle() still missed ${[...missing(second), ...(handler.count('invoice-3') < 2 ? ['invoice-3 (again)'] : [])].join(', ')}`
      }.`,
      expected: `${second.join(', ')} handled after the reconnect, and invoice-3 delivered again`,
      saw: `${t.connectionsOpened() - openedBefore} new connection(s), ${consumers} consumer(s) on "${queue}"`,
      why: !reconnected
        ? 'A plain amqp.connect() connection stays closed once it is closed, by an operator, a broker restart or the network. Nothing reconnects unless you ask for it.'
        : 'A new connection starts empty: no channel, no prefetch, no consumer. Whatever was made on the old connection is gone with it.',
      fix: !reconnected
        ? 'Connect with recovery: amqp.connect(url, { recovery: { initialDelay: 200, maxDelay: 5000, setup } }).'
        : 'Create the channel, declare the queue, set the prefetch and consume INSIDE recovery.setup(model): it runs after every reconnect.',
      link: t.ui('connections'),
    });
  }
  const after = (back ?? Date.now()) - closedAt;
  if (after > 1500) {
    t.fail({
      summary: `Your consumer came back ${(after / 1000).toFixed(1)} s after its connection was closed: recovery waits too long before it tries again.`,
      expected: 'a new connection within about a second (initialDelay of a few hundred ms)',
      saw: `${(after / 1000).toFixed(1)} s`,
      why: 'Every second without a consumer, messages pile up. initialDelay is in milliseconds: the first retry should come within a few hundred.',
      fix: 'recovery: { initialDelay: 200, maxDelay: 5000, … }',
      link: t.ui('connections'),
    });
  }
  t.observe(1, `your connection was open again ${after} ms after the operator closed it`);
  // What setup made on each connection, read from the frames it sent.
  const setups = consumes(connectionsSince());
  const bare = setups.findIndex((s) => s.prefetch !== 10 || !s.declared);
  if (bare >= 0) {
    const { prefetch, declared } = setups[bare]!;
    const missed = [!declared && `declaring "${queue}"`, prefetch !== 10 && (prefetch === undefined ? 'a prefetch' : `a prefetch of 10 (it set ${prefetch})`)].filter(Boolean).join(' and ');
    t.fail({
      summary: bare === 0 ? `Your setup consumed without ${missed}.` : `After the reconnect, your setup consumed without ${missed}: it did that on the first connection only.`,
      expected: `on every connection: queue.declare "${queue}", basic.qos prefetch_count 10, then basic.consume`,
      saw: setups.map((s, i) => `connection ${i + 1}: ${s.declared ? 'declared' : 'no declaration'}, ${s.prefetch === undefined ? 'no prefetch' : `prefetch ${s.prefetch}`}, consumed`).join('; '),
      why: 'A new connection starts empty: the prefetch is a setting of the channel, and dies with it; without it the consumer gets the whole backlog at once. The queue may have gone with whatever cut the connection (a failover, an operator), and then the consume fails. setup runs after every connect so that it can make everything again.',
      fix: 'No "first time only" flag in setup: createChannel, assertQueue, prefetch(10) and consume, every time it runs.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, `read the frames of each connection: ${setups.length} setups, each declared "${queue}" and set a prefetch of 10 before it consumed`);
  t.log(`your consumer resumed: handled ${second.join(', ')}, and got invoice-3 again`);

  // The first handle("invoice-3") ends now: its channel is gone, so its answer throws.
  handler.release('invoice-3');
  await pause(50);
  if (!(await t.waitFor(() => handler.finished('invoice-3'), 1000))) {
    t.fail({ summary: 'handle("invoice-3") was released, but never finished.', expected: 'invoice-3 handled', saw: 'still held', fix: 'Call handle() once per delivery.' });
  }
  t.observe(4, 'invoice-3 came back on the new connection; both its handle() calls ended, and the answer on the dead channel did not crash your process');

  // 4. The network fails: the socket is reset (ECONNRESET), and amqplib reports an 'error'.
  await expectSurvivesReset(t, [3], 'while it consumes');
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
  t.observe(3, `your consumer resumed after the reset: handled ${third.join(', ')}`);
  // Each invoice reached handle() once, plus once per failure or lost connection: the others were acked.
  const times: Record<string, number> = { 'invoice-1': 1, 'invoice-2': 2, 'invoice-3': 2, 'invoice-4': 1, 'invoice-5': 1, 'invoice-6': 1 };
  const again = Object.entries(times).filter(([x, n]) => handler.count(x) !== n);
  if (again.length > 0) {
    t.fail({
      summary: `Some invoices reached handle() again after a reconnect, although handle() had finished them: ${again.map(([x]) => `${x} ${handler.count(x)} times`).join(', ')}.`,
      expected: Object.entries(times).map(([x, n]) => `${x} ${n === 1 ? 'once' : `${n} times`}`).join(', '),
      saw: handler.calls.join(', '),
      why: 'A message that is never acked stays unacknowledged on the consumer; when the connection goes, the broker delivers it again, and the work is done twice.',
      fix: 'Ack each message (on the channel that delivered it) when handle() resolves.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, 'every invoice reached handle() once, plus once after each failure or lost connection: the finished ones were acked');
  t.expectRejectsNotNacks(2, 'When handle() rejected invoice-2');

  // 5. The queue is deleted under the consumer: amqplib hands the callback a null.
  await expectSurvivesQueueDeletion(t, { queue, lines: [2], under: 'your consumer' });

  // 6. stop(): the connection closes for good, and recovery does not open another.
  t.provoke(5, 'called stop()');
  await t.call('stop()', () => consumer!.stop());
  await t.expectConnectionsClosed('stop()');
  const openedAtStop = t.connectionsOpened();
  await pause(300); // longer than the first retry of a recovery that was not stopped
  if (t.connectionsOpened() > openedAtStop) {
    t.fail({
      summary: 'After stop(), your code opened a new connection: the recovery was not ended.',
      expected: 'no connection after stop()',
      saw: `${t.connectionsOpened() - openedAtStop} new connection(s) within 0.3 s`,
      why: 'A consumer that was told to stop must stay stopped: a reconnect after stop() keeps the process alive and consumes again, behind the back of whoever stopped it.',
      fix: 'stop(): await connection.close() on the connection amqp.connect() returned: that also ends its recovery.',
      link: t.ui('connections'),
    });
  }
  t.observe(5, 'after stop() your connection is closed, and no new one was opened in the next 0.3 s');
  t.note(`Closed by an operator, reset by the network: your consumer came back both times (the first time in ${after} ms), and handled every message.`);
});

// Check 2.2: the receiver consumes with manual acks and prefetch 10, hands each body to the
// handler as text and in order, acks after the handler's promise resolves and rejects with
// requeue (a basic.reject, not a basic.nack: the frames say which) when it rejects, survives a cut connection and a cancelled consumer, and stops cleanly. Three
// receivers in a row: a happy path, then stop(); handlers that fail once and twice and
// handlers that never finish, then a cut connection; the queue deleted under it, then stop().
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { catchCrashes, expectClosed, expectNoCrash, isAmqpError, messageOf, outcomeOf, recordCancels, recordChannelErrors } from './support.js';
import type * as Exercise from '../../exercises/02-hello-world/02-receive.js';

const FAILED_ON_PURPOSE = 'the checker made handle() fail on purpose';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'tasks';
  // What the handler was given, and what it finished: the checker decides how each text behaves.
  const calls: unknown[] = [];
  const resolved: string[] = [];
  const failuresLeft = new Map([
    ['fail-once', 1],
    ['fail-twice', 2],
  ]);
  const never = new Promise<void>(() => undefined);
  const handle = async (text: string) => {
    calls.push(text);
    if (typeof text === 'string' && text.startsWith('hang')) return never;
    const left = failuresLeft.get(text) ?? 0;
    if (left > 0) {
      failuresLeft.set(text, left - 1);
      throw new Error(`${FAILED_ON_PURPOSE} (${text})`);
    }
    resolved.push(text);
  };
  const start = (label: string) => t.call(`startReceiver(url, "${queue}", handle)${label}`, () => t.target.startReceiver(t.url, queue, handle));
  const { crashes, restore } = catchCrashes((c) => isAmqpError(c.error) || messageOf(c.error).includes(FAILED_ON_PURPOSE));
  const channelErrors = await recordChannelErrors(t);
  try {
    // 1. A happy path: three messages, handled in order, acked; then stop().
    t.provoke(1, `called startReceiver(url, "${queue}", handle); the queue does not exist yet`);
    const first = await start('');
    if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 1000))) {
      t.fail({
        summary: `startReceiver() returned, but there is no consumer on "${queue}".`,
        expected: '1 consumer',
        saw: '0 consumers',
        fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
        link: t.ui('queues', queue),
      });
    }

    t.provoke(2, 'published "one", "two", "three"');
    await t.publish(queue, ['one', 'two', 'three']);
    if (!(await t.waitFor(() => resolved.length >= 3, 3000, 5))) {
      expectNoCrash(t, crashes, 'while handling "one", "two", "three"');
      const still = await t.consumerCount(queue);
      t.fail({
        summary: `Your handler was called for ${calls.length} of 3 messages.`,
        expected: 'handle("one"), handle("two"), handle("three")',
        saw: calls.length ? calls.map((r) => `handle(${JSON.stringify(r)})`).join(', ') : 'no call',
        why: still
          ? 'The consumer is still there but the messages did not reach handle().'
          : 'The consumer is gone: the broker closed its channel. Acknowledging a message twice (or on another channel) does that: PRECONDITION_FAILED, unknown delivery tag.',
        fix: still ? 'Call handle(msg.content.toString()) for every message.' : 'Ack each message exactly once, on the channel that delivered it.',
        link: t.ui('queues', queue),
      });
    }
    const notText = calls.find((c) => typeof c !== 'string');
    if (notText !== undefined) {
      t.fail({
        summary: `handle() was given ${Buffer.isBuffer(notText) ? 'a Buffer' : typeof notText}, not the text of the message.`,
        expected: 'handle("one"): a string',
        saw: `handle(${Buffer.isBuffer(notText) ? `<Buffer ${notText.toString('hex')}>` : JSON.stringify(notText)})`,
        why: 'msg.content is bytes. The handler was promised text; bytes only look like text when printed, and compare unequal to any string.',
        fix: 'handle(msg.content.toString())',
      });
    }
    if (calls.slice(0, 3).join('\n') !== 'one\ntwo\nthree') {
      t.fail({ summary: 'The handler did not get the message texts in the order they arrived.', expected: 'one, two, three', saw: calls.join(', '), fix: 'Call handle() in the consume callback, once per message, as it arrives.' });
    }
    t.observe(2, 'handle("one"), handle("two"), handle("three"), in that order, each with a string');
    t.provoke('2a', 'handle() resolved for "one", "two" and "three"');

    t.provoke(5, 'called stop()');
    await t.call('stop()', () => first.stop());
    expectNoCrash(t, crashes, 'in stop()');
    // A quorum queue forgets a consumer a moment after its channel closes: allow it that moment.
    let consumersLeft = 0;
    await t.waitFor(async () => (consumersLeft = await t.consumerCount(queue)) === 0, 500);
    if (consumersLeft > 0) {
      t.fail({ summary: `stop() returned, but "${queue}" still has ${consumersLeft} consumer(s).`, expected: '0 consumers', saw: `${consumersLeft}`, fix: 'In stop(): await channel.cancel(consumerTag), then close the channel and the connection.', link: t.ui('queues', queue) });
    }
    await expectClosed(t, 'stop()');
    const neverAcked = (texts: string[], after: string) =>
      t.fail({
        summary: `After ${after}, ${texts.map((x) => `"${x}"`).join(', ')} went back to the queue although handle() had resolved: never acknowledged.`,
        expected: 'each message acked once handle() resolved, and gone',
        saw: `${texts.length} handled message(s) ready again`,
        why: 'A message that is never acked stays "unacked"; when the channel closes the broker gives it to someone else. Every message would be processed again.',
        fix: 'Call channel.ack(msg) once handle() has resolved.',
        link: t.ui('queues', queue),
      });
    // The queue may take back a closed channel's messages a moment later: the cut below looks again.
    const left = (await t.takeMessages(queue)).map((m) => m.content.toString());
    if (left.length) neverAcked(left, 'stop()');
    t.observe('2a', 'after stop(), none of the three came back: each was acked');
    // Judged after stop(): a queue that vanished with its consumer (auto-delete) is then reported missing.
    await expectQuorumQueue(t, queue);
    t.observe(1, `"${queue}" is a durable quorum queue, and outlived your receiver`);
    t.observe(5, 'after stop(), no consumer is left on the queue and the connection is closed');

    // 2. Handlers that fail once and twice, handlers that never finish, then the connection is lost.
    await start(' again'); // the cut below ends this receiver
    const hanging = Array.from({ length: 11 }, (_, i) => `hang-${i + 1}`);
    const before = calls.length;
    t.provoke('2b', 'published "fail-once" and "fail-twice": handle() rejects once for the first and twice for the second, then resolves');
    await t.publish(queue, ['fail-once', 'fail-twice']);
    const settled = () => ['fail-once', 'fail-twice'].every((x) => resolved.includes(x));
    await t.waitFor(settled, 1000, 5);
    const twice = channelErrors.errors.find((e) => /unknown delivery tag/i.test(e.message));
    if (twice) {
      t.fail({
        summary: 'A message was acknowledged twice: when handle() rejected, the broker closed your channel with PRECONDITION_FAILED (unknown delivery tag).',
        expected: 'each message acked once (handle() resolved) or nacked once (it rejected), never both',
        saw: twice.message,
        why: 'Acking a message before handle() runs, then nacking it when handle() fails, settles it twice; so does acking twice. The broker answers by closing the channel, and every message in its hands goes back to the queue. Acking early also means a crash in the middle loses the message.',
        fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)), and no other ack.',
      });
    }
    const rejectionUnhandled = crashes.find((c) => messageOf(c.error).includes(FAILED_ON_PURPOSE));
    if (rejectionUnhandled) {
      t.fail({
        summary: 'handle() rejected, and your code did not handle the rejection: it crashed the process.',
        expected: 'the message nacked, and handed to handle() again',
        saw: `unhandled rejection: ${messageOf(rejectionUnhandled.error)}`,
        why: 'A handler can fail. A .then() without a second function (or a .catch()) leaves the rejection unhandled, and Node ends the process.',
        fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true))',
      });
    }
    // Then the hang-… ones: with prefetch 10, once "quick" is acked, ten are in your hands and one waits in the queue.
    t.provoke([1, '2a'], 'published "hang-1", "quick", "hang-2" … "hang-11": handle() never finishes for the hang-… ones, and resolves for "quick"');
    await t.publish(queue, [hanging[0]!, 'quick', ...hanging.slice(1)]);
    const hangsHeld = () => calls.slice(before).filter((c) => typeof c === 'string' && c.startsWith('hang')).length;
    // More than 10 held at once is a fact as soon as it is seen (no prefetch, or noAck): no need to wait.
    await t.waitFor(async () => hangsHeld() > 10 || (resolved.includes('quick') && hangsHeld() === 10 && (await t.messageCount(queue)) === 1), 1000, 5);
    const held = hangsHeld();
    const ready = await t.messageCount(queue);
    t.provoke(3, `cut your connection while ${held} handle() calls were still running, the way a network failure does`);
    t.cutConnections('a network failure in the middle of the work');
    // The queue drops the lost consumer and takes back what it held in one step: once the consumer
    // is gone, what came back is all that will (for a consumer that never acked, nothing).
    await t.waitFor(async () => (await t.messageCount(queue)) >= hanging.length || (await t.consumerCount(queue)) === 0, 1500, 5);
    expectNoCrash(t, crashes, 'when its connection was lost');
    t.observe(3, 'your process survived the lost connection');
    const back = (await t.takeMessages(queue)).map((m) => m.content.toString());
    const lost = hanging.filter((h) => !back.includes(h));
    if (lost.length) {
      const onlyBeforeQuick = lost.length === 1 && lost[0] === 'hang-1';
      t.fail({
        summary: onlyBeforeQuick
          ? 'The message "hang-1" was lost: handle("hang-1") never finished, but acking "quick" acked it too.'
          : `${lost.length === hanging.length ? 'Every' : `${lost.length} of the ${hanging.length}`} message whose handle() had not finished was lost when the connection was cut.`,
        expected: `${hanging.length} messages back in the queue (never acked), and nothing else`,
        saw: `${back.length} back: ${back.join(', ') || 'none'}`,
        why: onlyBeforeQuick
          ? 'channel.ack(msg, true) means "this message and every earlier one on the channel". "hang-1" came before "quick", so it was acked while its work was still going on, and a crash lost it.'
          : 'The broker only redelivers messages that were not acked. Acking before the work is done, or consuming with noAck: true, tells it "forget this one" at once: a crash in the middle loses it.',
        fix: onlyBeforeQuick ? 'channel.ack(msg): acks that message alone.' : 'Consume with { noAck: false }, and ack in the .then() of handle(), never before calling it.',
        link: t.ui('queues', queue),
      });
    }
    const handledBack = ['one', 'two', 'three', 'quick'].filter((x) => back.includes(x));
    if (handledBack.length) neverAcked(handledBack, 'the connection was cut');
    t.observe('2a', `the ${hanging.length} messages whose handle() never finished came back to the queue`);

    const tries = (text: string) => calls.slice(before).filter((c) => c === text).length;
    const failedBack = ['fail-once', 'fail-twice'].filter((x) => back.includes(x));
    if (failedBack.length) {
      t.fail({
        summary: `handle() rejected, and the message was neither acked nor rejected: ${failedBack.map((x) => `"${x}"`).join(' and ')} stayed in your consumer's hands until the connection was lost.`,
        expected: 'each failure rejected with requeue, and the message delivered again: handle("fail-once") twice, handle("fail-twice") three times',
        saw: `handle("fail-once") ${tries('fail-once')} time(s), handle("fail-twice") ${tries('fail-twice')} time(s), then ${failedBack.join(', ')} back in the queue only after the cut`,
        why: 'A message nobody acks or nacks holds a prefetch slot, and is never retried while the consumer lives.',
        fix: 'channel.reject(msg, true) when handle() rejects: the broker delivers it again (and on RabbitMQ 4.x a reject counts towards the queue\'s delivery limit).',
        link: t.ui('queues', queue),
      });
    }
    if (!settled()) {
      t.fail({
        summary: `handle() rejected, and the message was dropped: handle("fail-once") was called ${tries('fail-once')} time(s), handle("fail-twice") ${tries('fail-twice')} time(s).`,
        expected: 'handle("fail-once") twice and handle("fail-twice") three times: each failure rejected with requeue, and the message delivered again',
        saw: 'the failed messages gone from the queue',
        why: 'nack(msg, false, false) and reject(msg, false) tell the broker to throw the message away (or dead-letter it). The work it stood for is lost.',
        fix: 'channel.reject(msg, true) when handle() rejects: the broker delivers it again (and on RabbitMQ 4.x a reject counts towards the queue\'s delivery limit).',
        link: t.ui('queues', queue),
      });
    }
    if (back.length !== hanging.length) {
      t.fail({ summary: `After the connection was cut, ${back.length} messages came back instead of ${hanging.length}.`, expected: hanging.join(', '), saw: back.join(', '), why: 'The messages whose handle() resolved should have been acked, and gone.', fix: 'Ack each message once handle() has resolved.' });
    }
    t.observe('2b', 'each failure came back: handle("fail-once") ran twice and handle("fail-twice") three times, and both were acked in the end');
    t.expectRejectsNotNacks('2b', 'When handle() rejected');
    if (held !== 10 || ready !== 1) {
      t.fail({
        summary: `Your consumer held ${held} unfinished messages at once, where prefetch 10 allows 10.`,
        expected: '10 hang-… messages in your hands, 1 waiting in the queue',
        saw: `${held} in your hands, ${ready} waiting in the queue`,
        why:
          held > 10
            ? 'Without a prefetch limit the broker pushes as much as it can into your process (a classic queue: everything; a quorum queue: up to 2,000 messages): memory grows with the backlog, and other consumers get nothing.'
            : 'With a smaller prefetch, one slow message holds up the others: fewer messages are worked on at once.',
        fix: 'await channel.prefetch(10) before channel.consume().',
        link: t.ui('queues', queue),
      });
    }
    t.observe(1, 'with manual acks, 10 unfinished messages were in your hands and the 11th waited in the queue');

    // 3. The queue deleted under a running consumer: the broker cancels it.
    // RabbitMQ 3.10 in a cluster sometimes deletes a quorum queue without telling its consumer, and
    // then crashes the channel on that consumer's own basic.cancel (541 INTERNAL_ERROR): a broker bug,
    // seen under load. The checker then cuts that receiver's connection and tries again, up to three times.
    const cancels = await recordCancels(t);
    try {
      let third = await start(' a third time');
      for (let attempt = 1; ; attempt++) {
        const ch = await t.channel();
        await ch.deleteQueue(queue);
        await ch.close();
        t.provoke(4, `deleted the queue "${queue}" under your consumer: the broker cancels it, and amqplib calls your callback with null`);
        if (await t.waitFor(() => cancels.cancels.length > 0, 5000, 5)) break;
        t.cutConnections('the broker sent your consumer no cancel within 5 s (RabbitMQ 3.10 in a cluster sometimes does not), and stop() would meet a broker bug');
        if (attempt === 3) {
          t.log("the broker sent no cancel three times: your callback's null message was not tested in this run");
          return;
        }
        third = await start(' once more, for the cancel');
      }
      expectNoCrash(t, crashes, 'when the broker cancelled the consumer');
      if (cancels.cancels.some((c) => c.threw !== undefined)) {
        t.fail({
          summary: 'When the broker cancelled your consumer (the checker deleted the queue), your callback threw on the null message, and amqplib closed your connection.',
          expected: 'the null skipped, the receiver still running',
          saw: `your callback threw: ${messageOf(cancels.cancels.find((c) => c.threw !== undefined)!.threw)}`,
          why: 'amqplib calls the consume callback with null when the broker cancels the consumer. Reading msg.content of null throws, and amqplib closes the whole connection over it.',
          fix: 'First line of the callback: if (msg === null) return;',
        });
      }
      const stopped = await outcomeOf(t, 'stop() after the consumer was cancelled', () => third.stop());
      expectNoCrash(t, crashes, 'in stop(), after the consumer was cancelled');
      if (!stopped.resolved) {
        t.fail({ summary: `stop() failed after the broker had cancelled the consumer: ${messageOf(stopped.error)}`, expected: 'stop() closes the channel and the connection', saw: 'stop() rejected', fix: 'In the consume callback, return early on null and leave the channel alone: stop() then works as always.' });
      }
      await expectClosed(t, 'stop(), after the consumer was cancelled,');
      t.observe(4, 'your receiver took the cancel without error, and stop() still closed it');
    } finally {
      cancels.restore();
    }
  } finally {
    channelErrors.restore();
    restore();
  }
});

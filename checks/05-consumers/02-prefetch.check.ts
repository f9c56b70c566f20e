// Check 5.2: with prefetch N, the workers handle up to N messages at the same time, never more,
// and really reach N (handle() is slow and async); handle() gets each body as a string; a job
// whose handle() rejects comes back until it succeeds, every other one is handled once and acked;
// stop() leaves the job still running in the queue. A second instance survives the queue's
// deletion (a null message) and a reset connection; a refused declaration must reject with the
// broker's error and close the connection.
import { defineCheck } from '../../runner/check/context.js';
import type { ConsumerInfo } from '../../runner/broker/management.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionsSince, consumes } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/05-consumers/02-prefetch.js';
import { expectSurvivesDeletionResetAndRefusal, ScriptedHandler } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'jobs';
  const prefetch = 7;
  const total = 42;
  const handlerMs = 30;
  const jobs = Array.from({ length: total }, (_, i) => `job-${i + 1}`);
  // How often handle() rejects a job before it accepts it.
  const failures: Record<string, number> = { 'job-5': 1, 'job-9': 1, 'job-13': 2 };
  const last = 'job-last'; // handle() never resolves for this one

  let inFlight = 0;
  let maxInFlight = 0;
  const calls: unknown[] = [];
  const failed = new Map<string, number>();
  const done = new Set<string>();
  let lastStarted = false;
  const handle = async (text: string) => {
    calls.push(text);
    const key = String(text);
    if (key === last) {
      lastStarted = true;
      return new Promise<void>(() => undefined);
    }
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((resolve) => setTimeout(resolve, handlerMs)); // a slow call to another service
    inFlight--;
    const n = failed.get(key) ?? 0;
    if (n < (failures[key] ?? 0)) {
      failed.set(key, n + 1);
      throw new Error(`the other service failed on ${key}`);
    }
    done.add(key);
  };
  const count = (job: string) => calls.filter((c) => String(c) === job).length;

  t.provoke(1, `called startWorkers(url, "${queue}", ${prefetch}, handle); there is no queue "${queue}" yet`);
  const workers = await t.call(`startWorkers(url, "${queue}", ${prefetch}, handle)`, () => t.target.startWorkers(t.url, queue, prefetch, handle));
  await expectQuorumQueue(t, queue);
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 2000))) {
    t.fail({
      summary: `startWorkers() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', queue),
    });
  }
  // The management API lists the consumer (with its prefetch and ack mode) after a statistics
  // tick; start asking now, and look only if something goes wrong.
  const listed: Promise<ConsumerInfo | undefined> = t.waitForConsumer(queue, 8000).catch(() => undefined);

  await t.publish(queue, jobs);
  t.provoke(2, `published ${total} jobs; each handle() call takes ${handlerMs} ms, and the checker counts how many run at the same time`);
  t.provoke(3, `handle() rejects ${Object.entries(failures).map(([job, n]) => `${job} ${n === 1 ? 'once' : `${n} times`}`).join(', ')} before it accepts them`);
  // More handlers at once than the prefetch is a fact as soon as it is seen: no need to wait for the rest.
  const finished = await t.waitFor(() => done.size >= total || maxInFlight > prefetch, 5000);
  t.log(`handled ${done.size} of ${total}; at most ${maxInFlight} at the same time`);

  const notText = calls.find((c) => typeof c !== 'string');
  if (notText !== undefined) {
    t.fail({
      summary: `handle() got ${Buffer.isBuffer(notText) ? 'a Buffer' : `a ${typeof notText}`}, not the body as a string.`,
      expected: 'handle("job-1"): a string',
      saw: `handle(${Buffer.isBuffer(notText) ? `<Buffer "${notText.toString()}">` : JSON.stringify(notText)})`,
      why: 'msg.content is a Buffer: bytes. A handler that compares, logs or stores text gets something else; a Buffer is not equal to the string it holds.',
      fix: 'handle(msg.content.toString())',
    });
  }
  if (maxInFlight > prefetch) {
    const c = await listed;
    const cause = !c
      ? ''
      : !c.ack_required
        ? ': your consumer does not acknowledge (noAck: true), and the broker ignores the prefetch of a consumer that does not ack'
        : c.prefetch_count === 0
          ? ': your consumer has no prefetch (prefetch_count 0 means unlimited)'
          : `: your consumer's prefetch is ${c.prefetch_count}`;
    t.fail({
      summary: `Up to ${maxInFlight} handlers ran at the same time, more than the prefetch of ${prefetch}${cause}.`,
      expected: `at most ${prefetch} at once`,
      saw: `${maxInFlight} at once${c ? ` (consumer: ack_required ${c.ack_required}, prefetch_count ${c.prefetch_count})` : ''}`,
      why: 'amqplib calls your callback for every delivery without waiting for the previous one. The only thing that bounds how many run at once is the prefetch: the broker stops sending when that many messages are unacknowledged. Without it (or with noAck) a backlog of a million messages lands in your process at once.',
      fix: `await channel.prefetch(prefetch) before consume(), and consume with { noAck: false }.`,
      link: t.ui('queues', queue),
    });
  }
  if (!finished) {
    const missing = jobs.filter((j) => !done.has(j));
    const onlyFailed = missing.length > 0 && missing.every((j) => failures[j]);
    t.fail({
      summary: onlyFailed
        ? `The jobs that handle() rejected were not tried again until it accepted them: ${missing.map((j) => `${j} (handled ${count(j)} time${count(j) === 1 ? '' : 's'}, rejected ${failures[j]} time${failures[j] === 1 ? '' : 's'})`).join(', ')}.`
        : `Only ${done.size} of ${total} messages were handled within 5 s.`,
      expected: onlyFailed ? 'each rejected job requeued and handled again, until handle() resolves' : `${total} handled (about ${Math.ceil(total / prefetch) * handlerMs} ms with ${prefetch} at a time)`,
      saw: `${done.size} handled, at most ${maxInFlight} at the same time`,
      why: onlyFailed
        ? 'A failing handler (the other service timed out) is a passing problem: the message must go back to the queue to be tried again. Left unanswered it blocks a prefetch slot until the channel closes; rejected without requeue it is gone.'
        : 'Each handled message must be acked: the broker sends the next one only when a slot of the prefetch is free.',
      fix: onlyFailed ? 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true))' : 'Ack each message when its handle() resolves.',
      link: t.ui('queues', queue),
    });
  }
  if (maxInFlight < prefetch) {
    const c = await listed;
    const serial = c?.prefetch_count === prefetch;
    t.fail({
      summary: serial
        ? `At most ${handlers(maxInFlight)} ran at a time, although the prefetch is ${prefetch}: your code waits for each handler before it starts the next.`
        : `At most ${handlers(maxInFlight)} ran at a time: ${c ? `your consumer's prefetch is ${c.prefetch_count}, not the ${prefetch} it was given` : `the prefetch of ${prefetch} was not used`}.`,
      expected: `${prefetch} at once (the prefetch), for a handler that spends its time waiting`,
      saw: `at most ${maxInFlight} at once${c ? ` (consumer prefetch_count ${c.prefetch_count})` : ''}`,
      why: serial
        ? 'Chaining every handler behind the previous one makes the prefetch useless: the work is done one by one, while the broker has already handed over more messages. handle() mostly waits (for a database, an HTTP call), so several can wait at the same time.'
        : 'The prefetch is the concurrency: with prefetch 1 the broker hands over one message, then waits for its ack. Use the value you are given.',
      fix: serial
        ? 'Call handle() for each message as it arrives, without awaiting the previous one: handle(text).then(() => channel.ack(msg), …).'
        : 'await channel.prefetch(prefetch) with the prefetch argument.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, `${prefetch} handlers ran at the same time, never more: the prefetch of ${prefetch} given`);

  // Every job handled as often as it was rejected, plus once.
  const wrongCounts = jobs.filter((j) => count(j) !== (failures[j] ?? 0) + 1);
  if (wrongCounts.length > 0) {
    t.fail({
      summary: `Some jobs reached handle() more often than they failed: ${wrongCounts.map((j) => `${j} ${count(j)} times`).join(', ')}.`,
      expected: `each job once, plus once more for each rejection (${Object.entries(failures).map(([j, n]) => `${j} ${n + 1} times`).join(', ')})`,
      saw: `${calls.length} calls for ${total} jobs`,
      why: 'A job comes back only when it was requeued, or left unacknowledged when a channel closed. A successful job that comes back is done twice: an email sent twice.',
      fix: 'Answer each message exactly once: ack when handle() resolves, reject with requeue when it rejects.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, `every job reached handle() as a string; the rejected ones came back until handle() accepted them (${Object.entries(failures).map(([j, n]) => `${j} ${n + 1} times`).join(', ')})`);
  t.expectRejectsNotNacks(3, 'When handle() rejected');
  const allUpTo = t.sent('basic.ack').filter((m) => m.multiple);
  if (allUpTo.length > 0) {
    t.fail({
      summary: `Your consumer acks with allUpTo (channel.ack(msg, true)): each such ack also acknowledges every earlier message, the ones whose handle() is still running included.`,
      expected: 'channel.ack(msg): one ack for one message, once its own handle() resolved',
      saw: `${allUpTo.length} basic.ack with the multiple bit set, on delivery tags ${allUpTo.slice(0, 5).map((m) => m.deliveryTag).join(', ')}${allUpTo.length > 5 ? ', …' : ''}`,
      why: 'Handlers that run at the same time finish in any order. An ack with allUpTo answers for the slower ones before they are done: if the process dies now, their messages are lost; if one of them fails, its reject hits a delivery tag already acked, and the broker closes the channel (PRECONDITION_FAILED, unknown delivery tag). Here the handlers happened to finish in order.',
      fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)): ack(msg) with no second argument.',
      link: t.ui('queues', queue),
    });
  }
  const consumer = consumes(connectionsSince())[0];
  if (consumer && consumer.prefetch !== prefetch) {
    t.fail({
      summary:
        consumer.prefetch === undefined || consumer.prefetch === 0
          ? `At most ${prefetch} handlers ran at once, but your consumer has no prefetch: the broker handed over every waiting job at once, and they waited in your process.`
          : `At most ${prefetch} handlers ran at once, but your consumer's prefetch is ${consumer.prefetch}: the broker handed over more jobs than you work on, and they waited in your process.`,
      expected: `basic.qos with prefetch_count ${prefetch} before basic.consume (await channel.prefetch(prefetch))`,
      saw: consumer.prefetch === undefined ? 'no basic.qos before basic.consume' : `basic.qos prefetch_count ${consumer.prefetch}`,
      why: 'A limit inside your process bounds the handlers, not the deliveries. The broker sends the whole backlog (a quorum queue, up to 2,000 messages per consumer): it waits unacknowledged in your memory, out of reach of any other consumer, and comes back all at once when your process dies. The prefetch makes the broker keep it.',
      fix: 'await channel.prefetch(prefetch) before consume(), and call handle() for each message as it arrives: the broker then bounds what is in your hands, and no limiter of your own is needed.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, `read the frames your code sent: basic.qos prefetch_count ${prefetch} before basic.consume, and one ack per message`);

  // stop() while one handler still runs: its message was never acked, so it goes back to the queue.
  await t.publish(queue, [last]);
  if (!(await t.waitFor(() => lastStarted, 2000))) {
    t.fail({ summary: `handle() never got "${last}", published after the others.`, expected: `handle("${last}")`, saw: 'no call', fix: 'Keep consuming: ack every message, so the broker sends the next.', link: t.ui('queues', queue) });
  }
  t.provoke(5, `called stop() while handle("${last}") has still not resolved`);
  await t.call('stop()', () => workers.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(5, 'after stop(), your connection is closed');
  const left = (await t.takeMessages(queue, 50)).map((m) => m.content.toString());
  if (left.length !== 1 || left[0] !== last) {
    const c = await listed;
    const early = !left.includes(last);
    t.fail({
      summary: early
        ? `"${last}" was acknowledged before handle() resolved it: after stop() it is not back in "${queue}"${c && !c.ack_required ? ' (your consumer does not acknowledge at all: noAck: true)' : ''}.`
        : `After stop(), ${left.length} message(s) went back to "${queue}": they were handled but never acknowledged.`,
      expected: `only "${last}" back in "${queue}" (its handle() never resolved)`,
      saw: left.length ? left.slice(0, 10).join(', ') : `"${queue}" empty`,
      why: early
        ? 'An ack says "done, forget it". Sent before the work is done (or with noAck: true), the message is lost when the service stops or dies in the middle.'
        : 'A message that is not acked comes back when the channel closes, and is processed again.',
      fix: 'Consume with { noAck: false }, and ack each message in the .then() of its handle(), once it has resolved.',
      link: t.ui('queues', queue),
    });
  }
  t.observe([1, 3, 5], `after stop(), only "${last}" is back in "${queue}": every other job was acked once handled, and none before`);

  // A second instance: the queue deleted under it, its connection reset.
  await t.call(`startWorkers(url, "${queue}", ${prefetch}, handle) again`, () => t.target.startWorkers(t.url, queue, prefetch, new ScriptedHandler<string>(String, () => ({ kind: 'ok' })).handle));
  await expectSurvivesDeletionResetAndRefusal(t, { queue, under: 'the second instance', lines: { deletion: [1], errors: [4] }, start: (legacy) => ({
    label: `startWorkers(url, "${legacy}", ${prefetch}, handle)`, call: () => t.target.startWorkers(t.url, legacy, prefetch, handle) }) });
  t.note(`${prefetch} handlers at a time, ${total} messages of ${handlerMs} ms: done in about ${Math.ceil(total / prefetch) * handlerMs} ms instead of ${total * handlerMs} ms one by one.`);
});

function handlers(n: number): string {
  return `${n} handler${n === 1 ? '' : 's'}`;
}

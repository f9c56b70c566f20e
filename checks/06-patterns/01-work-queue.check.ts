// Check 6.1: two workers of the learner's code, one slow (200 ms a task) and one fast (5 ms),
// share 30 tasks. With prefetch 1 and acks after the work, the fast one does most of them and
// neither ever holds two at once; dealt out in turn, each gets half and the fast one idles.
// Then tasks whose work() fails must come back, a task in progress when stop() is called must
// go back to the queue, and the worker must survive its consumer being cancelled and its
// connection being cut.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/01-work-queue.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionMark, connectionsSince, type AmqpConnection } from '../../runner/check/frames.js';
import { cutConnectionsAndSurvive, deleteQueueUnderConsumer, expectMethods, simulatedWorker, type TaskScript } from './support.js';

const TASKS = 30;
const SLOW_MS = 200;
const FAST_MS = 5;
const RETRIES: [task: string, failures: number][] = [
  ['retry-once', 1],
  ['retry-twice', 2],
];
const HANG = 'hang';
// work() rejects it on whichever worker takes it first, every time, and does it at once on the other.
const ELSEWHERE = 'fails-on-one-worker';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'tasks';
  const script: TaskScript = { failFirst: new Map(RETRIES), hang: new Set([HANG]), failWhereFirstTaken: new Set([ELSEWHERE]) };
  const slow = simulatedWorker(SLOW_MS, script, 'slow worker');
  const fast = simulatedWorker(FAST_MS, script, 'fast worker');
  const connectionsOf = new Map<Exercise.Worker, AmqpConnection[]>();
  const start = async (label: string, work: (task: string) => Promise<void>) => {
    const mark = connectionMark();
    const worker = await t.call(`startWorker(url, "${queue}", work) for ${label}`, () => t.target.startWorker(t.url, queue, work));
    expectMethods(t, 'startWorker()', worker, ['stop']);
    connectionsOf.set(worker, connectionsSince(mark));
    return worker;
  };

  // 1. The first worker declares the queue; the second declares it again, with the same options.
  t.provoke(1, `started the slow worker (${SLOW_MS} ms a task) in a vhost where "${queue}" does not exist yet`);
  const slowWorker = await start(`the slow worker (${SLOW_MS} ms a task)`, slow.work);
  await expectQuorumQueue(t, queue, {
    why: 'Every worker declares the queue it consumes from, so that it exists whichever starts first.',
    fix: `In startWorker(): await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
  });
  t.observe(1, `read "${queue}" from the broker: a durable quorum queue`);
  t.provoke(1, `started the fast worker (${FAST_MS} ms a task): it declares "${queue}" again`);
  const fastWorker = await start(`the fast worker (${FAST_MS} ms a task)`, fast.work);
  const consumers = await t.waitFor(async () => ((await t.consumerCount(queue)) >= 2 ? 2 : undefined), 2000);
  if (!consumers) {
    const n = await t.consumerCount(queue);
    t.fail({
      summary: `Two workers were started, but "${queue}" has ${n} consumer${n === 1 ? '' : 's'}.`,
      expected: '2 consumers, one per worker',
      saw: `${n}`,
      fix: 'Each call to startWorker() must consume from the queue: channel.consume(queue, onMessage, { noAck: false }).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(1, `"${queue}" has 2 consumers: the second declaration was accepted`);

  // 2. Fair dispatch: 30 tasks, a slow and a fast worker.
  const tasks = Array.from({ length: TASKS }, (_, i) => `task-${String(i + 1).padStart(2, '0')}`);
  await t.publish(queue, tasks);
  t.provoke([2, 3], `published ${TASKS} tasks for a slow worker and a fast one`);

  // Every task handed to one of the workers (work() called), and the fast one idle again.
  const handedOut = () => slow.state.handed.length + fast.state.handed.length;
  await t.waitFor(() => handedOut() >= TASKS && !fast.busy, 2500);
  const s = slow.state.handed.length;
  const f = fast.state.handed.length;
  t.log(`split: the fast worker took ${f} task(s), the slow one ${s}`);

  if (handedOut() < TASKS) {
    t.fail({
      summary: `Only ${handedOut()} of the ${TASKS} tasks reached work() within 2.5 s (fast worker ${f}, slow worker ${s}).`,
      expected: `all ${TASKS} tasks handed out, one at a time`,
      saw: `${handedOut()} call(s) of work()`,
      why: 'With prefetch 1 the broker sends a worker its next task only after the ack of the one in hand. A worker that never acks gets one task, and then nothing ever again.',
      fix: 'Ack each task when the promise work() returns resolves: work(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', queue),
    });
  }
  const notText = slow.state.notText ?? fast.state.notText;
  if (notText) {
    t.fail({
      summary: `work() was called with ${notText}, not with the text of the task.`,
      expected: 'work("task-01"): a string',
      saw: `work(${notText})`,
      why: 'msg.content is a Buffer: the raw bytes of the body. The work function expects the text; a Buffer only looks like it when printed.',
      fix: 'work(msg.content.toString())',
    });
  }

  if (s > TASKS / 3) {
    // Unfair: see what happens to the tasks the slow worker is sitting on if it dies now.
    slow.freeze();
    fast.freeze();
    const held = s + f - slow.state.done.length - fast.state.done.length;
    t.cutConnections(`the slow worker is sitting on ${held} unfinished task(s); what happens to them if it dies?`);
    const back = (await t.waitFor(async () => ((await t.messageCount(queue)) >= held ? held : undefined), 600)) ?? (await t.messageCount(queue));
    t.log(`${back} task(s) came back to the queue`);
    const lost = held - back;
    if (lost > 0) {
      t.fail({
        summary: `The slow worker took ${s} of the ${TASKS} tasks at once, the fast one ${f}; and when the checker cut the connections, ${lost} unfinished task(s) were lost.`,
        expected: 'the fast worker takes most tasks (prefetch 1), and unfinished tasks go back to the queue',
        saw: `slow ${s}, fast ${f}; ${back} of ${held} unfinished tasks came back`,
        why: 'With noAck: true (or an ack sent before the work is done) a task counts as finished the moment it leaves the broker. Prefetch only counts unacknowledged tasks, so it limits nothing, and a worker that dies loses everything it was holding.',
        fix: 'Consume with { noAck: false } and ack in the .then() of work(), after the work, never before it.',
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: `The tasks were dealt out in turn, not to whichever worker was free: the slow worker took ${s} of the ${TASKS}, the fast one ${f}.`,
      expected: `the fast worker takes most tasks (at least ${Math.ceil((TASKS * 2) / 3)}), the slow one a few`,
      saw: `slow ${s}, fast ${f}: the fast worker sat idle while ${s - slow.state.done.length} tasks waited inside the slow one`,
      why: 'Without a prefetch limit the broker pushes every task to the consumers in turn, as fast as it can, without looking at who is busy. prefetch(1) makes it wait for an ack before a worker gets its next task. It applies to consumers started after it: calling it after consume() changes nothing.',
      fix: 'await channel.prefetch(1) before channel.consume(...), and ack each task after its work.',
      link: t.ui('queues', queue),
    });
  }
  const most = Math.max(slow.state.maxAtOnce, fast.state.maxAtOnce);
  if (most > 1) {
    const who = slow.state.maxAtOnce >= fast.state.maxAtOnce ? 'slow' : 'fast';
    t.fail({
      summary: `The ${who} worker was handed ${most} tasks at once: it took more than one unacknowledged task at a time.`,
      expected: 'at most 1 task in hand per worker (prefetch 1)',
      saw: `the slow worker held up to ${slow.state.maxAtOnce} task(s) at once, the fast one ${fast.state.maxAtOnce}; split: slow ${s}, fast ${f}`,
      why: `The tasks a busy worker holds wait inside it, even while another worker is idle; with prefetch ${most}, the ${who} worker sits on ${most} tasks at a time.
 Fair dispatch needs a limit of one.`,
      fix: 'await channel.prefetch(1) before channel.consume(...).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(2, `each worker held at most one task at a time, and the fast worker did ${f} of the ${TASKS}`);
  t.note(`Fair split: the fast worker did ${f} of the ${TASKS} tasks, the slow one ${s}.`);

  // Every task done exactly once.
  await t.waitFor(() => slow.state.done.length + fast.state.done.length >= TASKS, 2 * SLOW_MS + 500);
  const seen = [...slow.state.handed, ...fast.state.handed].sort();
  if (seen.join('\n') !== tasks.join('\n')) {
    const dupes = seen.filter((x, i) => seen.indexOf(x) !== i);
    t.fail({
      summary: `work() was not called exactly once per task${dupes.length ? `: ${dupes.slice(0, 3).join(', ')} came twice` : ''}.`,
      expected: `${TASKS} calls, one per task`,
      saw: `${seen.length} calls`,
      why: 'A task comes back only when it was not acked (or was rejected with requeue).',
      fix: 'Ack each task exactly once, after work() resolves.',
    });
  }
  t.observe(3, `work() got each of the ${TASKS} tasks once, as text`);

  // 3. Failures: a task whose work() rejects must go back to the queue and be tried again.
  const retryTasks = RETRIES.map(([task]) => task);
  const calls = (task: string) => slow.handedCount(task) + fast.handedCount(task);
  const finished = (task: string) => slow.doneCount(task) + fast.doneCount(task);
  await t.publish(queue, retryTasks);
  t.provoke(3, `published ${retryTasks.map((x) => `"${x}"`).join(' and ')}: work() rejects them the first time, and the first two times`);
  const retried = await t.waitFor(() => retryTasks.every((task) => finished(task) >= 1), 1500);
  if (!retried) {
    const stuck = RETRIES.filter(([task, failures]) => calls(task) <= failures);
    const back = await stuckTasksComeBack(stuck.length);
    const described = stuck.map(([task, failures]) => `work("${task}") called ${calls(task)} time(s), rejected the first ${failures}`).join('; ');
    t.fail({
      summary:
        back > 0
          ? `When work() rejected, the task was neither acked nor rejected: the worker sat on it (${stuck.map(([x]) => `"${x}"`).join(', ')}).`
          : `When work() rejected, the task was dropped: ${stuck.map(([x]) => `"${x}"`).join(', ')} never came back to be tried again.`,
      expected: 'a task whose work() rejects goes back to the queue (channel.reject(msg, true)) and is tried again until it succeeds',
      saw: `${described}; after the checker cut your connections, ${back} task(s) came back to the queue`,
      why:
        back > 0
          ? 'With prefetch 1, a task left unacknowledged blocks its worker for good: the broker sends it nothing more, and only when the connection closes does the task go back to the queue.'
          : 'A failure is often temporary: a database restarting, a timeout. A task acked (or rejected without requeue) after a failure is gone for good, and nobody will ever do it.',
      fix: 'work(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, `each failed task came back and was done once: ${RETRIES.map(([task]) => `"${task}" handed ${calls(task)} times`).join(', ')}`);

  // A task that fails on one worker, every time, and works on the other: only a requeue lets the other one have it.
  await t.publish(queue, [ELSEWHERE]);
  t.provoke(3, `published "${ELSEWHERE}": work() rejects it on the worker that takes it first, every time, and does it at once on the other`);
  if (!(await t.waitFor(() => finished(ELSEWHERE) >= 1, 1500))) {
    const owner = [slow, fast].find((w) => w.name === script.firstTakenBy?.get(ELSEWHERE));
    const other = owner === slow ? fast : slow;
    const tries = owner?.handedCount(ELSEWHERE) ?? 0;
    if (owner && tries > 1 && other.handedCount(ELSEWHERE) === 0) {
      slow.freeze();
      fast.freeze();
      t.fail({
        summary: `work("${ELSEWHERE}") rejected ${tries} times in a row on the ${owner.name}, and the task never went back to the queue for the ${other.name}: your worker retries a failed task itself instead of rejecting it back to the queue.`,
        expected: 'a task whose work() rejects is rejected back to the queue (channel.reject(msg, true)), where the broker gives it to a worker that is free',
        saw: `work("${ELSEWHERE}") called ${tries} times on the ${owner.name} (where it fails every time), never on the ${other.name} (where it would succeed)`,
        why: 'A task that fails on one worker (its disk is full, its database connection is broken) may well succeed on another. A retry loop inside the worker keeps the task, and the one task its prefetch allows, to itself for as long as it fails; a reject with requeue puts it back in the queue, for any worker.',
        fix: 'work(text).then(() => channel.ack(msg), () => channel.reject(msg, true)): no retry loop of your own; the queue is the retry.',
        link: t.ui('queues', queue),
      });
    }
    t.fail({
      summary: `The task "${ELSEWHERE}", which work() rejects on the ${owner?.name ?? 'worker that took it'}, never reached the other worker.`,
      expected: 'a task whose work() rejects goes back to the queue (channel.reject(msg, true)), where another worker can take it',
      saw: `work("${ELSEWHERE}") called ${slow.handedCount(ELSEWHERE)} time(s) on the slow worker, ${fast.handedCount(ELSEWHERE)} on the fast one`,
      fix: 'work(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, `"${ELSEWHERE}" failed on the ${script.firstTakenBy?.get(ELSEWHERE)}, went back to the queue, and the other worker did it`);
  t.expectRejectsNotNacks(3, 'When work() rejected');

  // 5. stop() while a task is in progress: it must go back to the queue, not be acked.
  await t.publish(queue, [HANG]);
  if (!(await t.waitFor(() => calls(HANG) > 0, 1000))) {
    t.fail({ summary: `The task "${HANG}" never reached work(): the workers stopped taking tasks.`, fix: 'Ack (or reject) every task exactly once, so that the broker keeps sending the next one.' });
  }
  t.provoke([3, 5], `called stop() on both workers while work("${HANG}") was still in progress`);
  await t.expectClosedOnReturn('stop() on the slow worker', connectionsOf.get(slowWorker)!, () => slowWorker.stop());
  await t.expectClosedOnReturn('stop() on the fast worker', connectionsOf.get(fastWorker)!, () => fastWorker.stop());
  await t.expectConnectionsClosed('stop()');
  await t.queue(queue, { why: 'stop() stops one worker; the queue, and the tasks in it, belong to every worker.', fix: 'In stop(), cancel the consumer and close the connection; never delete the queue.' });
  const consumersLeft = await t.consumerCount(queue);

  await t.waitFor(async () => (await t.messageCount(queue)) >= 1, 500);
  const left = (await t.takeMessages(queue)).map((m) => m.content.toString());
  if (consumersLeft > 0 || left.join() !== HANG) {
    const others = left.filter((x) => x !== HANG);
    t.fail({
      summary: others.length
        ? `After stop(), ${others.length} finished task(s) went back to the queue: they were done but never acknowledged.`
        : consumersLeft > 0
          ? `After stop(), "${queue}" still has ${consumersLeft} consumer(s).`
          : `After stop(), the task "${HANG}", still in progress, was not back in the queue: it had been acked before its work finished.`,
      expected: `only "${HANG}" back in the queue, and no consumer left`,
      saw: `in the queue: ${left.map((x) => `"${x}"`).join(', ') || 'nothing'}; consumers: ${consumersLeft}`,
      why: 'A task is acked when its work is done, and only then. A task in progress when the worker stops goes back to the queue for another worker; a finished task that was never acked comes back and is done twice.',
      fix: 'Ack in the .then() of work(), exactly once; in stop(), cancel the consumer and close the connection without acking what is still in progress.',
      link: t.ui('queues', queue),
    });
  }
  t.observe([3, 5], `after stop(): no consumer, the connections closed, and only "${HANG}" (not acked) back in the queue`);

  // 4. A worker whose consumer is cancelled, then whose connection is cut.
  t.provoke(1, `started a worker again: "${queue}" exists already`);
  await start('a third worker', simulatedWorker(FAST_MS).work);
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) === 1, 1000))) {
    t.fail({ summary: `A worker started again does not consume "${queue}".`, fix: 'startWorker() must work when called again: declare, prefetch, consume.' });
  }
  t.observe(1, `the worker started again consumes "${queue}"`);
  await deleteQueueUnderConsumer(t, queue, 4);
  await cutConnectionsAndSurvive(t, 4, 'a network failure under a running worker');

  /** After a verdict: cuts the connections and counts the tasks that come back (0 when they were dropped). */
  async function stuckTasksComeBack(expected: number): Promise<number> {
    slow.freeze();
    fast.freeze();
    t.cutConnections('to see whether the failed tasks were still held by a worker');
    return (await t.waitFor(async () => ((await t.messageCount(queue)) >= expected ? expected : undefined), 600)) ?? (await t.messageCount(queue));
  }
});

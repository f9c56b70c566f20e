// Check 6.1: two workers of the learner's code, one slow (200 ms a task) and one fast (5 ms),
// share 30 tasks. With prefetch 1 and acks after the work, the fast one does most of them;
// dealt out in turn, each gets half and the fast one idles. Everything must be acked.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/01-work-queue.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { simulatedWorker } from './support.js';

const TASKS = 30;
const SLOW_MS = 200;
const FAST_MS = 5;

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'tasks';
  const slow = simulatedWorker(SLOW_MS);
  const fast = simulatedWorker(FAST_MS);

  const slowWorker = await t.call(`startWorker(url, "${queue}", work) for the slow worker (${SLOW_MS} ms a task)`, () =>
    t.target.startWorker(t.url, queue, slow.work),
  );
  const fastWorker = await t.call(`startWorker(url, "${queue}", work) for the fast worker (${FAST_MS} ms a task)`, () =>
    t.target.startWorker(t.url, queue, fast.work),
  );
  await expectQuorumQueue(t, queue, {
    why: 'Every worker declares the queue it consumes from, so that it exists whichever starts first.',
    fix: `In startWorker(): await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
  });
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

  const tasks = Array.from({ length: TASKS }, (_, i) => `task-${String(i + 1).padStart(2, '0')}`);
  await t.publish(queue, tasks);

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
      fix: 'Ack each task when the promise work() returns resolves: work(text).then(() => channel.ack(msg), () => channel.nack(msg)).',
      link: t.ui('queues', queue),
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
  t.note(`Fair split: the fast worker did ${f} of the ${TASKS} tasks, the slow one ${s}.`);

  // Every task done exactly once, and acked.
  await t.waitFor(() => slow.state.done.length + fast.state.done.length >= TASKS, 2 * SLOW_MS + 500);
  const seen = [...slow.state.handed, ...fast.state.handed].sort();
  if (seen.join() !== tasks.join()) {
    const dupes = seen.filter((x, i) => seen.indexOf(x) !== i);
    t.fail({
      summary: `work() was not called exactly once per task${dupes.length ? `: ${dupes.slice(0, 3).join(', ')} came twice` : ''}.`,
      expected: `${TASKS} calls, one per task`,
      saw: `${seen.length} calls`,
      why: 'A task comes back only when it was not acked (or was nacked).',
      fix: 'Ack each task exactly once, after work() resolves.',
    });
  }
  await t.call('stop() on both workers', async () => {
    await slowWorker.stop();
    await fastWorker.stop();
  });
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0) {
    t.fail({
      summary: `After stop(), ${left} task(s) went back to the queue: they were done but never acknowledged.`,
      expected: '0 tasks left',
      saw: `${left} ready again`,
      why: 'A task that is never acked stays "unacked"; when the channel closes the broker gives it to another worker, which does it again.',
      fix: 'channel.ack(msg) once work() has resolved.',
      link: t.ui('queues', queue),
    });
  }
});

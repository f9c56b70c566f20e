// Check 5.2: with prefetch N, the workers handle up to N messages at the same time, never more,
// and really reach N (handle() is slow and async); every message is handled once and acked.
import { defineCheck } from '../../runner/check/context.js';
import type { ConsumerInfo } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/05-consumers/02-prefetch.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'jobs';
  const prefetch = 7;
  const total = 42;
  const handlerMs = 30;

  let inFlight = 0;
  let maxInFlight = 0;
  const calls: string[] = [];
  const done = new Set<string>();
  const handle = async (text: string) => {
    calls.push(text);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((resolve) => setTimeout(resolve, handlerMs)); // a slow call to another service
    inFlight--;
    done.add(text);
  };

  const workers = await t.call(`startWorkers(url, "${queue}", ${prefetch}, handle)`, () => t.target.startWorkers(t.url, queue, prefetch, handle));
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

  await t.publish(queue, Array.from({ length: total }, (_, i) => `job-${i + 1}`));
  t.log(`each handle() call takes ${handlerMs} ms; the checker counts how many run at the same time`);
  const finished = await t.waitFor(() => done.size >= total, 5000);
  t.log(`handled ${done.size} of ${total}; at most ${maxInFlight} at the same time`);

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
    t.fail({
      summary: `Only ${done.size} of ${total} messages were handled within 5 s.`,
      expected: `${total} handled (about ${Math.ceil(total / prefetch) * handlerMs} ms with ${prefetch} at a time)`,
      saw: `${done.size} handled, at most ${maxInFlight} at the same time`,
      why: 'Each handled message must be acked: the broker sends the next one only when a slot of the prefetch is free.',
      fix: 'Ack each message when its handle() resolves.',
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

  // Every message handled exactly once, and acked: nothing comes back after stop().
  await t.call('stop()', () => workers.stop());
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0 || calls.length !== total) {
    t.fail({
      summary: left > 0 ? `After stop(), ${left} message(s) went back to "${queue}": they were handled but not acknowledged.` : `handle() was called ${calls.length} times for ${total} messages.`,
      expected: `${total} calls, "${queue}" empty after stop()`,
      saw: `${calls.length} calls, ${left} message(s) left`,
      fix: 'Ack each message once, when its handle() resolves.',
      link: t.ui('queues', queue),
    });
  }
  t.note(`${prefetch} handlers at a time, ${total} messages of ${handlerMs} ms: done in about ${Math.ceil(total / prefetch) * handlerMs} ms instead of ${total * handlerMs} ms one by one.`);
});

function handlers(n: number): string {
  return n === 1 ? '1 handler' : `${n} handlers`;
}

// Check 5.3: shutdown() called while handlers are running stops new deliveries, lets the
// running handlers finish and ack, closes the connection, and only then resolves. A second
// instance then finds exactly the messages that were never started: none lost, none twice.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/05-consumers/03-shutdown.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'emails';
  const total = 12;

  // The checker's handler: each call waits until the checker lets it finish, so the checker
  // decides when an email is "sent" (and so when your code acks it).
  const calls = new Map<string, number>(); // message -> how many times handle() got it
  const held = new Map<string, () => void>(); // running handlers, waiting to be released
  let holding = true;
  let lastStartAt = 0;
  let shutdownBegan = false;
  const startedAfterShutdown: string[] = [];
  let onLateStart: () => void = () => undefined;
  const lateStart = new Promise<void>((resolve) => (onLateStart = resolve));
  const handle = async (text: string) => {
    calls.set(text, (calls.get(text) ?? 0) + 1);
    lastStartAt = Date.now();
    if (shutdownBegan) {
      startedAfterShutdown.push(text);
      onLateStart();
    }
    if (holding) await new Promise<void>((resolve) => held.set(text, resolve));
    else await new Promise((resolve) => setTimeout(resolve, 20));
    held.delete(text);
  };
  const release = (which: (text: string) => boolean) => {
    const chosen = [...held.keys()].filter(which);
    for (const text of chosen) held.get(text)!();
    return chosen;
  };

  // 1. Start, and give it work.
  const service = await t.call(`start(url, "${queue}", handle)`, () => t.target.start(t.url, queue, handle));
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 2000))) {
    t.fail({
      summary: `start() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      fix: 'Call channel.consume(queue, onMessage, { noAck: false }) before returning.',
      link: t.ui('queues', queue),
    });
  }
  await t.publish(queue, Array.from({ length: total }, (_, i) => `email-${i + 1}`));
  // Wait until the prefetch window is full and nothing more is on its way.
  if (!(await t.waitFor(() => calls.size >= 5 && Date.now() - lastStartAt > 80, 2000, 20))) {
    t.fail({
      summary: `Only ${plural(calls.size, 'handler')} started for ${total} waiting messages.`,
      expected: '5 handlers running at once (prefetch 5)',
      saw: `${calls.size} started`,
      fix: 'await channel.prefetch(5), and call handle() for each message without awaiting the previous one (as in 5.2).',
      link: t.ui('queues', queue),
    });
  }

  // 2. Shut down in the middle of the work.
  const startedBefore = [...calls.keys()];
  shutdownBegan = true;
  t.log(`called shutdown() while ${held.size} handlers were running: ${startedBefore.join(', ')}`);
  let resolvedAt = 0;
  const shutdown = t.call('shutdown()', () => service.shutdown(), { timeoutMs: 5000 }).then(() => {
    resolvedAt = Date.now();
  });
  shutdown.catch(() => undefined); // awaited below; a failure there is reported there

  // 2a. It must not resolve while the handlers still run.
  await Promise.race([shutdown, new Promise((resolve) => setTimeout(resolve, 300))]);
  if (resolvedAt) {
    t.fail({
      summary: `shutdown() resolved while ${plural(held.size, 'handler')} ${held.size === 1 ? 'was' : 'were'} still running: their messages were not acked before the connection closed.`,
      expected: 'shutdown() resolves after the running handlers have finished and their messages are acked',
      saw: `${plural(held.size, 'handler')} still running when shutdown() resolved`,
      why: 'Closing the connection returns every unacknowledged message to the queue. The emails being sent are sent anyway, then delivered again to the next instance: sent twice. Their acks, later, fail on a closed channel.',
      fix: 'Keep the promise of every running handler (a Set); in shutdown(): cancel the consumer, await Promise.all(those promises), then close the channel and the connection.',
      link: t.ui('queues', queue),
    });
  }

  // 2b. Some handlers finish: their acks free prefetch slots. A consumer still registered gets new messages.
  const firstDone = release((text) => Number(text.split('-')[1]) % 2 === 1);
  t.log(`let ${firstDone.join(', ')} finish; the others keep running`);
  await Promise.race([lateStart, shutdown, new Promise((resolve) => setTimeout(resolve, 200))]);
  if (startedAfterShutdown.length > 0) {
    t.fail({
      summary: `${plural(startedAfterShutdown.length, 'new message')} reached your handler after shutdown() began: the consumer was never cancelled.`,
      expected: 'no new deliveries once shutdown() is called',
      saw: `handle() started for ${startedAfterShutdown.join(', ')} after shutdown() was called`,
      why: 'Waiting for the running handlers is not enough while the consumer is still registered: every ack frees a slot of the prefetch, and the broker fills it with the next message. The shutdown never ends, or cuts those new ones off.',
      fix: 'Begin with await channel.cancel(consumerTag): from then on the broker sends nothing more to this consumer.',
      link: t.ui('queues', queue),
    });
  }
  if (resolvedAt) {
    t.fail({
      summary: `shutdown() resolved while ${plural(held.size, 'handler')} ${held.size === 1 ? 'was' : 'were'} still running: it did not wait for all of them.`,
      expected: 'shutdown() resolves after every running handler has finished',
      saw: `${plural(held.size, 'handler')} still running`,
      fix: 'await Promise.all(inFlight) with every running handler in it, then close.',
      link: t.ui('queues', queue),
    });
  }

  // 2c. The rest finish; now shutdown() may resolve.
  holding = false;
  const lastDone = release(() => true);
  t.log(`let ${lastDone.join(', ')} finish`);
  await shutdown;
  t.log('shutdown() resolved');
  await t.expectConnectionsClosed('shutdown()');

  // 3. What is left in the queue: exactly the messages that were never started.
  const left = await t.messageCount(queue);
  const expectedLeft = total - startedBefore.length;
  if (left !== expectedLeft) {
    t.fail({
      summary: `After shutdown(), ${plural(left, 'message')} ${left === 1 ? 'is' : 'are'} in "${queue}"; ${expectedLeft} were never started, so ${left - expectedLeft} handled one(s) came back unacknowledged.`,
      expected: `${expectedLeft} message(s) left (${total} published, ${startedBefore.length} handled)`,
      saw: `${left} message(s) ready`,
      why: 'A message whose ack the broker has not processed when the channel closes goes back to the queue, and the next consumer handles it again. channel.ack() has no reply: it is only written to the socket. connection.close() right after it can drop those acks before the broker processed them.',
      fix: 'Ack each message in the .then() of its handler; after the handlers finished, await channel.close() first (its reply comes after the broker processed every ack before it), then connection.close().',
      link: t.ui('queues', queue),
    });
  }

  // 4. A second instance takes the rest: every email exactly once.
  shutdownBegan = false;
  const second = await t.call(`start(url, "${queue}", handle) again`, () => t.target.start(t.url, queue, handle));
  await t.waitFor(() => calls.size >= total && held.size === 0, 3000);
  await t.call('shutdown() of the second instance', () => second.shutdown());
  const twice = [...calls].filter(([, n]) => n > 1).map(([m, n]) => `${m} (${n} times)`);
  const never = Array.from({ length: total }, (_, i) => `email-${i + 1}`).filter((m) => !calls.has(m));
  if (twice.length || never.length) {
    t.fail({
      summary: twice.length ? `Some emails were handled more than once: ${twice.join(', ')}.` : `Some emails were never handled: ${never.join(', ')}.`,
      expected: `each of the ${total} emails handled exactly once, across the two instances`,
      saw: `${twice.length} handled more than once, ${never.length} never handled`,
      why: 'A graceful shutdown hands over exactly the work that was not started: nothing lost, nothing done twice.',
      fix: 'shutdown(): cancel, wait for the running handlers (they ack), close the channel, then the connection.',
      link: t.ui('queues', queue),
    });
  }
  const after = await t.messageCount(queue);
  if (after > 0) {
    t.fail({
      summary: `After the second shutdown(), ${after} message(s) are still in "${queue}".`,
      expected: 'the queue empty',
      saw: `${after} message(s)`,
      fix: 'Ack each message once its handler has resolved.',
      link: t.ui('queues', queue),
    });
  }
  t.note(`shutdown() waited for ${startedBefore.length} running handlers; the second instance handled the ${expectedLeft} that had never started.`);
});

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

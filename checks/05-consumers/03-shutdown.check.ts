// Check 5.3: shutdown() called while handlers are running stops new deliveries, lets the
// running handlers finish and answer (one of them fails: its message is requeued), closes the
// connection, and only then resolves. A second instance then finds exactly the messages that were
// never started, plus the failed one: none lost, none done twice. Another consumer is shut down
// just as a message is on its way (the broker sends it before it takes the cancel): shutdown()
// must wait for that handler too. A third instance survives the queue's deletion (a null
// message) and a reset connection; a refused declaration must reject with the broker's error and close the
// connection.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { onSent } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/05-consumers/03-shutdown.js';
import { expectSurvivesDeletionResetAndRefusal, pause, plural } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'emails';
  const total = 12;

  // The checker's handler: each call waits until the checker lets it finish, so the checker
  // decides when an email is "sent" (and so when your code acks it).
  const calls = new Map<string, number>(); // message -> how many times handle() got it
  const held = new Map<string, (fail: boolean) => void>(); // running handlers, waiting to be released
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
    if (holding) {
      const fail = await new Promise<boolean>((resolve) => held.set(text, resolve));
      held.delete(text);
      if (fail) throw new Error(`the checker's handler failed on ${text}`);
    } else await new Promise((resolve) => setTimeout(resolve, 20));
  };
  /** Lets the chosen running handlers end: resolve, or reject those `failing` names. */
  const release = (which: (text: string) => boolean, failing: string[] = []) => {
    const chosen = [...held.keys()].filter(which);
    for (const text of chosen) held.get(text)!(failing.includes(text));
    return chosen;
  };

  // 1. Start, and give it work.
  t.provoke(1, `called start(url, "${queue}", handle); there is no queue "${queue}" yet`);
  const service = await t.call(`start(url, "${queue}", handle)`, () => t.target.start(t.url, queue, handle));
  await expectQuorumQueue(t, queue);
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
  t.provoke(1, `published ${total} emails; the checker's handle() holds each one until the checker lets it finish`);
  // Wait until the prefetch window is full and nothing more is on its way.
  const ready = await t.waitFor(
    async () => {
      if (calls.size === 0 || Date.now() - lastStartAt < 80) return undefined;
      const n = await t.messageCount(queue);
      return n + calls.size === total ? { n } : undefined;
    },
    2000,
    20,
  );
  if (!ready || calls.size !== 5) {
    t.fail({
      summary: `${plural(calls.size, 'handler')} started at once for ${total} waiting messages, not 5.`,
      expected: '5 handlers running at once (prefetch 5), 7 messages ready in the queue',
      saw: `${calls.size} started${ready ? `, ${ready.n} ready` : ''}`,
      why: calls.size > 5 ? 'Without prefetch 5 the broker hands over more than five messages, and a shutdown has that many more to wait for.' : 'Five messages are in your hands: five handlers must run at the same time (as in 5.2).',
      fix: 'await channel.prefetch(5), and call handle() for each message without awaiting the previous one (as in 5.2).',
      link: t.ui('queues', queue),
    });
  }
  t.observe(1, 'read from the broker: 5 emails delivered and running at the same time, 7 still ready: prefetch 5, manual acks');

  // 2. Shut down in the middle of the work.
  const startedBefore = [...calls.keys()];
  shutdownBegan = true;
  t.provoke(['2a', '2b', '2c'], `called shutdown() while ${held.size} handlers were running: ${startedBefore.join(', ')}`);
  let resolvedAt = 0;
  let rejected: string | undefined;
  const shutdown = t
    .call('shutdown()', () =>
      service.shutdown().catch((err: unknown) => {
        rejected = err instanceof Error ? err.message : String(err);
      }),
    { timeoutMs: 5000 })
    .then(() => {
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

  // 2b. Some handlers finish, one of them fails: their answers free prefetch slots. A consumer still registered gets new messages.
  const failing = startedBefore.find((text) => Number(text.split('-')[1]) % 2 === 1 && text !== startedBefore[0])!;
  const firstDone = release((text) => Number(text.split('-')[1]) % 2 === 1, [failing]);
  t.provoke('2b', `let ${firstDone.join(', ')} finish (handle() rejects ${failing}); the others keep running`);
  await Promise.race([lateStart, shutdown, new Promise((resolve) => setTimeout(resolve, 200))]);
  if (rejected !== undefined) {
    t.fail({
      summary: `shutdown() rejected when handle() failed on ${failing} ("${rejected}"), while ${plural(held.size, 'handler')} still ran.`,
      expected: 'shutdown() waits for every running handler, failed or not, and then resolves',
      saw: `shutdown() rejected with "${rejected}"`,
      why: 'Promise.all gives up at the first rejection. Kept raw, the promise of handle() rejects when the handler fails: the shutdown stops waiting for the others, and closing under them returns their messages to the queue, to be done twice.',
      fix: 'Keep the promise that ends after the answer: const work = handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)); it never rejects.',
      link: t.ui('queues', queue),
    });
  }
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

  // The failed one is answered at once: back in the queue, ready, while the others still run.
  const requeued = await t.waitFor(async () => (await t.messageCount(queue)) === total - startedBefore.length + 1, 500);

  // 2c. The rest finish; now shutdown() may resolve.
  holding = false;
  const lastDone = release(() => true);
  t.log(`let ${lastDone.join(', ')} finish`);
  await shutdown;
  if (rejected !== undefined) {
    t.fail({ summary: `shutdown() rejected: ${rejected}`, expected: 'shutdown() resolves', saw: `a rejection: ${rejected}`, fix: 'Cancel, await Promise.all(inFlight) of promises that never reject, close the channel, close the connection.' });
  }
  t.observe(['2a', '2b'], `no new email reached handle() after shutdown() began, and shutdown() resolved only after all ${startedBefore.length} running handlers had ended`);
  await t.expectConnectionsClosed('shutdown()');

  // 3. What is left in the queue: exactly the messages that were never started, and the failed one.
  const left = await t.messageCount(queue);
  const expectedLeft = total - startedBefore.length + 1;
  if (left !== expectedLeft) {
    t.fail({
      summary:
        left < expectedLeft
          ? `After shutdown(), ${plural(left, 'message')} ${left === 1 ? 'is' : 'are'} in "${queue}", not ${expectedLeft}: ${failing}, whose handle() rejected, was not requeued.`
          : `After shutdown(), ${plural(left, 'message')} ${left === 1 ? 'is' : 'are'} in "${queue}"; ${expectedLeft - 1} were never started and ${failing} failed, so ${left - expectedLeft} handled one(s) came back unacknowledged.`,
      expected: `${expectedLeft} message(s) left (${total} published, ${startedBefore.length} started, ${failing} failed and requeued)`,
      saw: `${left} message(s) ready`,
      why:
        left < expectedLeft
          ? 'A message whose handler failed must go back to the queue (reject with requeue) before the channel closes, or it is lost: acked, or rejected for good.'
          : 'A message whose ack the broker has not processed when the channel closes goes back to the queue, and the next consumer handles it again. channel.ack() has no reply: it is only written to the socket. connection.close() right after it can drop those acks before the broker processed them.',
      fix:
        left < expectedLeft
          ? 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true))'
          : 'Ack each message in the .then() of its handler; after the handlers finished, await channel.close() first (its reply comes after the broker processed every ack before it), then connection.close().',
      link: t.ui('queues', queue),
    });
  }
  if (!requeued) {
    t.fail({
      summary: `handle() rejected ${failing}, but its message went back to the queue only when the channel closed: it stayed unanswered while the shutdown waited for the other handlers.`,
      expected: `${failing} requeued at once, while the other handlers still ran`,
      saw: `${failing} back in the queue only after shutdown()`,
      why: 'An unanswered message stays in your hands, blocking a prefetch slot, until the channel closes. Running normally, a failed message must be requeued at once, to be tried again (by this consumer or another).',
      fix: 'Answer every message: handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', queue),
    });
  }
  t.observe('2b', `read from the broker while 2 handlers still ran: ${failing}, whose handle() rejected, was back in the queue at once`);
  t.expectRejectsNotNacks([1, '2b'], `When handle() rejected ${failing}`);
  t.observe(['1', '2c'], `read from the broker after shutdown(): ${expectedLeft} messages ready, the ${expectedLeft - 1} never started and ${failing}, requeued; every finished one acked before the channel closed`);

  // 4. A message on its way when the cancel goes out: an ack frees a slot just before shutdown()
  //    begins, and the broker sends the next message before it takes the cancel (measured: every
  //    time). It arrives before the cancel's answer, and shutdown() must wait for its handler too.
  const lateQueue = 'newsletters';
  const late = Array.from({ length: 6 }, (_, i) => `late-${i + 1}`);
  const lateHeld = new Map<string, () => void>();
  const lateDone = new Set<string>();
  const lateService = await t.call(`start(url, "${lateQueue}", handle)`, () =>
    t.target.start(t.url, lateQueue, async (text: string) => {
      await new Promise<void>((resolve) => lateHeld.set(text, resolve));
      lateDone.add(text);
    }),
  );
  await t.publish(lateQueue, late);
  await t.waitFor(() => lateHeld.size === 5, 2000, 5);
  const acked = new Promise<void>((resolve) => {
    const stop = onSent((_, m) => m.name === 'basic.ack' && (stop(), resolve()));
  });
  lateHeld.get('late-1')?.();
  await Promise.race([acked, pause(500)]);
  t.provoke(['2a', '2b'], 'let late-1 finish and called shutdown() right after its ack: the broker hands over late-6 before it takes the cancel');
  let lateResolved = false;
  const lateShutdown = t.call(`shutdown() of the consumer of "${lateQueue}"`, () => lateService.shutdown()).then(() => void (lateResolved = true));
  lateShutdown.catch(() => undefined); // awaited below
  await t.waitFor(() => lateHeld.has('late-6'), 300, 5);
  for (const text of late.slice(1, 5)) lateHeld.get(text)?.();
  await Promise.race([lateShutdown, pause(200)]);
  const inTransit = lateHeld.has('late-6') && !lateDone.has('late-6');
  if (inTransit && lateResolved) {
    t.fail({
      summary: 'shutdown() resolved while handle("late-6") was still running: late-6 arrived between your cancel and the broker\'s answer to it, and your shutdown did not wait for it.',
      expected: 'shutdown() waits for every handler started before the cancel took effect, late-6 included',
      saw: 'late-6 delivered after shutdown() began and before the cancel was confirmed; shutdown() resolved while its handler still ran',
      why: "channel.cancel() is a round trip: messages the broker sent before it took the cancel still arrive, until its answer (basic.cancel-ok). Only when await channel.cancel() resolves is the set of running handlers complete. Collected before that, it misses them, and closing the channel under them hands their messages to the next instance: done twice.",
      fix: 'await channel.cancel(consumerTag) first, then await Promise.all(inFlight), then close.',
      link: t.ui('queues', lateQueue),
    });
  }
  lateHeld.get('late-6')?.();
  await lateShutdown;
  t.observe(['2a', '2b'], inTransit ? 'late-6, delivered after shutdown() began but before the cancel was confirmed, was waited for' : 'shutdown() with a message on its way (the broker took the cancel first this time)');

  // 5. A second instance takes the rest: every email exactly once.
  shutdownBegan = false;
  const second = await t.call(`start(url, "${queue}", handle) again`, () => t.target.start(t.url, queue, handle));
  await t.waitFor(() => calls.size >= total && (calls.get(failing) ?? 0) >= 2 && held.size === 0, 3000);
  await t.call('shutdown() of the second instance', () => second.shutdown());
  const twice = [...calls].filter(([m, n]) => n > (m === failing ? 2 : 1)).map(([m, n]) => `${m} (${n} times)`);
  const never = Array.from({ length: total }, (_, i) => `email-${i + 1}`).filter((m) => !calls.has(m));
  if (twice.length || never.length) {
    t.fail({
      summary: twice.length ? `Some emails were handled more than once: ${twice.join(', ')}.` : `Some emails were never handled: ${never.join(', ')}.`,
      expected: `each of the ${total} emails handled exactly once across the two instances (${failing} twice: it failed once)`,
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
  t.observe('2c', `the second instance handled the ${expectedLeft} left: every email exactly once, none lost`);

  // 6. A third instance: the queue deleted under it, its connection reset.
  await t.call(`start(url, "${queue}", handle) a third time`, () => t.target.start(t.url, queue, handle));
  await expectSurvivesDeletionResetAndRefusal(t, { queue, under: 'the third instance', lines: { deletion: [1], errors: [3] }, start: (legacy) => ({
    label: `start(url, "${legacy}", handle)`, call: () => t.target.start(t.url, legacy, handle) }) });
  t.note(`shutdown() waited for ${startedBefore.length} running handlers (one failed, and was requeued); the second instance handled the ${expectedLeft} left.`);
});

// Check 7.5: three actors, A, B and C, whose messages are interleaved in one queue. handle()
// (the checker's) fails A's second message, so A must wait while B and C carry on, in order.
// The checker starts a second instance (a standby: it must get nothing), stops the first (a
// restart: the block must survive it), resumes A while a slow message of B is in hand, makes a
// retry fail again, makes the broker refuse a skipped message, then skips it. It reads the order
// of handle()'s calls, the queues' contents over AMQP and the queue's arguments.
import { defineCheck } from '../../runner/check/context.js';
import { consumes, connectionsSince } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/07-dead-letters/05-fifo-per-actor.js';
import { pause } from './support.js';

const QUEUE = 'actor-events';
const SKIPPED = 'actor-events.skipped';
const failedQ = (actor: string) => `actor-events.failed.${actor}`;
const heldQ = (actor: string) => `actor-events.held.${actor}`;
const TRACE = 'check-7.5';

interface Call {
  instance: string;
  actor: string;
  body: string;
  started: number;
  ended?: number;
  ok?: boolean;
}

export default defineCheck<typeof Exercise>(async (t) => {
  const calls: Call[] = [];
  let inFlight = 0;
  let overlap: [Call, Call] | undefined; // two calls of handle() at the same time
  /** Bodies whose handle() rejects, with how many more times it will. */
  const failures = new Map<string, number>();
  const slow = new Set<string>();
  const handler = (instance: string) => async (actor: string, body: string) => {
    const call: Call = { instance, actor: String(actor), body: String(body), started: Date.now() };
    const busy = calls.find((c) => c.ended === undefined);
    if (busy && !overlap) overlap = [busy, call];
    calls.push(call);
    inFlight++;
    try {
      await pause(slow.has(call.body) ? 250 : 5);
      const left = failures.get(call.body) ?? 0;
      if (left > 0) {
        failures.set(call.body, left - 1);
        call.ok = false;
        throw new Error(`handle("${call.actor}", "${call.body}") failed on purpose`);
      }
      call.ok = true;
    } finally {
      inFlight--;
      call.ended = Date.now();
    }
  };
  const handled = (actor?: string) => calls.filter((c) => c.ok && (actor === undefined || c.actor === actor)).map((c) => c.body);
  const callsOf = (body: string) => calls.filter((c) => c.body === body).length;
  const list = (bodies: string[]) => bodies.join(' ') || 'nothing';
  /** Ready messages in a queue; 'none' when it does not exist. */
  const count = async (q: string): Promise<number | 'none'> => t.messageCount(q).catch(() => 'none' as const);
  const publish = async (messages: string[]) => {
    const ch = await t.confirmChannel();
    for (const body of messages) ch.sendToQueue(QUEUE, Buffer.from(body), { persistent: true, contentType: 'text/plain', headers: { actor: body[0], 'x-trace': TRACE } });
    await ch.waitForConfirms();
    await ch.close();
  };
  const until = (what: () => boolean, ms = 3000) => t.waitFor(what, ms, 10);
  const instances: Record<string, Exercise.ActorConsumer> = {};
  const start = async (name: string) => {
    const c = await t.call(`startActorConsumer(url, handle) (${name})`, () => t.target.startActorConsumer(t.url, handler(name)), { timeoutMs: 8000 });
    for (const m of ['resume', 'skip', 'stop'] as const) {
      if (typeof c?.[m] !== 'function') {
        t.fail({ summary: `startActorConsumer() returned an object without ${m}().`, expected: '{ resume, skip, stop }', fix: 'End startActorConsumer() with return { resume, skip, stop }.' });
      }
    }
    instances[name] = c;
    return c;
  };
  /** Fails unless each actor's handled messages are exactly `expected` (in order). */
  const expectHandled = (lines: number | number[], expected: Record<string, string[]>, when: string, why: string, fix: string) => {
    const seen = Object.fromEntries(Object.keys(expected).map((a) => [a, handled(a)]));
    t.observe(lines, `handled so far: ${Object.entries(seen).map(([a, b]) => `${a}: ${list(b)}`).join('; ')}`);
    const wrong = Object.keys(expected).find((a) => seen[a]!.join(' ') !== expected[a]!.join(' '));
    if (wrong) {
      t.fail({
        summary: `${when}, actor ${wrong}'s messages were handled as ${list(seen[wrong]!)}, not ${list(expected[wrong]!)}.`,
        expected: Object.entries(expected).map(([a, b]) => `${a}: ${list(b)}`).join('; '),
        saw: Object.entries(seen).map(([a, b]) => `${a}: ${list(b)}`).join('; '),
        why,
        fix,
        link: t.ui('queues', QUEUE),
      });
    }
  };
  const expectOneAtATime = (lines: number | number[], during: string) => {
    t.observe(lines, overlap ? `handle() ran twice at once: ${overlap[0].body} and ${overlap[1].body}` : `handle() never ran twice at once (${calls.length} calls)`);
    if (overlap) {
      const [a, b] = overlap;
      t.fail({
        summary: `${during}, handle() was called for ${b.body} (${b.instance}) while it was still handling ${a.body} (${a.instance}).`,
        expected: 'one call of handle() at a time: each message waits for the one before it',
        why: 'Two calls at once finish in any order: the order of the queue is lost. resume() and skip() handle messages too, so they must wait for the message in hand, and the consumer must wait for them.',
        fix: 'Make the consumer, resume() and skip() take turns: chain each job on a promise (let last = Promise.resolve(); last = last.then(job)), with a prefetch of 1.',
      });
    }
  };

  // ---- line 1: the queue and the consumer ----
  t.provoke(1, 'started instance 1');
  await start('instance 1');
  const q = await t.queue(QUEUE, { fix: `assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } })` });
  const consume = consumes(connectionsSince()).find((c) => c.consume.queue === QUEUE);
  const sac = q.arguments?.['x-single-active-consumer'];
  t.observe(1, `"${QUEUE}": ${q.durable ? 'durable' : 'not durable'}, ${q.arguments?.['x-queue-type'] ?? 'classic'}, single active consumer ${sac === true ? 'on' : 'off'}; your consumer: ${consume ? `${consume.consume.noAck ? 'automatic' : 'manual'} acks, prefetch ${consume.prefetch ?? 'none'}` : 'none'}`);
  if (!q.durable || q.arguments?.['x-queue-type'] !== 'quorum' || sac !== true) {
    t.fail({
      summary: sac !== true ? `"${QUEUE}" has no single active consumer: a second instance would take half of the messages, and the order with them.` : `"${QUEUE}" is not a durable quorum queue.`,
      expected: `assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } })`,
      saw: `durable: ${q.durable}, arguments: ${JSON.stringify(q.arguments ?? {})}`,
      why: 'With two consumers on a queue, the broker hands them messages in turn: A1 to one instance, A2 to the other, and A2 may well be done first. A single active consumer makes every other instance a standby that takes over only when the active one goes.',
      fix: "Add 'x-single-active-consumer': true to the queue's arguments (it can only be set when the queue is declared, not by a policy).",
      link: t.ui('queues', QUEUE),
    });
  }
  if (!consume || consume.consume.noAck || consume.prefetch !== 1) {
    t.fail({
      summary: !consume ? `Your code does not consume "${QUEUE}".` : consume.consume.noAck ? 'Your consumer uses automatic acks.' : `Your consumer's prefetch is ${consume.prefetch ?? 'not set'}, not 1.`,
      expected: `await channel.prefetch(1), then channel.consume('${QUEUE}', …, { noAck: false })`,
      why: 'With automatic acks a message is gone the moment it leaves the broker, failed or not; with more than one message in hand, the next ones are already inside your process while the current one fails.',
      fix: `await channel.prefetch(1); await channel.consume('${QUEUE}', onMessage, { noAck: false });`,
    });
  }

  // ---- lines 2, 3, 4: A fails on its second message; B and C carry on ----
  failures.set('A2', 1);
  const first = ['A1', 'B1', 'C1', 'A2', 'B2', 'C2', 'A3', 'B3', 'C3', 'A4', 'B4', 'C4'];
  await publish(first);
  t.provoke([2, 3, 4], `published ${first.join(' ')} (header actor = the letter); handle() rejects A2`);
  await until(() => handled().includes('B4') && handled().includes('C4') && inFlight === 0);
  await pause(100);
  const a2Calls = callsOf('A2');
  t.observe(3, `handle() was called ${a2Calls} time(s) for A2`);
  if (a2Calls > 1) {
    t.fail({
      summary: `A2 came back ${a2Calls - 1} time(s) after handle() rejected it: it was requeued instead of blocking actor A.`,
      expected: 'A2 copied to the failed queue of A, acked, and not handled again until resume()',
      saw: `handle(A, A2) called ${a2Calls} times; handled so far: ${list(handled())}`,
      why: 'A requeued message comes straight back, so a message that fails keeps failing in a loop, and every actor waits behind it (with a prefetch of 1, nothing else gets through). Where it lands also depends on the queue type and the version: a quorum queue on RabbitMQ 3.10 puts it behind the others, which breaks A\'s order as well.',
      fix: `When handle() rejects: copy the message to failedQueue(actor) on your confirm channel, wait for the confirm, then ack it.`,
      link: t.ui('queues', QUEUE),
    });
  }
  expectHandled([2, 4], { A: ['A1'], B: ['B1', 'B2', 'B3', 'B4'], C: ['C1', 'C2', 'C3', 'C4'] }, 'After A2 failed',
    'Once A2 failed, A\'s later messages must wait: A3 may depend on A2 (a withdrawal after the deposit that failed). B and C have nothing to do with A and must not wait.',
    'Remember the blocked actor; copy its later messages to heldQueue(actor) without handling them; handle the others as usual.');
  expectOneAtATime(2, 'While A, B and C were handled');
  const [failedA, heldA, main] = [await count(failedQ('A')), await count(heldQ('A')), await count(QUEUE)];
  t.observe([3, 4], `"${failedQ('A')}": ${failedA} message(s); "${heldQ('A')}": ${heldA}; "${QUEUE}": ${main} ready`);
  if (failedA !== 1 || heldA !== 2 || main !== 0) {
    t.fail({
      summary: `After A2 failed, the queues do not hold what blocks A: ${failedQ('A')} ${failedA === 'none' ? 'does not exist' : `holds ${failedA}`}, ${heldQ('A')} ${heldA === 'none' ? 'does not exist' : `holds ${heldA}`}, ${QUEUE} holds ${main}.`,
      expected: `"${failedQ('A')}" holds A2, "${heldQ('A')}" holds A3 and A4, "${QUEUE}" is empty`,
      why: 'What is not in RabbitMQ is lost with the process: a blocked actor\'s messages must wait in durable queues, not in memory or unacknowledged in a channel.',
      fix: 'On a failure: assertQueue(heldQueue(actor)), assertQueue(failedQueue(actor)) (both durable quorum queues), copy the message to failedQueue(actor), wait for the confirm, ack. Later messages of that actor: copy to heldQueue(actor), confirm, ack.',
      link: t.ui('queues'),
    });
  }

  const kinds = await Promise.all([failedQ('A'), heldQ('A'), SKIPPED].map(async (name) => ({ name, q: await t.mgmt.queue(t.vhost, name) })));
  const notQuorum = kinds.filter((k) => !k.q?.durable || k.q.arguments?.['x-queue-type'] !== 'quorum');
  t.observe(3, kinds.map((k) => `"${k.name}": ${k.q ? `${k.q.durable ? 'durable' : 'not durable'} ${k.q.arguments?.['x-queue-type'] ?? 'classic'}` : 'missing'}`).join(', '));
  if (notQuorum.length) {
    t.fail({
      summary: `"${notQuorum[0]!.name}" is ${notQuorum[0]!.q ? 'not a durable quorum queue' : 'missing'}: the messages waiting in it are not as safe as those in "${QUEUE}".`,
      expected: 'the failed, held and skipped queues declared like the main one: { durable: true, arguments: { \'x-queue-type\': \'quorum\' } }',
      why: 'A blocked actor\'s messages may wait for hours, until someone fixes the problem: they must survive a broker restart and the loss of a node, like the queue they came from.',
      fix: "const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } }; assertQueue(failedQueue(actor), QUORUM), and the same for heldQueue(actor) and SKIPPED_QUEUE.",
      link: t.ui('queues'),
    });
  }

  // ---- line 1: a second instance is a standby ----
  t.provoke(1, 'started instance 2 beside instance 1, then published B5 B6 C5');
  await start('instance 2');
  await publish(['B5', 'B6', 'C5']);
  await until(() => ['B5', 'B6', 'C5'].every((b) => handled().includes(b)));
  const byTwo = calls.filter((c) => c.instance === 'instance 2').map((c) => c.body);
  t.observe(1, `instance 2 handled ${list(byTwo)}`);
  if (byTwo.length > 0) {
    t.fail({
      summary: `Instance 2, started while instance 1 was running, handled ${list(byTwo)}: two instances consumed at once.`,
      expected: 'instance 2 waits as a standby; instance 1 handles B5, B6 and C5',
      why: 'Two active consumers share the messages in turn, and each works at its own pace: the order of one actor\'s messages is then a matter of luck.',
      fix: "'x-single-active-consumer': true in the queue's arguments.",
    });
  }

  // ---- line 5: a crash and a restart while A is blocked ----
  const firstConnection = connectionsSince().find((c) => !c.closed);
  // Its last ack must be out first: a message handled but not yet acked would (rightly) come again after the crash.
  await t.waitFor(() => (firstConnection?.sent.filter((m) => m.name === 'basic.ack').length ?? 0) >= first.length + 3, 1000, 10);
  t.provoke([5, 8], "cut instance 1's connection (ECONNRESET), as when its process dies: instance 2 takes over, with nothing in memory");
  firstConnection?.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  await pause(100); // an 'error' event nobody listens to ends the process now
  t.observe(8, "your process survived the lost connection (an 'error' listener heard it)");
  await publish(['A5', 'B7', 'C6']);
  await until(() => handled().includes('B7') && handled().includes('C6') && inFlight === 0);
  await pause(100);
  expectHandled(5, { A: ['A1'], B: ['B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'], C: ['C1', 'C2', 'C3', 'C4', 'C5', 'C6'] }, 'After the crash (instance 1 gone, instance 2 took over)',
    'The block must outlive the process: instance 2 has an empty memory, so it must learn from RabbitMQ that A is blocked (the failed queue of A exists) before it handles a message of A.',
    'Before handling a message of an actor you have not seen since the start, ask RabbitMQ: await queueExists(connection, failedQueue(actor)).');
  const heldAfterRestart = await count(heldQ('A'));
  t.observe(5, `"${heldQ('A')}" holds ${heldAfterRestart} message(s)`);
  if (heldAfterRestart !== 3) {
    t.fail({
      summary: `After the crash, "${heldQ('A')}" holds ${heldAfterRestart === 'none' ? 'nothing (it does not exist)' : heldAfterRestart}, not A3, A4 and A5.`,
      expected: '3 messages: A3, A4, A5',
      why: 'A5 came after the crash, while A was still blocked: it must wait behind A3 and A4.',
      fix: 'Copy every message of a blocked actor to heldQueue(actor) (confirmed), then ack it.',
      link: t.ui('queues', heldQ('A')),
    });
  }

  // ---- line 6: resume() while a message is in hand, and a held message that fails; line 8: one at a time ----
  const two = instances['instance 2']!;
  slow.add('B-slow');
  failures.set('A4', 1);
  await publish(['B-slow']);
  await until(() => calls.some((c) => c.body === 'B-slow'), 2000);
  t.provoke([6, 8], 'called resume("A") on instance 2 while it was handling B-slow (250 ms); handle() rejects A4 once');
  const halfway = await t.call('resume("A")', () => two.resume('A'), { timeoutMs: 5000 });
  expectOneAtATime(8, 'When resume("A") was called while B-slow was in hand');
  expectHandled(6, { A: ['A1', 'A2', 'A3'] }, 'After resume("A"), which met A4 failing',
    'resume() retries the message that blocked the actor (A2 works now), then the held ones, oldest first, and stops at the first that fails: A4 now blocks A, and A5 waits behind it.',
    'In resume(): channel.get(failedQueue(actor)), handle it, ack; then channel.get(heldQueue(actor)) in a loop, handle each and ack; when one fails, copy it to failedQueue(actor), ack it, return false.');
  const [failedHalf, heldHalf] = [await count(failedQ('A')), await count(heldQ('A'))];
  t.observe(6, `resume("A") resolved ${JSON.stringify(halfway)}; "${failedQ('A')}": ${failedHalf}, "${heldQ('A')}": ${heldHalf}`);
  if (halfway !== false || failedHalf !== 1 || heldHalf !== 1) {
    t.fail({
      summary: halfway !== false ? `resume("A") resolved ${JSON.stringify(halfway)} although A4 failed and A is blocked again.` : `When A4 failed during resume("A"), the queues of A did not end up holding A4 (failed) and A5 (held).`,
      expected: `resume("A") resolves false; "${failedQ('A')}" holds A4, "${heldQ('A')}" holds A5`,
      saw: `resolved ${JSON.stringify(halfway)}; ${failedQ('A')}: ${failedHalf}; ${heldQ('A')}: ${heldHalf}`,
      why: 'The operator must hear that A is still blocked, and by which message: A4 now blocks A exactly as A2 did, after a restart too.',
      fix: 'When handle() rejects a held message in resume(): copy it to failedQueue(actor) (confirmed), ack the one you took, return false.',
      link: t.ui('queues'),
    });
  }
  t.provoke(6, 'called resume("A") again (A4 works now)');
  const resumed = await t.call('resume("A") again', () => two.resume('A'), { timeoutMs: 5000 });
  expectHandled(6, { A: ['A1', 'A2', 'A3', 'A4', 'A5'] }, 'After the second resume("A")',
    'resume() handles the message that blocks the actor (A4), then the held ones (A5).',
    'In resume(): the failed queue first, then the held queue, in order.');
  const [failedGone, heldGone] = [await count(failedQ('A')), await count(heldQ('A'))];
  t.observe(6, `resume("A") resolved ${JSON.stringify(resumed)}; "${failedQ('A')}": ${failedGone}, "${heldQ('A')}": ${heldGone}`);
  if (resumed !== true || failedGone !== 'none' || heldGone !== 'none') {
    t.fail({
      summary: resumed !== true ? `resume("A") resolved ${JSON.stringify(resumed)} although every message of A was handled.` : `After resume("A") emptied them, the queues of A still exist: A stays blocked.`,
      expected: `resume("A") resolves true; "${failedQ('A')}" and "${heldQ('A')}" deleted`,
      saw: `resolved ${JSON.stringify(resumed)}; ${failedQ('A')}: ${failedGone === 'none' ? 'deleted' : `${failedGone} message(s)`}; ${heldQ('A')}: ${heldGone === 'none' ? 'deleted' : `${heldGone} message(s)`}`,
      why: 'The failed queue is the block: as long as it exists, every instance (after the next restart too) keeps holding A\'s messages.',
      fix: 'Once get() on the held queue returns false: deleteQueue(failedQueue(actor)), deleteQueue(heldQueue(actor)), forget the block in memory, return true.',
    });
  }
  t.provoke(6, 'called resume("B") and skip("C"): B and C are not blocked');
  const [resumeB, skipC] = [await t.call('resume("B")', () => two.resume('B'), { timeoutMs: 5000 }), await t.call('skip("C")', () => two.skip('C'), { timeoutMs: 5000 })];
  t.observe(6, `resume("B") resolved ${JSON.stringify(resumeB)}, skip("C") ${JSON.stringify(skipC)}`);
  if (resumeB !== true || skipC !== true) {
    t.fail({
      summary: `resume("B") resolved ${JSON.stringify(resumeB)} and skip("C") ${JSON.stringify(skipC)}, for actors that are not blocked.`,
      expected: 'both resolve true (the actor runs), and do nothing',
      why: 'An operator (or a script) may resume an actor that is running already: nothing to do, and the answer is "it runs".',
      fix: 'At the start of resume() and skip(): if (!(await queueExists(connection, failedQueue(actor)))) return true;',
    });
  }
  await publish(['A6']);
  t.provoke(6, 'published A6 after the resume');
  await until(() => handled().includes('A6'), 2000);
  expectHandled(6, { A: ['A1', 'A2', 'A3', 'A4', 'A5', 'A6'] }, 'After resume("A") and a new message A6',
    'Once resumed, A runs like the others again.', 'After a resume that emptied the queues, remember that A is no longer blocked.');

  // ---- line 6: a retry that fails again ----
  failures.set('A7', 2);
  await publish(['A7', 'A8', 'B8']);
  await until(() => handled().includes('B8') && inFlight === 0);
  await pause(50);
  t.provoke(6, 'published A7 A8 B8 (A7 fails, twice), then called resume("A") while A7 still fails');
  const again = await t.call('resume("A"), while A7 still fails', () => two.resume('A'), { timeoutMs: 5000 });
  const [failedNow, heldNow] = [await count(failedQ('A')), await count(heldQ('A'))];
  t.observe(6, `resume("A") resolved ${JSON.stringify(again)}; handle() called ${callsOf('A7')} time(s) for A7, ${callsOf('A8')} for A8; "${failedQ('A')}": ${failedNow}, "${heldQ('A')}": ${heldNow}`);
  if (again !== false || callsOf('A7') !== 2 || callsOf('A8') !== 0 || failedNow !== 1 || heldNow !== 1) {
    t.fail({
      summary:
        callsOf('A8') > 0
          ? 'When resume("A") found that A7 still fails, it went on and handled A8 anyway: A\'s order is broken.'
          : failedNow !== 1
            ? `When A7 failed again during resume("A"), it did not stay where it blocks A: "${failedQ('A')}" ${failedNow === 'none' ? 'is gone' : `holds ${failedNow} message(s)`}.`
            : `resume("A") resolved ${JSON.stringify(again)} although A7 failed again and A is still blocked.`,
      expected: `resume("A") resolves false; handle(A7) called twice (the failure, the retry); A8 not handled; "${failedQ('A')}" holds A7, "${heldQ('A')}" holds A8`,
      saw: `resolved ${JSON.stringify(again)}; A7 ×${callsOf('A7')}, A8 ×${callsOf('A8')}; ${failedQ('A')}: ${failedNow}; ${heldQ('A')}: ${heldNow}`,
      why: 'A retry that fails leaves the actor blocked by the same message: nothing of A may pass it, and it must still be there for the next resume() or skip(), after a restart too.',
      fix: "When handle() rejects in resume(): copy the message to failedQueue(actor) (confirmed), ack the one you took, return false. Not a requeue: where a requeued message lands differs by queue type and version.",
      link: t.ui('queues', failedQ('A')),
    });
  }

  // ---- line 7: skip(), first refused by the broker ----
  await t.mgmt.setPolicy(t.vhost, 'refuse-skipped', { pattern: `^${SKIPPED.replaceAll('.', '\\.')}$`, definition: { 'max-length': 0, overflow: 'reject-publish' }, 'apply-to': 'queues' });
  const probe = await t.confirmChannel();
  const refusing = await t.waitFor(() => new Promise<boolean>((resolve) => probe.sendToQueue(SKIPPED, Buffer.from('checker probe'), {}, (err) => resolve(!!err))), 3000, 25);
  await probe.close().catch(() => undefined);
  if (!refusing) t.skip(`the length-limit policy on "${SKIPPED}" did not take effect within 3 s; run the check again`);
  t.provoke(7, `made "${SKIPPED}" refuse new messages (a length limit with overflow reject-publish), then called skip("A")`);
  const refused = await t.call('skip("A") while the broker refuses the copy', async (): Promise<{ rejected: false; resolved: unknown } | { rejected: Error }> => {
    try {
      return { rejected: false, resolved: await two.skip('A') };
    } catch (err) {
      return { rejected: err instanceof Error ? err : new Error(String(err)) };
    }
  }, { timeoutMs: 5000 });
  await t.waitFor(async () => (await count(failedQ('A'))) === 1, 1000); // a message given back takes a moment to be ready again
const [failedKept, heldKept] = [await count(failedQ('A')), await count(heldQ('A'))];
  t.observe(7, `skip("A") ${refused.rejected ? 'rejected' : `resolved ${JSON.stringify(refused.resolved)}`}; "${failedQ('A')}": ${failedKept}; A8 handled ${callsOf('A8')} time(s)`);
  if (!refused.rejected || failedKept !== 1 || heldKept !== 1 || callsOf('A8') > 0) {
    t.fail({
      summary:
        failedKept !== 1
          ? `skip("A") lost A7: the broker refused its copy to "${SKIPPED}", and ${failedQ('A')} ${failedKept === 'none' ? 'was deleted' : `holds ${failedKept} message(s)`} all the same.`
          : `skip("A") ${refused.rejected ? 'went on' : `resolved ${JSON.stringify(refused.resolved)}`} although the broker refused to take A7 in "${SKIPPED}".`,
      expected: `skip("A") rejects; A7 stays in "${failedQ('A')}", A8 in "${heldQ('A')}", not handled`,
      saw: `${refused.rejected ? `rejected: ${refused.rejected.message}` : `resolved ${JSON.stringify(refused.resolved)}`}; ${failedQ('A')}: ${failedKept}; ${heldQ('A')}: ${heldKept}; A8 handled ${callsOf('A8')} time(s)`,
      why: 'A copy is safe only once the broker confirmed it. Acked before, or after a refusal, the original is gone and the copy never existed: the operator\'s "skip" has silently deleted the message.',
      fix: `Copy on a confirm channel and await channel.waitForConfirms() (it rejects when the broker refuses); ack the original only after it resolved. When it rejects: give the message back (channel.reject(failed, true): it is alone in its queue) and throw.`,
      link: t.ui('queues', failedQ('A')),
    });
  }

  // ---- line 7: skip(), accepted ----
  await t.mgmt.setPolicy(t.vhost, 'refuse-skipped', { pattern: `^${SKIPPED.replaceAll('.', '\\.')}$`, definition: { 'max-length': 1_000_000, overflow: 'reject-publish' }, 'apply-to': 'queues' });
  await t.takeMessages(SKIPPED);
  t.provoke(7, `let "${SKIPPED}" accept messages again, and called skip("A")`);
  const skipped = await t.call('skip("A")', () => two.skip('A'), { timeoutMs: 5000 });
  const set = await t.takeMessages(SKIPPED);
  const copy = set[0];
  const problems = [
    set.length !== 1 && `${set.length} message(s) in "${SKIPPED}"`,
    copy && copy.content.toString() !== 'A7' && `the body is ${JSON.stringify(copy.content.toString())}`,
    copy && copy.properties.headers?.actor !== 'A' && `the header actor is ${JSON.stringify(copy.properties.headers?.actor)}`,
    copy && copy.properties.headers?.['x-trace'] !== TRACE && `the original's header x-trace is ${JSON.stringify(copy.properties.headers?.['x-trace'])}`,
    copy && copy.properties.deliveryMode !== 2 && 'not persistent',
  ].filter((p): p is string => typeof p === 'string');
  t.observe([7, 8], `skip("A") resolved ${JSON.stringify(skipped)}; "${SKIPPED}" holds ${set.map((m) => JSON.stringify(m.content.toString())).join(', ') || 'nothing'}${problems.length ? ` (${problems.join('; ')})` : ', a faithful copy'}`);
  if (problems.length) {
    t.fail({
      summary: `skip("A") did not set A7 aside as it was: ${problems[0]}.`,
      expected: `one message in "${SKIPPED}": body "A7", header actor "A", the original's other headers, persistent`,
      saw: problems.join('; '),
      why: 'Whoever looks at the skipped messages later (to replay one by hand, or to explain it) sees only the copy: it must be the message as it was sent.',
      fix: 'channel.sendToQueue(queue, msg.content, { ...msg.properties, persistent: true }), on a confirm channel.',
      link: t.ui('queues', SKIPPED),
    });
  }
  expectHandled(7, { A: ['A1', 'A2', 'A3', 'A4', 'A5', 'A6', 'A8'] }, 'After skip("A")',
    'skip() sets aside the message that blocks the actor, then handles the held ones in order, like resume().',
    'In skip(): move the failed message to SKIPPED_QUEUE (copy, confirm, ack), then drain heldQueue(actor) like resume().');
  if (skipped !== true || (await count(failedQ('A'))) !== 'none') {
    t.fail({
      summary: `After skip("A") handled everything, ${skipped !== true ? `it resolved ${JSON.stringify(skipped)}` : `"${failedQ('A')}" still exists`}.`,
      expected: `skip("A") resolves true and deletes "${failedQ('A')}" and "${heldQ('A')}"`,
      why: 'The failed queue is the block: as long as it exists, A stays blocked.',
      fix: 'Once the held queue is empty: delete both queues, forget the block, return true.',
    });
  }

  // ---- nothing lost, nothing handled twice; line 8: stop() ----
  t.provoke(8, 'called stop() on instance 2');
  await t.expectClosedOnReturn('stop() of instance 2', connectionsSince().filter((c) => !c.closed), () => two.stop());
  await t.expectConnectionsClosed('stop()');
  const twice = [...new Set(handled())].filter((b) => handled().filter((x) => x === b).length > 1);
  const left = await count(QUEUE);
  t.observe(8, `after stop(): "${QUEUE}" holds ${left} message(s); handled twice: ${list(twice)}`);
  if (twice.length || left !== 0) {
    t.fail({
      summary: twice.length ? `${list(twice)} handled twice.` : `After stop(), ${left} message(s) were back in "${QUEUE}".`,
      expected: 'every message handled once, the queue empty',
      why: 'A message handled twice or left unacked is the same bug: an ack that never came, or came for the wrong message.',
      fix: 'Ack each message once: after handle() resolved, or after its copy was confirmed.',
    });
  }
});

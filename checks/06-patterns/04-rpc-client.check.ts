// Check 6.4: the learner's RPC client against the checker's reference server on "rpc". One call;
// four concurrent calls answered in reverse order; a call that times out, whose reply then comes
// late while another call waits (the server answers that one only after the late reply, and
// sends stray replies first); a request nobody picks up, which must expire; close() with a call
// still waiting; then a second client whose connection is cut: its next call must fail at once.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/04-rpc-client.js';
import { connectionMark, connectionsSince } from '../../runner/check/frames.js';
import { cutConnectionsAndSurvive, describeValue, expectMethods, pendingTimers, settleWithin, startReferenceServer, stillReachable, type ServerPlan, type Settled } from './support.js';

const QUEUE = 'rpc';
const IDLE_QUEUE = 'rpc-idle'; // declared by the checker, consumed by nobody
const PLAN: Record<string, ServerPlan> = {
  apple: { delayMs: 150 },
  banana: { delayMs: 100 },
  cherry: { delayMs: 50 },
  date: { delayMs: 0 },
  slowpoke: { delayMs: 600 }, // the client gives up at 200 ms; the reply comes anyway, late
  next: { afterReplyTo: 'slowpoke', delayMs: 100, strays: true }, // still waiting when the late reply arrives
  void: { silent: true },
};
const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

export default defineCheck<typeof Exercise>(async (t) => {
  const server = await startReferenceServer(t, QUEUE, (request) => PLAN[request] ?? {});
  t.log(`the checker's server answers on "${QUEUE}" with "re: <request>"`);
  const create = async (label: string) => {
    const client = await t.call(label, async () => {
      try {
        return await t.target.createRpcClient(t.url);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (/reply consumer cannot acknowledge/.test(msg)) {
          t.fail({
            summary: `createRpcClient(url) failed: the broker refused to let the channel consume ${DIRECT_REPLY_TO} with manual acks (reply consumer cannot acknowledge).`,
            expected: `channel.consume('${DIRECT_REPLY_TO}', onReply, { noAck: true })`,
            saw: msg,
            why: 'Direct Reply-to replies are never stored in a queue: they go straight from the server to your channel, so there is nothing to acknowledge and nothing to redeliver. The broker insists on no-ack mode.',
            fix: `Consume ${DIRECT_REPLY_TO} with { noAck: true }, and do not ack the replies.`,
          });
        }
        throw err;
      }
    });
    expectMethods(t, 'createRpcClient()', client, ['call', 'close']);
    return client;
  };
  /** client.call(), with a throw turned into a rejection and a non-promise into a verdict. */
  const callOn = (client: Exercise.RpcClient, queue: string, request: string, timeoutMs: number): Promise<string> => {
    let result: unknown;
    try {
      result = client.call(queue, request, timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    if (typeof (result as Promise<string> | undefined)?.then !== 'function') {
      t.fail({
        summary: `call("${queue}", "${request}", ${timeoutMs}) returned ${result === undefined ? 'nothing' : describeValue(result)}, not a promise.`,
        expected: 'a promise of the reply',
        saw: result === undefined ? 'undefined' : describeValue(result),
        fix: 'call() returns new Promise<string>((resolve, reject) => { … }).',
      });
    }
    return result as Promise<string>;
  };
  const label = (request: string, timeoutMs: number, queue = QUEUE) => `call("${queue}", "${request}", ${timeoutMs})`;
  /** Fails when a call was rejected with something else than an Error. */
  const expectErrorRejection = (what: string, outcome: Settled<string>) => {
    if (outcome.status === 'rejected' && outcome.notError) {
      t.fail({
        summary: `${what} was rejected with ${outcome.notError}, not with an Error.`,
        expected: 'reject(new Error("…"))',
        saw: `reject(${outcome.notError})`,
        why: 'Whoever awaits call() catches an error and reads err.message, logs err.stack, tests err instanceof Error. A string has none of them, and its stack trace, the one thing that says where it came from, is missing.',
        fix: 'reject(new Error(`no reply from "${queue}" within ${timeoutMs} ms`))',
      });
    }
  };

  const mark = connectionMark();
  const client = await create('createRpcClient(url)');
  const clientConnections = connectionsSince(mark);
  const call = (request: string, timeoutMs: number, queue = QUEUE) => callOn(client, queue, request, timeoutMs);

  // 1. One call.
  t.provoke([1, 2], `${label('ping', 2000)}: the first request of a new client`);
  const timersBefore = pendingTimers();
  const first = await settleWithin(call('ping', 2000), 2500);
  const seen = server.requests[0];
  if (first.status === 'rejected') {
    const msg = first.error.message;
    const before = /fast reply consumer does not exist/.test(msg);
    t.fail({
      summary: before
        ? `${label('ping', 2000)} failed: the broker closed the channel because the request named ${DIRECT_REPLY_TO} as its replyTo on a channel that was not consuming it (fast reply consumer does not exist).`
        : `${label('ping', 2000)} was rejected: ${msg}`,
      expected: '"re: ping"',
      saw: `rejected after ${first.ms} ms: ${msg}`,
      why: before
        ? `With Direct Reply-to, the channel that publishes a request naming ${DIRECT_REPLY_TO} must already be consuming ${DIRECT_REPLY_TO}: the broker has nowhere to send the reply otherwise, and refuses the publish. Consuming later, or on another channel, is too late or in the wrong place.`
        : "The checker's server answers every request at once; a correct client resolves with its reply.",
      fix: before
        ? `In createRpcClient(), await channel.consume('${DIRECT_REPLY_TO}', onReply, { noAck: true }) once, before returning; call() only publishes, on that same channel.`
        : 'Read the error; run your file on its own to see the whole stack trace.',
    });
  }
  if (first.status === 'pending' || (first.status === 'resolved' && first.value !== 're: ping')) {
    const replyTo = seen?.properties.replyTo as string | undefined;
    t.fail({
      summary:
        first.status === 'pending'
          ? `${label('ping', 2000)} neither resolved nor rejected within 2.5 s.`
          : `${label('ping', 2000)} resolved with ${typeof first.value === 'string' ? JSON.stringify(first.value) : describeValue(first.value)}${typeof first.value === 'string' ? '' : ', not with the text of the reply'}.`,
      expected: '"re: ping"',
      saw: seen ? `the server got the request with replyTo ${replyTo === undefined ? '(none)' : `"${replyTo}"`}, correlationId ${seen.properties.correlationId ?? '(none)'}` : `no request reached "${QUEUE}"`,
      why: seen
        ? "The server sends its reply to the request's replyTo, with the request's correlationId. Without a replyTo it cannot answer; the client finds its call by the correlationId, and resolves it with msg.content.toString()."
        : `call() must publish the request to the queue it is given: channel.sendToQueue('${QUEUE}', …).`,
      fix: `channel.sendToQueue(queue, Buffer.from(request), { correlationId, replyTo: '${DIRECT_REPLY_TO}' }), and resolve the call whose correlationId the reply carries with msg.content.toString().`,
    });
  }
  const replyTo = String(seen?.properties.replyTo ?? '');
  if (!replyTo.startsWith(DIRECT_REPLY_TO) || !seen?.properties.correlationId) {
    t.fail({
      summary: !replyTo.startsWith(DIRECT_REPLY_TO) ? `The request's replyTo is "${replyTo}", not Direct Reply-to (${DIRECT_REPLY_TO}).` : 'The request carries no correlationId.',
      expected: `replyTo "${DIRECT_REPLY_TO}" (the server sees it rewritten as "${DIRECT_REPLY_TO}.<opaque>"), and a correlationId`,
      saw: `replyTo "${replyTo}", correlationId ${seen?.properties.correlationId ?? '(none)'}`,
      why: 'Direct Reply-to needs no reply queue: no declare per client, nothing left behind when a client dies. The correlationId is how the client knows which call a reply answers.',
      fix: `channel.sendToQueue(queue, Buffer.from(request), { correlationId: randomUUID(), replyTo: '${DIRECT_REPLY_TO}' })`,
    });
  }
  t.observe([1, 2], `${label('ping', 2000)} resolved with "re: ping" in ${first.ms} ms; the server saw replyTo "${DIRECT_REPLY_TO}.…" and a correlationId`);

  // 2. Four calls at once; the server answers them in reverse order.
  const fruits = ['apple', 'banana', 'cherry', 'date'];
  const results = await Promise.all(fruits.map((f) => settleWithin(call(f, 2000), 2500)));
  t.provoke(2, `4 calls at once: ${fruits.join(', ')}; the server answered them in reverse order`);
  const batch = server.requests.slice(1, 5);
  const ids = batch.map((r) => r.properties.correlationId);
  if (new Set(ids).size !== ids.length) {
    t.fail({
      summary: `Several of the ${fruits.length} concurrent requests carried the same correlationId, so their calls could not tell their replies apart.`,
      expected: 'a different correlationId for every call',
      saw: `${batch.map((r) => `${r.body}: ${r.properties.correlationId}`).join(', ')}; results: ${results.map((x, j) => `${fruits[j]} → ${x.status === 'resolved' ? JSON.stringify(x.value) : x.status}`).join(', ')}`,
      why: "Two calls with one id share one entry in the map of waiting calls: the second overwrites the first, which then never gets its reply (or gets the other's). A timestamp, or a counter shared by several clients, is not unique: calls made in the same millisecond get the same one.",
      fix: 'A fresh id per call: randomUUID() (from node:crypto).',
    });
  }
  for (const [i, r] of results.entries()) {
    const f = fruits[i]!;
    if (r.status === 'resolved' && r.value === `re: ${f}`) continue;
    const summary =
      r.status === 'resolved'
        ? `${label(f, 2000)} resolved with ${JSON.stringify(r.value)}: the reply to another call.`
        : r.status === 'rejected'
          ? `${label(f, 2000)} was rejected while three other calls were waiting: ${r.error.message}`
          : `${label(f, 2000)} never settled while three other calls were waiting.`;
    t.fail({
      summary,
      expected: fruits.map((x) => `${x} → "re: ${x}"`).join(', '),
      saw: results.map((x, j) => `${fruits[j]} → ${x.status === 'resolved' ? JSON.stringify(x.value) : x.status}`).join(', '),
      why: 'Replies come back in the order the server finishes, not the order you asked. Only the correlationId says which call a reply belongs to.',
      fix: 'Keep a Map from correlationId to the waiting call; on each reply, look up msg.properties.correlationId and resolve that call only.',
    });
  }
  const replyTos = new Set(server.requests.map((r) => String(r.properties.replyTo)));
  if (replyTos.size > 1 || t.connectionsOpened() > 1) {
    t.fail({
      summary:
        t.connectionsOpened() > 1
          ? `One client opened ${t.connectionsOpened()} connections: a connection per call (or more).`
          : `The ${server.requests.length} requests of one client came from ${replyTos.size} different channels: a channel per call.`,
      expected: 'one connection and one channel for every call of the client',
      saw: t.connectionsOpened() > 1 ? `${t.connectionsOpened()} connections` : `${replyTos.size} different reply addresses: ${[...replyTos].slice(0, 3).map((r) => `"${r.slice(0, 40)}…"`).join(', ')}`,
      why: 'Direct Reply-to gives each channel its own reply address, so the server sees which channel asked. A channel (and a reply consumer) per call costs round trips on every call, and leaks when it is not closed; one channel, consuming once, carries every call.',
      fix: `Open the connection and the channel once in createRpcClient(), consume ${DIRECT_REPLY_TO} there, and let call() only publish on that channel.`,
    });
  }
  t.observe(2, 'each call resolved with its own reply; 4 different correlationIds, all from one connection and one reply address (one channel)');

  // Timers: each of the 5 calls so far has its reply, well within its 2000 ms. One more timer
  // than before would be a sweeper shared by all calls; more, the calls' own timers left running.
  const timersLeft = pendingTimers() - timersBefore;
  if (timersLeft > 1) {
    t.fail({
      summary: `The ${fruits.length + 1} calls so far resolved with their replies, but ${timersLeft} timers are still running: a reply does not clear its call's timer.`,
      expected: 'clearTimeout(call.timer) when the reply arrives: no timer of an answered call left behind',
      saw: `${timersLeft} more pending timers than before the first call (process.getActiveResourcesInfo())`,
      why: "A call's timer holds the call in memory until it fires, and keeps the process alive: a script that makes one call and closes the client cannot exit before the whole timeout has run out. When it fires it rejects a promise that has already resolved, which does nothing, so nothing else shows it.",
      fix: 'In the reply consumer: waiting.delete(id); clearTimeout(call.timer); call.resolve(msg.content.toString());',
    });
  }
  t.observe(3, `no timer of the ${fruits.length + 1} answered calls left running`);


  // 3. A timeout, and a late reply (and two stray ones) arriving while another call waits.
  t.provoke(3, `${label('slowpoke', 200)}: the server answers after 600 ms`);
  const slow = await settleWithin(call('slowpoke', 200), 1000);
  if (slow.status !== 'rejected') {
    return t.fail({
      summary:
        slow.status === 'resolved'
          ? `${label('slowpoke', 200)} ignored its 200 ms timeout: it resolved after ${slow.ms} ms, when the server finally answered.`
          : `${label('slowpoke', 200)} ignored its 200 ms timeout: still waiting after 1 s.`,
      expected: 'a rejection (an Error) after about 200 ms',
      saw: slow.status === 'resolved' ? `resolved with ${JSON.stringify(slow.value)} after ${slow.ms} ms` : 'pending',
      why: 'A server can be down, slow, or lose the request. Without a timeout the caller waits forever, and every waiting call holds memory; with one, it can retry, report, or degrade.',
      fix: 'In call(), start a setTimeout that deletes the waiting entry and rejects with an Error; clear it when the reply comes.',
    });
  }
  expectErrorRejection(label('slowpoke', 200), slow);
  t.observe(3, `${label('slowpoke', 200)} rejected after ${slow.ms} ms with an Error (${slow.error.message})`);
  const next = call('next', 1500);
  t.provoke(3, `${label('next', 1500)}: while it waits, the late reply to "slowpoke" arrives, then a reply without a correlationId and one with an unknown id, then its own`);
  await t.waitFor(() => server.replied.some((r) => r.request === 'slowpoke'), 1000);
  const after = await settleWithin(next, 2000);
  if (!(after.status === 'resolved' && after.value === 're: next')) {
    t.fail({
      summary:
        after.status === 'resolved'
          ? `A reply nobody was waiting for resolved another call: ${label('next', 1500)} got ${JSON.stringify(after.value)}.`
          : `After a late reply arrived for a call that had timed out, ${label('next', 1500)} ${after.status === 'rejected' ? `failed: ${after.error.message}` : 'never settled'}.`,
      expected: '"next" → "re: next"; the late reply to "slowpoke" and the stray replies ignored',
      saw: after.status === 'resolved' ? JSON.stringify(after.value) : after.status,
      why: 'A reply can arrive after its call gave up, or carry an id (or none) that is not yours. Its correlationId then matches nothing: the client must drop it. Handing it to another call gives that call a wrong answer; throwing in the consumer callback makes amqplib close the channel, and every later call fails.',
      fix: 'In the reply consumer: const call = waiting.get(msg.properties.correlationId); if (!call) return; (no "!", no throw).',
    });
  }
  t.observe(3, `${label('next', 1500)} resolved with "re: next"; the late and stray replies were ignored`);

  // 2. A request nobody picks up must expire with its call.
  const idle = await t.channel();
  await idle.assertQueue(IDLE_QUEUE, { durable: true });
  await idle.close();
  t.provoke(2, `${label('nobody home', 100, IDLE_QUEUE)}: a queue no server consumes`);
  // Only a WeakRef to the call stays here, so that the garbage collector can tell whether the client still holds it.
  const { ref: unansweredCall, outcome: unanswered } = await (async () => {
    const pending = call('nobody home', 100, IDLE_QUEUE);
    const outcome = await settleWithin(pending, 1000);
    if (outcome.status === 'rejected') void outcome.error.stack; // an Error holds the functions on its stack (the timer's callback, and so the call) until its stack is read
    return { ref: new WeakRef(pending), outcome };
  })();
  if (unanswered.status !== 'rejected') {
    t.fail({ summary: `${label('nobody home', 100, IDLE_QUEUE)} did not reject after its 100 ms timeout: it ${unanswered.status === 'resolved' ? 'resolved' : 'was still waiting after 1 s'}.`, fix: 'Every call() needs its timeout: setTimeout(() => { waiting.delete(id); reject(new Error(…)) }, timeoutMs).' });
  }
  const expired = await t.waitFor(async () => (await t.messageCount(IDLE_QUEUE)) === 0, 1200); // a loaded broker can take a while to drop an expired message
  if (!expired) {
    const [request] = await t.takeMessages(IDLE_QUEUE, 1);
    const expiration = request?.properties.expiration;
    t.fail({
      summary: `The request nobody answered was still in "${IDLE_QUEUE}" after its call had timed out: it carries ${expiration === undefined ? 'no expiration' : `expiration ${JSON.stringify(expiration)}, not "100"`}.`,
      expected: 'expiration "100" (the call\'s timeoutMs), so that the broker drops the request when the call gives up',
      saw: `a request with expiration ${expiration === undefined ? '(none)' : JSON.stringify(expiration)}, still queued ${unanswered.ms + 1200} ms later`,
      why: 'After timeoutMs nobody waits for the answer. Without an expiration, a server that comes back after an outage computes answers to every request that piled up, for callers that gave up long ago.',
      fix: 'channel.sendToQueue(queue, Buffer.from(request), { correlationId, replyTo, expiration: String(timeoutMs) })',
      link: t.ui('queues', IDLE_QUEUE),
    });
  }
  t.observe(2, `the request nobody picked up expired from "${IDLE_QUEUE}" with its call's timeout`);
  const held = await stillReachable(unansweredCall);
  if (held === undefined) t.note('This Node cannot run the garbage collector on demand: whether a timed-out call is dropped from the map of waiting calls was not checked.');
  if (held) {
    t.fail({
      summary: `After ${label('nobody home', 100, IDLE_QUEUE)} timed out, your client still holds on to it: the timeout did not delete it from the map of waiting calls.`,
      expected: 'the timeout deletes the call from the map (waiting.delete(correlationId)), then rejects it',
      saw: 'the checker dropped every reference it had to the call and ran the garbage collector: the call was still reachable from your client',
      why: 'A call leaves the map when its reply comes or when its timeout fires. For a call whose reply never comes (the server is down, the request expired) the timeout is the only way out: without waiting.delete(), every such call stays in memory as long as the client lives, and a client that keeps calling a server that is down grows without end.',
      fix: 'setTimeout(() => { waiting.delete(correlationId); reject(new Error(`no reply within ${timeoutMs} ms`)); }, timeoutMs)',
    });
  }
  if (held === false) t.observe(3, `${label('nobody home', 100, IDLE_QUEUE)}, timed out, was no longer held by your client (the garbage collector freed it)`);

  // 5. close() with a call still waiting.
  const waitingCall = settleWithin(call('void', 5000), 1000);
  await t.waitFor(() => server.requests.some((r) => r.body === 'void'), 1000);
  t.provoke(5, `called close() while ${label('void', 5000)} waits for a reply that will never come`);
  await t.expectClosedOnReturn('close()', clientConnections, () => client.close());
  const closed = await waitingCall;
  if (closed.status !== 'rejected') {
    t.fail({
      summary: `close() left ${label('void', 5000)} waiting: it ${closed.status === 'resolved' ? 'resolved' : 'did not settle within 1 s'}.`,
      expected: 'the waiting call rejected by close()',
      saw: closed.status,
      why: 'After close() no reply can arrive. A caller still awaiting one would hang until its timeout, or forever.',
      fix: 'In close(): for each waiting call, clearTimeout(call.timer) and call.reject(new Error(…)); then close the connection.',
    });
  }
  expectErrorRejection(`${label('void', 5000)}, waiting when close() was called,`, closed);
  await t.expectConnectionsClosed('close()');
  t.observe(5, `${label('void', 5000)} rejected with an Error at close(), and the connection closed`);

  // 4. A second client loses its connection: no crash, and its next call fails at once.
  const second = await create('createRpcClient(url) for a second client');
  await cutConnectionsAndSurvive(t, 4, 'the second client loses its network');
  const lost = await settleWithin(callOn(second, QUEUE, 'after the cut', 2000), 1000);
  if (lost.status !== 'rejected' || lost.ms > 500) {
    t.fail({
      summary:
        lost.status === 'rejected'
          ? `After the connection was lost, ${label('after the cut', 2000)} waited ${lost.ms} ms for its timeout instead of failing at once.`
          : `After the connection was lost, ${label('after the cut', 2000)} ${lost.status === 'resolved' ? `resolved with ${JSON.stringify(lost.value)}` : 'was still waiting after 1 s'}.`,
      expected: 'a rejection at once: the closed channel refuses to publish',
      saw: lost.status === 'rejected' ? `rejected after ${lost.ms} ms: ${lost.error.message}` : lost.status,
      why: 'Once the connection is gone, channel.sendToQueue() throws ("Channel closed"). A client that swallows that error leaves its caller waiting for a reply to a request that was never sent.',
      fix: 'Wrap sendToQueue() in try/catch: on an error, clear the timer, delete the waiting entry and reject the call with it.',
    });
  }
  expectErrorRejection(`${label('after the cut', 2000)}, after the connection was lost,`, lost);
  t.observe(4, `${label('after the cut', 2000)} rejected at once (${lost.ms} ms)${lost.status === 'rejected' ? `: ${lost.error.message}` : ''}`);

});

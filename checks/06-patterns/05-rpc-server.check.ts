// Check 6.5: the learner's RPC server against the checker's reference client (Direct Reply-to).
// Four concurrent requests with distinct correlation ids, and a request whose handler fails
// while they are in progress (the queue has a dead-letter exchange, which must receive it); a
// request without replyTo; stop() with nothing left unacked; then twelve requests whose handler
// never finishes (ten at once, no more), in progress when the checker cuts the server's
// connection: they must come back to the queue. Finally the server's consumer is cancelled.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/05-rpc-server.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionMark, connectionsSince, type AmqpConnection } from '../../runner/check/frames.js';
import { cutConnectionsAndSurvive, deleteQueueUnderConsumer, expectMethods, referenceClient } from './support.js';

const QUEUE = 'rpc';
const DEAD_LETTERS = 'rpc-failed'; // the exchange and the queue of the dead-lettered requests
const DELAYS: Record<string, number> = { apple: 120, banana: 80, cherry: 40, date: 0 };
const PREFETCH = 10;
const HELD = PREFETCH + 2;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

export default defineCheck<typeof Exercise>(async (t) => {
  const calls: string[] = [];
  const handler = async (request: string): Promise<string> => {
    calls.push(String(request));
    if (String(request).startsWith('hang')) await never;
    if (request === 'boom') throw new Error('the handler failed on purpose');
    await sleep(DELAYS[request] ?? 0);
    return `re: ${request}`;
  };
  const countOf = (request: string) => calls.filter((c) => c === request).length;
  const connectionsOf = new Map<Exercise.RpcServer, AmqpConnection[]>();
  const start = async (again = '') => {
    const mark = connectionMark();
    const server = await t.call(`startRpcServer(url, "${QUEUE}", handler)${again}`, () => t.target.startRpcServer(t.url, QUEUE, handler));
    expectMethods(t, 'startRpcServer()', server, ['stop']);
    connectionsOf.set(server, connectionsSince(mark));
    return server;
  };

  // The queue gets a dead-letter exchange, by policy: a request rejected without requeue lands there.
  const setup = await t.channel();
  await setup.assertExchange(DEAD_LETTERS, 'fanout', { durable: true });
  await setup.assertQueue(DEAD_LETTERS, { durable: true });
  await setup.bindQueue(DEAD_LETTERS, DEAD_LETTERS, '');
  await setup.close();
  await t.mgmt.setPolicy(t.vhost, 'dead-letter-failed-requests', { pattern: `^${QUEUE}$`, definition: { 'dead-letter-exchange': DEAD_LETTERS } });
  t.log(`gave "${QUEUE}" a dead-letter exchange "${DEAD_LETTERS}" (a policy), bound to a queue "${DEAD_LETTERS}"`);

  t.provoke(1, `started the server in a vhost without the queue "${QUEUE}"`);
  const server = await start();
  await expectQuorumQueue(t, QUEUE);
  t.observe(1, `read "${QUEUE}" from the broker: a durable quorum queue`);
  const client = await referenceClient(t);
  const replyFor = (id: string) => client.replies.find((r) => r.properties.correlationId === id);

  // Four requests at once, answered in reverse order; a failing one while they are in progress.
  const fruits = Object.keys(DELAYS);
  const ids = fruits.map((f) => client.send(QUEUE, f));
  client.send(QUEUE, 'boom');
  t.provoke([2, 4], `sent ${fruits.join(', ')} at once, each with its own correlationId and replyTo amq.rabbitmq.reply-to, then "boom" (the handler rejects it) while they were in progress`);
  const answered = () => client.replies.filter((r) => fruits.some((f) => r.body === `re: ${f}`)).length;
  await t.waitFor(() => answered() >= fruits.length, 1500);
  if (client.replies.length === 0) {
    const elsewhere = [];
    for (const q of await t.mgmt.queues(t.vhost)) {
      if (q.name === QUEUE || q.name === DEAD_LETTERS) continue;
      const n = await t.messageCount(q.name).catch(() => 0);
      if (n > 0) elsewhere.push(`"${q.name}" holds ${n} message(s)`);
    }
    t.fail({
      summary: `No reply came back to the replyTo address of any of the ${fruits.length} requests, though your handler was called ${calls.filter((c) => c in DELAYS).length} time(s).`,
      expected: `${fruits.length} replies, sent to each request's msg.properties.replyTo`,
      saw: elsewhere.length ? elsewhere.join('; ') : 'no reply anywhere',
      why: 'Each request says where its answer must go: msg.properties.replyTo (with Direct Reply-to, "amq.rabbitmq.reply-to.<opaque>", a different address per client). A reply sent anywhere else never reaches the caller.',
      fix: 'channel.sendToQueue(msg.properties.replyTo, Buffer.from(reply), { correlationId: msg.properties.correlationId })',
      link: t.ui('queues'),
    });
  }
  const anonymous = client.replies.filter((r) => !r.properties.correlationId);
  if (anonymous.length) {
    t.fail({
      summary: `${anonymous.length} of the replies came back without a correlationId: the client cannot tell which call they answer.`,
      expected: "each reply with its request's correlationId",
      saw: anonymous.map((r) => `"${r.body}" (no correlationId)`).join(', '),
      why: 'A client has several calls in flight, and replies come back in the order the server finishes. The correlationId, copied from the request, is the only link between a reply and its call.',
      fix: 'channel.sendToQueue(replyTo, Buffer.from(reply), { correlationId: msg.properties.correlationId })',
    });
  }
  for (const [i, f] of fruits.entries()) {
    const reply = replyFor(ids[i]!);
    if (!reply || reply.body !== `re: ${f}`) {
      t.fail({
        summary: reply ? `The reply carrying the correlationId of "${f}" says ${JSON.stringify(reply.body)}.` : `No reply came back for "${f}" (${answered()} of ${fruits.length} replies arrived).`,
        expected: fruits.map((x) => `${x} → "re: ${x}"`).join(', '),
        saw: fruits.map((x, j) => `${x} → ${replyFor(ids[j]!)?.body ?? '(none)'}`).join(', '),
        fix: "Reply to each request with the result of handler() for THAT request, with THAT request's correlationId.",
      });
    }
  }
  const order = client.replies.map((r) => r.body.slice(4)).filter((b) => b in DELAYS);
  t.observe(2, `4 replies, each with its request's correlationId, sent to its replyTo (they arrived in the order ${order.join(', ')})`);

  // A request nobody can answer: no replyTo.
  client.send(QUEUE, 'orphan', { replyTo: false });
  const afterOrphan = client.send(QUEUE, 'after-orphan');
  t.provoke(3, 'sent "orphan" without a replyTo, then "after-orphan"');
  if (!(await t.waitFor(() => replyFor(afterOrphan), 1500))) {
    t.fail({
      summary: 'After a request without a replyTo, the server stopped answering: "after-orphan" got no reply.',
      expected: '"orphan" acked and dropped, "after-orphan" answered',
      saw: `handler calls: ${calls.join(', ')}`,
      why: 'A request can come without a replyTo (a bug in some client, a message published by hand). The server must survive it: there is nobody to answer, so it acks the request and moves on.',
      fix: 'if (!msg.properties.replyTo) { channel.ack(msg); return; }',
    });
  }
  if (countOf('orphan') > 0) {
    t.fail({
      summary: 'The handler was called for "orphan", a request without a replyTo, whose answer nobody can receive.',
      expected: '"orphan" acked without calling the handler',
      saw: `handler("orphan") called ${countOf('orphan')} time(s)`,
      why: 'Without a replyTo the answer has nowhere to go. Computing it wastes the work (and may have effects), and publishing it to an undefined address fails.',
      fix: 'Check msg.properties.replyTo first: if (!replyTo) { channel.ack(msg); return; }, before calling the handler.',
    });
  }
  t.observe(3, '"after-orphan" was answered, and the handler was never called for "orphan"');

  // The failing request was handled once, not requeued in a loop.
  const booms = countOf('boom');
  if (booms > 1) {
    t.fail({
      summary: `The request "boom", whose handler rejects, was handled ${booms} times in a row: it was requeued after each failure.`,
      expected: '"boom" handled once, then dropped (rejected without requeue)',
      saw: `${booms} calls of handler("boom")`,
      why: 'A request that fails because of what it contains fails again every time. Requeued, it loops at full speed, burning CPU and delaying every other request. The caller gets no reply either way, and its timeout reports the failure.',
      fix: 'channel.reject(msg, false): the second argument, requeue, must be false. (The queue\'s dead-letter exchange, if it has one, then gets the request.)',
    });
  }

  t.provoke(6, 'called stop()');
  await t.expectClosedOnReturn('stop()', connectionsOf.get(server)!, () => server.stop());
  await t.expectConnectionsClosed('stop()');
  await t.queue(QUEUE, { why: 'stop() stops one server; the queue, and the requests waiting in it, belong to every server.', fix: 'In stop(), cancel the consumer and close the connection; never delete the queue.' });
  const left = await t.messageCount(QUEUE);

  if (left > 0) {
    const back = (await t.takeMessages(QUEUE)).map((m) => m.content.toString());
    t.fail({
      summary: back.includes('orphan')
        ? 'The request without a replyTo was never acknowledged: after stop() it went back to the queue, to be delivered again forever.'
        : back.includes('boom')
          ? 'The request whose handler failed was neither acked nor rejected: after stop() it went back to the queue, to fail again.'
          : `After stop(), ${left} request(s) went back to the queue: they were never acknowledged.`,
      expected: '0 requests left in the queue',
      saw: `back in "${QUEUE}": ${back.map((b) => `"${b}"`).join(', ')}`,
      why: 'A request that is neither acked nor rejected stays unacked until the channel closes; then the broker delivers it again. An early return that forgets the ack is the usual cause.',
      fix: 'Every path through the consumer must ack (or reject) the message exactly once, including the "no replyTo" path and the failure path.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe([2, 3, 6], `after stop(): the connection closed, and nothing came back to "${QUEUE}" (every request acked or rejected)`);

  await t.waitFor(async () => (await t.messageCount(DEAD_LETTERS)) > 0, 300);
  const deadLettered = (await t.takeMessages(DEAD_LETTERS)).map((m) => m.content.toString());

  // Twelve requests whose handler never finishes: ten in progress at once, all back after a crash.
  t.provoke(1, `started the server again: "${QUEUE}" exists already`);
  await start(' again');
  const held = Array.from({ length: HELD }, (_, i) => `hang #${i + 1}`);
  for (const request of held) client.send(QUEUE, request);
  t.provoke([1, 2], `sent ${HELD} requests whose handler never finishes`);
  const inProgress = () => calls.filter((c) => c.startsWith('hang')).length;
  await t.waitFor(() => inProgress() >= PREFETCH, 1500);
  await sleep(100); // time for any delivery beyond the limit to arrive
  const atOnce = inProgress();
  await cutConnectionsAndSurvive(t, 5, `a crash with ${atOnce} requests in progress`);
  const back = (await t.waitFor(async () => ((await t.messageCount(QUEUE)) >= HELD ? HELD : undefined), 1000)) ?? (await t.messageCount(QUEUE));
  if (back < HELD) {
    t.fail({
      summary: `${HELD - back} of the ${HELD} requests in progress were lost: the checker cut the server's connection while their handler was still working, and they did not come back to the queue.`,
      expected: `all ${HELD} back in the queue, for another server to answer`,
      saw: `${back} back in "${QUEUE}"`,
      why: 'A request acked before its reply is sent (or consumed with noAck: true) is forgotten by the broker at once. If the server dies before replying, nobody ever answers, and the caller only learns it from its timeout.',
      fix: 'Consume with { noAck: false }, and ack in the .then() of the handler, after sendToQueue() of the reply.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(2, `all ${HELD} requests came back to "${QUEUE}" after the crash: none had been acked before its reply`);
  if (atOnce !== PREFETCH) {
    t.fail({
      summary:
        atOnce > PREFETCH
          ? `The server had ${atOnce} requests in progress at once: its consumer has no prefetch limit (or one set after consume()).`
          : `The server had only ${atOnce} request(s) in progress at once: its prefetch is ${atOnce}, not ${PREFETCH}.`,
      expected: `${PREFETCH} requests in progress, the other ${HELD - PREFETCH} waiting in the queue`,
      saw: `${atOnce} calls of the handler that had not finished`,
      why:
        atOnce > PREFETCH
          ? 'Without a limit the broker pushes every waiting request to one server at once: the other servers on the queue stay idle, and a crash puts them all back at once. Prefetch applies to consumers started after it.'
          : 'With prefetch 1 a server answers one request at a time: one slow request delays every caller behind it. The exercise asks for 10 at once.',
      fix: `await channel.prefetch(${PREFETCH}) before channel.consume(...).`,
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(1, `exactly ${PREFETCH} of the ${HELD} requests were in progress at once`);

  // The failed request, judged now: a server that acks too early loses requests, which the crash above shows more plainly.
  if (deadLettered.join() !== 'boom') {
    t.fail({
      summary: deadLettered.length
        ? `The dead-letter queue received ${deadLettered.map((b) => `"${b}"`).join(', ')}: requests that did not fail were rejected too.`
        : 'The request "boom", whose handler failed, never reached the dead-letter exchange: it was acked, not rejected.',
      expected: 'only "boom" dead-lettered (rejected without requeue)',
      saw: deadLettered.length ? deadLettered.join(', ') : `nothing in "${DEAD_LETTERS}"`,
      why: deadLettered.length
        ? 'nack(msg, true, …) nacks every unacknowledged request up to this one, including those still being handled: the second argument, allUpTo, must be false.'
        : 'Acking says "done"; rejecting without requeue says "failed, give up". Only a rejected request goes to the dead-letter exchange, where someone can look at it; an acked one vanishes without a trace.',
      fix: 'When the handler rejects: channel.reject(msg, false), which answers this one request only.',
      link: t.ui('queues', DEAD_LETTERS),
    });
  }
  t.observe(4, `"boom" was handled once and dead-lettered to "${DEAD_LETTERS}" (rejected without requeue), and nothing else was`);
  t.expectRejectsNotNacks(4, 'When the handler rejected "boom"');

  // The consumer is cancelled (its queue deleted), then stop().
  const last = await start(' a third time');
  await t.waitFor(() => inProgress() >= 2 * PREFETCH, 1500);
  await deleteQueueUnderConsumer(t, QUEUE, 5);
  t.provoke(6, 'called stop() after the consumer was cancelled');
  await t.expectClosedOnReturn('stop()', connectionsOf.get(last)!, () => last.stop());
  await t.expectConnectionsClosed('stop()');
  t.observe(6, 'every connection closed');
});

// Check 6.5: the learner's RPC server against the checker's reference client (Direct Reply-to).
// Four concurrent requests with distinct correlation ids; a request without replyTo; a request
// whose handler fails; stop() with nothing left unacked; then a request in progress when the
// checker cuts the server's connection, which must come back to the queue.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/05-rpc-server.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { referenceClient } from './support.js';

const QUEUE = 'rpc';
const DELAYS: Record<string, number> = { apple: 120, banana: 80, cherry: 40, date: 0 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

export default defineCheck<typeof Exercise>(async (t) => {
  const calls: string[] = [];
  const handler = async (request: string): Promise<string> => {
    calls.push(request);
    if (request === 'hang') await never;
    if (request === 'boom') throw new Error('the handler failed on purpose');
    await sleep(DELAYS[request] ?? 0);
    return `re: ${request}`;
  };
  const countOf = (request: string) => calls.filter((c) => c === request).length;

  const server = await t.call(`startRpcServer(url, "${QUEUE}", handler)`, () => t.target.startRpcServer(t.url, QUEUE, handler));
  await expectQuorumQueue(t, QUEUE);
  const client = await referenceClient(t);
  const replyFor = (id: string) => client.replies.find((r) => r.properties.correlationId === id);

  // A request whose handler fails: it must not come back again and again.
  client.send(QUEUE, 'boom');
  t.log('sent "boom" (the handler rejects it)');

  // 1. Four requests at once, answered in reverse order.
  const fruits = Object.keys(DELAYS);
  const ids = fruits.map((f) => client.send(QUEUE, f));
  t.log(`sent ${fruits.join(', ')} at once, each with its own correlationId and replyTo amq.rabbitmq.reply-to`);
  const answered = () => client.replies.filter((r) => r.body !== 're: boom').length;
  await t.waitFor(() => answered() >= fruits.length, 1500);
  if (answered() === 0) {
    const elsewhere = [];
    for (const q of await t.mgmt.queues(t.vhost)) {
      if (q.name === QUEUE) continue;
      const n = await t.messageCount(q.name);
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
        summary: reply
          ? `The reply carrying the correlationId of "${f}" says ${JSON.stringify(reply.body)}.`
          : `No reply came back for "${f}" (${answered()} of ${fruits.length} replies arrived).`,
        expected: fruits.map((x) => `${x} → "re: ${x}"`).join(', '),
        saw: fruits.map((x, j) => `${x} → ${replyFor(ids[j]!)?.body ?? '(none)'}`).join(', '),
        fix: "Reply to each request with the result of handler() for THAT request, with THAT request's correlationId.",
      });
    }
  }
  t.log(`4 replies, each with its request's correlationId (they arrived in the order ${client.replies.filter((r) => r.body !== 're: boom').map((r) => r.body.slice(4)).join(', ')})`);

  // 2. A request nobody can answer: no replyTo.
  client.send(QUEUE, 'orphan', { replyTo: false });
  const afterOrphan = client.send(QUEUE, 'after-orphan');
  t.log('sent "orphan" without a replyTo, then "after-orphan"');
  if (!(await t.waitFor(() => replyFor(afterOrphan), 1500))) {
    t.fail({
      summary: 'After a request without a replyTo, the server stopped answering: "after-orphan" got no reply.',
      expected: '"orphan" acked and dropped, "after-orphan" answered',
      saw: `handler calls: ${calls.join(', ')}`,
      why: 'A request can come without a replyTo (a bug in some client, a message published by hand). The server must survive it: there is nobody to answer, so it acks the request and moves on.',
      fix: "if (!msg.properties.replyTo) { channel.ack(msg); return; }",
    });
  }

  // 3. The failing request was handled once, not requeued in a loop.
  const booms = countOf('boom');
  if (booms > 1) {
    t.fail({
      summary: `The request "boom", whose handler rejects, was handled ${booms} times in a row: it was requeued after each failure.`,
      expected: '"boom" handled once, then dropped (nack without requeue)',
      saw: `${booms} calls of handler("boom")`,
      why: 'A request that fails because of what it contains fails again every time. Requeued, it loops at full speed, burning CPU and delaying every other request. The caller gets no reply either way, and its timeout reports the failure.',
      fix: 'channel.nack(msg, false, false): the third argument, requeue, must be false. (Chapter 7 sends such messages to a dead-letter queue.)',
    });
  }

  await t.call('stop()', () => server.stop());
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(QUEUE);
  if (left > 0) {
    const orphan = (await t.takeMessages(QUEUE)).map((m) => m.content.toString());
    t.fail({
      summary: orphan.includes('orphan')
        ? 'The request without a replyTo was never acknowledged: after stop() it went back to the queue, to be delivered again forever.'
        : `After stop(), ${left} request(s) went back to the queue: they were never acknowledged.`,
      expected: '0 requests left in the queue',
      saw: `back in "${QUEUE}": ${orphan.map((b) => `"${b}"`).join(', ')}`,
      why: 'A request that is neither acked nor nacked stays unacked until the channel closes; then the broker delivers it again. An early return that forgets the ack is the usual cause.',
      fix: 'Every path through the consumer must ack (or nack) the message exactly once, including the "no replyTo" path.',
      link: t.ui('queues', QUEUE),
    });
  }

  // 4. A request in progress when the server dies must come back.
  await t.call(`startRpcServer(url, "${QUEUE}", handler) again`, () => t.target.startRpcServer(t.url, QUEUE, handler));
  client.send(QUEUE, 'hang');
  if (!(await t.waitFor(() => countOf('hang') > 0, 1500))) {
    t.fail({ summary: 'The restarted server did not pass the request "hang" to the handler.', fix: 'startRpcServer() must work when called again.' });
  }
  t.cutConnections('a crash while handler("hang") was still working');
  const back = await t.waitFor(async () => ((await t.messageCount(QUEUE)) >= 1 ? 1 : undefined), 1000);
  if (!back) {
    t.fail({
      summary: 'The request "hang" was lost: the checker cut the server\'s connection while its handler was still working, and the request did not come back to the queue.',
      expected: '"hang" back in the queue, for another server to answer',
      saw: '0 messages in the queue',
      why: 'A request acked before its reply is sent (or consumed with noAck: true) is forgotten by the broker at once. If the server dies before replying, nobody ever answers, and the caller only learns it from its timeout.',
      fix: 'Consume with { noAck: false }, and ack in the .then() of the handler, after sendToQueue() of the reply.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.log('"hang" came back to the queue after the crash');
});

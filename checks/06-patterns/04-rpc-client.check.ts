// Check 6.4: the learner's RPC client against the checker's reference server on "rpc". One call;
// four concurrent calls answered in reverse order; a call that times out, whose reply then comes
// late while another call waits (the server answers that one only after the late reply); close() with a call still waiting.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/04-rpc-client.js';
import { settleWithin, startReferenceServer, type ServerPlan } from './support.js';

const QUEUE = 'rpc';
const PLAN: Record<string, ServerPlan> = {
  apple: { delayMs: 150 },
  banana: { delayMs: 100 },
  cherry: { delayMs: 50 },
  date: { delayMs: 0 },
  slowpoke: { delayMs: 600 }, // the client gives up at 200 ms; the reply comes anyway, late
  next: { afterReplyTo: 'slowpoke', delayMs: 100 }, // still waiting when the late reply arrives
  void: { silent: true },
};
const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

export default defineCheck<typeof Exercise>(async (t) => {
  const server = await startReferenceServer(t, QUEUE, (request) => PLAN[request] ?? {});
  t.log(`the checker's server answers on "${QUEUE}" with "re: <request>"`);
  const client = await t.call('createRpcClient(url)', async () => {
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
  const label = (request: string, timeoutMs: number) => `call("${QUEUE}", "${request}", ${timeoutMs})`;

  // 1. One call.
  const first = await settleWithin(client.call(QUEUE, 'ping', 2000), 2500);
  const seen = server.requests[0];
  if (first.status === 'rejected') {
    const msg = first.error.message;
    const before = /fast reply consumer does not exist/.test(msg);
    t.fail({
      summary: before
        ? `${label('ping', 2000)} failed: the broker closed the channel because the request named ${DIRECT_REPLY_TO} as its replyTo before the channel consumed it (fast reply consumer does not exist).`
        : `${label('ping', 2000)} was rejected: ${msg}`,
      expected: '"re: ping"',
      saw: `rejected after ${first.ms} ms: ${msg}`,
      why: before
        ? `With Direct Reply-to, the channel must already be consuming ${DIRECT_REPLY_TO} when a request naming it goes out: the broker has nowhere to send the reply otherwise, and refuses the publish.`
        : 'The checker\'s server answers every request at once; a correct client resolves with its reply.',
      fix: before
        ? `In createRpcClient(), await channel.consume('${DIRECT_REPLY_TO}', onReply, { noAck: true }) once, before returning; call() only publishes, on that same channel.`
        : 'Read the error; run your file on its own to see the whole stack trace.',
    });
  }
  if (first.status === 'pending' || (first.status === 'resolved' && first.value !== 're: ping')) {
    const replyTo = seen?.properties.replyTo as string | undefined;
    t.fail({
      summary: first.status === 'pending' ? `${label('ping', 2000)} neither resolved nor rejected within 2.5 s.` : `${label('ping', 2000)} resolved with ${JSON.stringify(first.value)}.`,
      expected: '"re: ping"',
      saw: seen ? `the server got the request with replyTo ${replyTo === undefined ? '(none)' : `"${replyTo}"`}, correlationId ${seen.properties.correlationId ?? '(none)'}` : `no request reached "${QUEUE}"`,
      why: seen
        ? 'The server sends its reply to the request\'s replyTo, with the request\'s correlationId. Without a replyTo it cannot answer; the client finds its call by the correlationId.'
        : `call() must publish the request to the queue it is given: channel.sendToQueue('${QUEUE}', …).`,
      fix: `channel.sendToQueue(queue, Buffer.from(request), { correlationId, replyTo: '${DIRECT_REPLY_TO}' }), and resolve the call whose correlationId the reply carries.`,
    });
  }
  const replyTo = String(seen?.properties.replyTo ?? '');
  if (!replyTo.startsWith(DIRECT_REPLY_TO) || !seen?.properties.correlationId) {
    t.fail({
      summary: !replyTo.startsWith(DIRECT_REPLY_TO)
        ? `The request's replyTo is "${replyTo}", not Direct Reply-to (${DIRECT_REPLY_TO}).`
        : 'The request carries no correlationId.',
      expected: `replyTo "${DIRECT_REPLY_TO}" (the server sees it rewritten as "${DIRECT_REPLY_TO}.<opaque>"), and a correlationId`,
      saw: `replyTo "${replyTo}", correlationId ${seen?.properties.correlationId ?? '(none)'}`,
      why: 'Direct Reply-to needs no reply queue: no declare per client, nothing left behind when a client dies. The correlationId is how the client knows which call a reply answers.',
      fix: `channel.sendToQueue(queue, Buffer.from(request), { correlationId: randomUUID(), replyTo: '${DIRECT_REPLY_TO}' })`,
    });
  }
  t.log(`${label('ping', 2000)} resolved with "re: ping" in ${first.ms} ms`);

  // 2. Four calls at once; the server answers them in reverse order.
  const fruits = ['apple', 'banana', 'cherry', 'date'];
  const results = await Promise.all(fruits.map((f) => settleWithin(client.call(QUEUE, f, 2000), 2500)));
  t.log(`4 calls at once: ${fruits.join(', ')}; the server answered them in reverse order`);
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
  const ids = server.requests.slice(1, 5).map((r) => r.properties.correlationId);
  if (new Set(ids).size !== ids.length) {
    t.fail({ summary: 'Several concurrent requests carried the same correlationId.', saw: ids.join(', '), fix: 'A fresh id per call: randomUUID().' });
  }

  // 3. A timeout, and a late reply arriving while another call waits.
  const slow = await settleWithin(client.call(QUEUE, 'slowpoke', 200), 1000);
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
  t.log(`${label('slowpoke', 200)} rejected after ${slow.ms} ms (${slow.error.message}); the server will answer it anyway at 600 ms`);
  const next = client.call(QUEUE, 'next', 1500);
  await t.waitFor(() => server.replied.some((r) => r.request === 'slowpoke'), 1000);
  t.log('the late reply to "slowpoke" was sent, while "next" was waiting');
  const after = await settleWithin(next, 2000);
  if (!(after.status === 'resolved' && after.value === 're: next')) {
    t.fail({
      summary:
        after.status === 'resolved'
          ? `The late reply to "slowpoke" (whose call had already timed out) resolved another call: ${label('next', 1500)} got ${JSON.stringify(after.value)}.`
          : `After a late reply arrived for a call that had timed out, ${label('next', 1500)} ${after.status === 'rejected' ? `failed: ${after.error.message}` : 'never settled'}.`,
      expected: '"next" → "re: next"; the late reply to "slowpoke" ignored',
      saw: after.status === 'resolved' ? JSON.stringify(after.value) : after.status,
      why: 'A reply can arrive after its call gave up. Its correlationId then matches nothing: the client must drop it. Handing it to another call gives that call a wrong answer; throwing in the consumer callback makes amqplib close the channel, and every later call fails.',
      fix: 'In the reply consumer: const call = waiting.get(id); if (!call) return; (no "!", no throw).',
    });
  }
  t.log(`${label('next', 1500)} resolved with "re: next"; the late reply was ignored`);

  // 4. close() with a call still waiting.
  const waitingCall = settleWithin(client.call(QUEUE, 'void', 5000), 1000);
  await t.waitFor(() => server.requests.some((r) => r.body === 'void'), 1000);
  await t.call('close() while a call waits for a reply that will never come', () => client.close());
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
  await t.expectConnectionsClosed('close()');
});

// Check 9.4: the learner's Express app asks the checker's pricing service over RabbitMQ. The
// checker plays the service on "prices": it answers at once, in reverse order, late, or never.
// App A (time-out 1500 ms): one request; five at once answered in reverse order; one that waits
// while the checker reads pendingCount(); close() with a request still waiting. App B (time-out
// 150 ms): a request answered only after its 504, with the next request waiting; 1,000
// requests that time out, sent by autocannon, after which nothing may be left waiting; a request
// nobody picks up, which must expire. App C: its connection is cut, and the next request must
// answer 503 at once.
import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { connectionMark, connectionsSince } from '../../runner/check/frames.js';
import { showReply, startApp, stopAllApps, type HttpReply, type InProcessApp } from '../../runner/check/http-app.js';
import type * as Exercise from '../../exercises/09-express-api/04-rpc-over-http.js';
import { startLoad } from './load.js';

type T = CheckContext<typeof Exercise>;

const QUEUE = 'prices';
const DIRECT = 'amq.rabbitmq.reply-to';
const REVERSED = ['pear', 'plum', 'fig', 'kiwi', 'lime']; // answered together, last asked first
const MANY = 1000;

/** Timers that keep the event loop alive (unref()'d ones do not count). */
const pendingTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

// ---- the checker's pricing service -----------------------------------------------------------

interface Seen {
  sku?: string;
  body: string;
  properties: MessageProperties;
  at: number;
}

/**
 * Consumes "prices" and answers {"sku", "price", "answer"} to the request's replyTo with its
 * correlationId: at once, or as `hold` says. Records every request and every reply.
 */
async function startPricing(t: T) {
  const ch: Channel = await t.channel();
  await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const seen: Seen[] = [];
  const replied: { sku: string; correlationId?: string; at: number; body: string }[] = [];
  let answers = 0;
  const batch: Seen[] = [];
  let heldSlow: Seen | undefined;
  const send = (req: Seen, extra: () => void = () => undefined) => {
    const { replyTo, correlationId } = req.properties;
    if (!replyTo) return;
    const body = JSON.stringify({ sku: req.sku, price: 100 + ++answers, answer: answers });
    try {
      extra();
      ch.sendToQueue(replyTo, Buffer.from(body), { correlationId, contentType: 'application/json' });
      replied.push({ sku: req.sku ?? '', correlationId, at: Date.now(), body });
    } catch {
      // the checker's channel is closing: the check is over
    }
  };
  const onRequest = (msg: ConsumeMessage | null) => {
    if (!msg) return;
    ch.ack(msg);
    const body = msg.content.toString();
    let sku: string | undefined;
    try {
      const parsed = JSON.parse(body) as { sku?: unknown };
      if (typeof parsed?.sku === 'string') sku = parsed.sku;
    } catch {
      // not JSON: recorded as it is, answered with no sku
    }
    const req: Seen = { sku, body, properties: msg.properties, at: Date.now() };
    seen.push(req);
    if (sku?.startsWith('silent')) return; // never answered
    if (sku === 'slow') return void (heldSlow = req); // answered late: once "after-slow" has come
    if (sku === 'after-slow') {
      // The late reply to "slow" first, then two stray replies, then its own.
      if (heldSlow) send(heldSlow);
      heldSlow = undefined;
      send(req, () => {
        ch.sendToQueue(req.properties.replyTo, Buffer.from('{"stray":"no correlationId"}'));
        ch.sendToQueue(req.properties.replyTo, Buffer.from('{"stray":"unknown correlationId"}'), { correlationId: randomUUID() });
      });
      return;
    }
    if (sku && REVERSED.includes(sku)) {
      batch.push(req);
      if (batch.length === REVERSED.length) for (const r of batch.splice(0).reverse()) send(r);
      return;
    }
    send(req);
  };
  let tag = (await ch.consume(QUEUE, onRequest, { noAck: false })).consumerTag;
  return {
    seen,
    replied,
    /** The requests for `sku`, in the order they came. */
    requestsFor: (sku: string) => seen.filter((s) => s.sku === sku),
    async pause() {
      await ch.cancel(tag);
    },
    async resume() {
      tag = (await ch.consume(QUEUE, onRequest, { noAck: false })).consumerTag;
    },
  };
}

// ---- the learner's app ----------------------------------------------------------------------

interface Started {
  http: InProcessApp;
  app: Exercise.PriceApp;
  /** Whether the learner's close() was called already. */
  closed: boolean;
}

/** createApp(url, { timeoutMs }), served by the harness (without the learner's close(), which the check calls itself). */
async function start(t: T, timeoutMs: number): Promise<Started> {
  const label = `createApp({ amqpUrl, queue: "${QUEUE}", timeoutMs: ${timeoutMs} })`;
  let made: Exercise.PriceApp | undefined;
  const http = await startApp(t, label, async () => {
    made = await t.target.createApp({ amqpUrl: t.url, queue: QUEUE, timeoutMs });
    const missing = ['pendingCount', 'close'].filter((k) => typeof (made as unknown as Record<string, unknown> | undefined)?.[k] !== 'function');
    if (missing.length || typeof made?.app !== 'function') {
      t.fail({
        summary: `${label} returned ${made === undefined ? 'nothing' : `an object without ${[...(typeof made?.app === 'function' ? [] : ['app']), ...missing].join(', ')}`}.`,
        expected: '{ app, pendingCount, close }: the Express app, a function that returns how many requests wait for a reply, and a function that closes',
        saw: made === undefined ? 'undefined' : `keys ${Object.keys(made).join(', ') || '(none)'}`,
        why: 'The checker serves your app and counts the requests it still holds after they timed out: it needs all three.',
        fix: 'return { app, pendingCount: () => pending.size, close };',
      });
    }
    return { app: made!.app };
  });
  return { http, app: made!, closed: false };
}

async function closeApp(t: T, s: Started): Promise<void> {
  await s.http.stop({ graceMs: 500 });
  if (!s.closed) {
    s.closed = true;
    await t.call('close()', () => s.app.close()).catch(() => undefined);
  }
}

const price = (sku: string) => `/prices/${sku}`;

/** Whether the answer's body is a JSON { error } with some text in it. */
const hasError = (r: HttpReply) => typeof bodyOf(r)?.error === 'string' && String(bodyOf(r)!.error).trim() !== '';

/** Fails unless `r` is the 504 with a JSON { error } of a request that timed out after `timeoutMs`. */
function expectTimeout(t: T, r: HttpReply, timeoutMs: number): void {
  if (r.status === 504 && hasError(r)) return;
  t.fail({
    summary:
      r.status === 504
        ? `${r.path} answered 504, but without a JSON { error } body that says what happened.`
        : r.status
          ? `GET ${r.path}, which the pricing service did not answer in time, answered ${r.status} after ${r.ms} ms, not 504 after the ${timeoutMs} ms time-out.`
          : `GET ${r.path} got no answer at all (${r.failure}): the app ignored its ${timeoutMs} ms time-out.`,
    expected: `504 Gateway Timeout after about ${timeoutMs} ms, with a JSON body { "error": "…" }`,
    saw: `${showReply(r)}: ${r.text.slice(0, 120) || '(empty body)'}`,
    why:
      r.status === 200 || r.status === 0
        ? 'The app waited for the reply as long as the client did. Its time-out must be shorter than the one of whoever calls it (a browser, a proxy, another service), or they give up first, and every request to a slow or dead service holds memory and a socket until they do.'
        : '504 says: the service behind me did not answer in time. The client may retry; a 500 says the app itself is broken.',
    fix: 'In ask(): setTimeout(() => { pending.delete(id); reject(new NoReply(504, …)) }, timeoutMs); the route answers res.status(err.status).json({ error: err.message }).',
  });
}

/** The reply's body, parsed; undefined when it is not JSON. */
const bodyOf = (r: HttpReply) => r.json as { sku?: unknown; price?: unknown; answer?: unknown; error?: unknown } | undefined;

export default defineCheck<typeof Exercise>(async (t) => {
  const pricing = await startPricing(t);
  t.log(`the checker's pricing service consumes "${QUEUE}" and answers {"sku", "price", "answer"} to each request's replyTo`);
  try {
    await run(t, pricing);
  } finally {
    await stopAllApps({ graceMs: 200, closeTimeoutMs: 2000 });
  }
});

async function run(t: T, pricing: Awaited<ReturnType<typeof startPricing>>) {
  // ---- App A: time-out 1500 ms -------------------------------------------------------------
  const markA = connectionMark();
  const openedBefore = t.connectionsOpened();
  const a = await start(t, 1500);
  const connsA = connectionsSince(markA);
  const replyConsumer = connsA.flatMap((c) => c.sent).find((m) => m.name === 'basic.consume' && m.queue === DIRECT);
  t.provoke(1, 'createApp() returned: before any request, read the frames your app had sent');
  if (!replyConsumer) {
    t.fail({
      summary: `When createApp() returned, your app was not consuming ${DIRECT}.`,
      expected: `await channel.consume('${DIRECT}', onReply, { noAck: true }) in createApp(), before it returns`,
      saw: connsA.length === 0 ? 'no connection opened yet' : `no basic.consume of ${DIRECT} among the ${connsA.flatMap((c) => c.sent).length} frames sent`,
      why: `With Direct Reply-to, the channel that publishes a request naming ${DIRECT} must already consume it: the broker refuses the publish otherwise (and closes the channel). Consuming lazily in the first request is also a race between requests.`,
      fix: `Consume ${DIRECT} once, in createApp(), before returning: every request then only publishes.`,
    });
  }
  if (!replyConsumer.noAck) {
    t.fail({
      summary: `Your app consumes ${DIRECT} with manual acks.`,
      expected: `{ noAck: true }`,
      saw: 'noAck false',
      why: 'Direct Reply-to replies are never stored in a queue: there is nothing to acknowledge. The broker insists on no-ack mode and refuses the consume otherwise.',
      fix: `channel.consume('${DIRECT}', onReply, { noAck: true })`,
    });
  }
  t.observe(1, `your app consumed ${DIRECT} with noAck before createApp() returned`);

  // 1. One request.
  t.provoke(2, 'GET /prices/apple: the pricing service answers at once');
  const timersBefore = pendingTimers();
  const first = await a.http.request('GET', price('apple'), { timeoutMs: 4000 });
  const req = pricing.requestsFor('apple')[0];
  if (!req) {
    t.fail({
      summary: `GET /prices/apple sent no request to the queue "${QUEUE}" (${showReply(first)}).`,
      expected: `a message {"sku":"apple"} in "${QUEUE}"`,
      saw: pricing.seen.length ? `${pricing.seen.length} other request(s): ${pricing.seen.map((s) => s.body).slice(0, 3).join(', ')}` : 'nothing reached the queue',
      why: 'The pricing service reads its requests from the queue "prices": the app asks it by publishing there, through the default exchange.',
      fix: `channel.sendToQueue('${QUEUE}', Buffer.from(JSON.stringify({ sku })), { correlationId, replyTo: '${DIRECT}', expiration: String(timeoutMs) })`,
    });
  }
  const { correlationId, replyTo, expiration } = req.properties;
  const problems = [
    req.sku !== 'apple' && `its body is ${JSON.stringify(req.body)}, not {"sku":"apple"}`,
    !String(replyTo ?? '').startsWith(DIRECT) && `its replyTo is ${replyTo === undefined ? '(none)' : `"${replyTo}"`}, not ${DIRECT}`,
    !correlationId && 'it carries no correlationId',
    String(expiration) !== '1500' && `its expiration is ${expiration === undefined ? '(none)' : JSON.stringify(expiration)}, not "1500" (the time-out)`,
    req.properties.contentType !== 'application/json' && `its contentType is ${JSON.stringify(req.properties.contentType ?? '(none)')}, not "application/json"`,
  ].filter(Boolean) as string[];
  if (problems.length) {
    const noExpiration = problems.length === 1 && problems[0]!.startsWith('its expiration');
    t.fail({
      summary: noExpiration
        ? `The request to "${QUEUE}" carries no expiration of the time-out: a request nobody picks up outlives the HTTP request it serves.`
        : `The request your app published for GET /prices/apple is not what the pricing service can answer: ${problems.join('; ')}.`,
      expected: `body {"sku":"apple"}, contentType "application/json", replyTo "${DIRECT}", a correlationId, expiration "1500"`,
      saw: problems.join('; '),
      why: noExpiration
        ? 'After its time-out nobody waits for the answer: the HTTP client already has its 504. Without an expiration, a pricing service that comes back after an outage computes answers to every request that piled up, for clients long gone.'
        : 'The service reads the sku from the JSON body and sends its answer to the replyTo, with the same correlationId, which is how your app finds the HTTP request the answer belongs to.',
      fix: `channel.sendToQueue('${QUEUE}', Buffer.from(JSON.stringify({ sku })), { correlationId: randomUUID(), replyTo: '${DIRECT}', expiration: String(timeoutMs) })`,
    });
  }
  const answer = pricing.replied.find((r) => r.correlationId === correlationId);
  if (first.status !== 200 || JSON.stringify(bodyOf(first)) !== answer?.body || !/^application\/json/.test(first.headers.get('content-type') ?? '')) {
    t.fail({
      summary: first.status === 200 ? `GET /prices/apple answered 200, but not with the pricing service's reply as JSON.` : `GET /prices/apple answered ${first.status || first.failure}, not 200 with the price.`,
      expected: `200, Content-Type application/json, with the reply's JSON: ${answer?.body ?? '{"sku":"apple",…}'}`,
      saw: `${showReply(first)}, Content-Type ${first.headers.get('content-type') ?? '(none)'}: ${first.text.slice(0, 200) || '(empty body)'}`,
      why: 'The pricing service answered within the time-out. The app passes its reply on as the HTTP answer.',
      fix: "res.type('application/json').send(msg.content) when the reply with the request's correlationId arrives.",
    });
  }
  t.observe(2, `GET /prices/apple → 200 with the service's reply; the request carried {"sku":"apple"}, replyTo ${DIRECT}, a correlationId and expiration "1500"`);

  // 2. Five at once, answered in reverse order.
  t.provoke(2, `${REVERSED.length} requests at once (${REVERSED.join(', ')}); the service answers them together, in reverse order`);
  const five = await Promise.all(REVERSED.map((sku) => a.http.request('GET', price(sku), { timeoutMs: 4000 })));
  const wrong = five.map((r, i) => ({ r, sku: REVERSED[i]! })).filter(({ r, sku }) => r.status !== 200 || bodyOf(r)?.sku !== sku);
  const ids = REVERSED.map((sku) => pricing.requestsFor(sku)[0]?.properties.correlationId);
  if (new Set(ids).size !== ids.length || ids.some((id) => !id)) {
    t.fail({
      summary: `Requests made at the same moment carried the same correlationId, so their answers could not be told apart.`,
      expected: 'a different correlationId for every request',
      saw: REVERSED.map((sku, i) => `${sku}: ${ids[i] ?? '(none)'}`).join(', '),
      why: 'Two requests with one id share one entry in the map of waiting requests: the second overwrites the first, which then never gets its answer, or gets the other one. A timestamp or a counter per process is not unique enough.',
      fix: 'A fresh id per request: randomUUID() (from node:crypto).',
    });
  }
  if (wrong.length) {
    t.fail({
      summary: `With ${REVERSED.length} requests waiting at once, ${wrong.length === 1 ? 'one got' : `${wrong.length} got`} an answer that was not theirs (or none).`,
      expected: REVERSED.map((sku) => `/prices/${sku} → 200 {"sku":"${sku}",…}`).join(', '),
      saw: five.map((r, i) => `/prices/${REVERSED[i]} → ${r.status || r.failure} ${r.status === 200 ? JSON.stringify(bodyOf(r)?.sku) : ''}`.trim()).join(', '),
      why: 'Replies come back in the order the service finishes, not the order you asked. Only the correlationId says which HTTP request a reply belongs to.',
      fix: 'Keep a Map from correlationId to the waiting request; on each reply, look up msg.properties.correlationId and answer that request only.',
    });
  }
  const replyTos = new Set(pricing.seen.map((s) => String(s.properties.replyTo)));
  const opened = t.connectionsOpened() - openedBefore;
  if (opened > 1 || replyTos.size > 1) {
    t.fail({
      summary: opened > 1 ? `Your app opened ${opened} connections for ${pricing.seen.length} requests: a connection per request.` : `The ${pricing.seen.length} requests came from ${replyTos.size} different channels: a channel per request.`,
      expected: 'one connection and one channel, opened in createApp(), for every request',
      saw: opened > 1 ? `${opened} connections opened` : `${replyTos.size} different reply addresses`,
      why: 'Opening a connection costs several round trips and a process on the broker; a channel, a round trip and a reply consumer. Per request, that is slow and grows with the traffic, and every one not closed is a leak. Direct Reply-to gives each channel its own reply address, so one channel carries every request.',
      fix: `Open the connection and the channel once in createApp(), consume ${DIRECT} there, and let each request only publish on that channel.`,
    });
  }
  t.observe(2, `each of the ${REVERSED.length} requests got its own answer; all requests so far came over 1 connection and 1 channel`);
  const timersLeft = pendingTimers() - timersBefore;
  if (timersLeft > 0) {
    t.fail({
      summary: `The ${REVERSED.length + 1} requests so far got their replies, but ${timersLeft} of their timers still run: a reply does not clear its request's timer.`,
      expected: 'clearTimeout(waiting.timer) when the reply arrives',
      saw: `${timersLeft} more timers pending than before the first request`,
      why: 'Each timer holds its request (and the response object) in memory until it fires, up to timeoutMs after the answer went out. Under load that is thousands of dead requests kept alive.',
      fix: 'In the reply consumer: pending.delete(id); clearTimeout(waiting.timer); waiting.resolve(msg.content);',
    });
  }
  t.observe(4, 'no timer of an answered request left running');

  // 3. pendingCount() counts the request that waits.
  const waiting = a.http.request('GET', price('silent-1'), { timeoutMs: 4000 });
  t.provoke(4, 'GET /prices/silent-1, which the service never answers: read pendingCount() while it waits, and after its time-out');
  await t.waitFor(() => pricing.requestsFor('silent-1').length > 0, 2000);
  const during = await t.call('pendingCount()', () => a.app.pendingCount());
  const silent = await waiting;
  expectTimeout(t, silent, 1500);
  const after = await t.call('pendingCount()', () => a.app.pendingCount());
  if (during !== 1 || after !== 0) {
    t.fail({
      summary:
        during !== 1
          ? `While one request waited for its reply, pendingCount() returned ${JSON.stringify(during)}, not 1.`
          : `After the only waiting request timed out, pendingCount() still returned ${JSON.stringify(after)}.`,
      expected: 'pendingCount() → 1 while /prices/silent-1 waits, 0 after its 504',
      saw: `${JSON.stringify(during)} while it waited, ${JSON.stringify(after)} after (${showReply(silent)})`,
      why: 'pendingCount() is the size of the map of waiting requests: the one number that tells whether requests leak. The time-out must take its request out of the map.',
      fix: 'pendingCount: () => pending.size, and pending.delete(correlationId) in the timer, before the 504.',
    });
  }
  t.observe(4, 'pendingCount() was 1 while the request waited, 0 after its 504');

  // 6. close() with a request waiting.
  const beforeClose = a.http.request('GET', price('silent-2'), { timeoutMs: 4000 });
  await t.waitFor(() => pricing.requestsFor('silent-2').length > 0, 2000);
  t.provoke(6, 'called close() while GET /prices/silent-2 waits for a reply that will never come');
  a.closed = true;
  await t.expectClosedOnReturn('close()', connsA, () => a.app.close());
  const closing = await beforeClose;
  if (closing.status !== 503 || !hasError(closing)) {
    t.fail({
      summary:
        closing.status === 503
          ? 'close() answered the waiting request 503, but without a JSON { error } that says why.'
          : `close() left GET /prices/silent-2 without its answer: it ended ${closing.status ? `with ${closing.status}` : `with ${closing.failure}`}${closing.status === 504 ? ', its time-out, long after close()' : ''}.`,
      expected: 'the waiting request answered 503 by close(), with a JSON { error }',
      saw: showReply(closing),
      why: 'After close() no reply can arrive. A request still waiting would hang until its time-out, and a server that is shutting down waits for it, or cuts it without an answer.',
      fix: 'In close(): for each waiting request, clearTimeout(waiting.timer) and reject it with the 503 error; then pending.clear() and await connection.close().',
    });
  }
  await t.expectConnectionsClosed('close()');
  t.observe(6, `close() answered the waiting request (${showReply(closing)}) and closed the connection`);
  await closeApp(t, a);

  // ---- App B: time-out 150 ms ---------------------------------------------------------------
  const b = await start(t, 150);
  t.provoke(3, 'GET /prices/slow: the service answers it only after the next request has come (the app gives up at 150 ms)');
  const slow = await b.http.request('GET', price('slow'), { timeoutMs: 3000 });
  expectTimeout(t, slow, 150);
  if (slow.ms < 100) {
    t.fail({
      summary: `GET /prices/slow answered 504 after ${slow.ms} ms: before its 150 ms time-out.`,
      expected: '504 after about 150 ms',
      saw: showReply(slow),
      fix: 'Start the timer with timeoutMs, the option createApp() got.',
    });
  }
  t.observe(3, `GET /prices/slow → 504 after ${slow.ms} ms, with a JSON { error }`);
  t.provoke(3, 'GET /prices/after-slow: when it reaches the service, the late reply to "slow" goes out, then a reply without a correlationId and one with an unknown id, then its own');
  const next = await b.http.request('GET', price('after-slow'), { timeoutMs: 3000 });
  if (next.status !== 200 || bodyOf(next)?.sku !== 'after-slow') {
    t.fail({
      summary:
        next.status === 200
          ? `A late reply answered another request: GET /prices/after-slow got ${next.text.slice(0, 80)}.`
          : `After a late reply arrived for a request that had timed out, GET /prices/after-slow ${next.status ? `answered ${next.status}` : `got no answer (${next.failure})`}.`,
      expected: '200 {"sku":"after-slow",…}; the late reply to "slow" and the stray replies dropped',
      saw: `${showReply(next)}: ${next.text.slice(0, 120)}`,
      why: 'A reply can arrive after its request gave up, or carry an id (or none) the app does not know. Its correlationId then matches nothing, and the app must drop it. Handing it to another request gives that client a wrong price; throwing in the consumer callback makes amqplib close the connection, and every later request fails.',
      fix: 'In the reply consumer: const waiting = pending.get(msg.properties.correlationId); if (!waiting) return; (no "!", no throw).',
    });
  }
  t.observe(3, 'GET /prices/after-slow → 200 with its own reply; the late and stray replies were dropped');

  // 4. 1,000 time-outs.
  const timersBeforeMany = pendingTimers();
  t.provoke(4, `${MANY} requests that the service never answers, 50 at a time (autocannon)`);
  let peak = 0;
  const load = startLoad({
    url: b.http.url,
    method: 'GET',
    path: (n) => price(`silent-${n}`),
    amount: MANY,
    connections: 50,
    timeoutSec: 20,
    onReply: (r) => {
      if (r.n % 100 === 50) peak = Math.max(peak, b.app.pendingCount());
    },
  });
  const outcome = await t.clock.during('waiting', () => load.done);
  const silentIds = pricing.seen.filter((r) => r.sku?.startsWith('silent-') && r.sku !== 'silent-1' && r.sku !== 'silent-2').map((r) => String(r.properties.correlationId));
  const shared = silentIds.length - new Set(silentIds).size;
  if (shared > 0) {
    t.fail({
      summary: `Among ${silentIds.length} requests made 100 at a time, ${shared} carried the same correlationId as another.`,
      expected: 'a different correlationId for every request',
      saw: `${new Set(silentIds).size} different ids for ${silentIds.length} requests`,
      why: 'Two requests with one id share one entry in the map of waiting requests: the second overwrites the first, which then gets the other\'s answer, or none. A timestamp is the same for every request of the same millisecond, and under load there are many.',
      fix: 'A fresh id per request: randomUUID() (from node:crypto).',
    });
  }
  const statuses = new Map<number, number>();
  for (const r of outcome.replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  const timedOut = statuses.get(504) ?? 0;
  if (timedOut !== MANY) {
    t.fail({
      summary: `Of ${MANY} requests the service never answered, ${timedOut} got a 504.`,
      expected: `${MANY} × 504`,
      saw: `${[...statuses].map(([s, n]) => `${n} × ${s}`).join(', ') || 'no answers'}${outcome.timeouts ? `, ${outcome.timeouts} without an answer within 20 s` : ''}${outcome.errors - outcome.timeouts > 0 ? `, ${outcome.errors - outcome.timeouts} connection errors` : ''}`,
      why: 'Each of them waited for a reply that never came: each must end in its own 504 after the time-out, however many wait at once.',
      fix: 'A timer per request (setTimeout in ask()), which deletes the entry and answers 504.',
    });
  }
  const left = await t.call('pendingCount()', () => b.app.pendingCount());
  const timersLeftMany = pendingTimers() - timersBeforeMany;
  if (left !== 0 || peak === 0) {
    t.fail({
      summary: left !== 0 ? `After ${MANY} requests timed out, pendingCount() says ${JSON.stringify(left)} requests are still waiting: the map of waiting requests leaks.` : `While ${MANY} requests waited for replies, pendingCount() always returned 0.`,
      expected: 'pendingCount() above 0 during the load, 0 once every request had its 504',
      saw: `${JSON.stringify(peak)} at its highest during the load, ${JSON.stringify(left)} after`,
      why: 'A request whose reply never comes leaves the map only through its time-out. Without pending.delete() there, every such request stays in memory as long as the app runs: a pricing service that is down for an hour makes the app grow until it crashes.',
      fix: 'In the timer: pending.delete(correlationId), then reject with the 504.',
    });
  }
  if (timersLeftMany > 0) {
    t.fail({
      summary: `After ${MANY} requests timed out, ${timersLeftMany} timers still run.`,
      expected: 'no timer left once every request had its answer',
      saw: `${timersLeftMany} more timers pending than before the load`,
      fix: 'One timer per request, cleared when its reply comes and done when it fires.',
    });
  }
  t.observe(4, `${MANY} × 504 in ${(outcome.durationMs / 1000).toFixed(1)} s; pendingCount() was ${peak} at a peak and 0 after; no timer left`);

  // 2. A request nobody picks up expires.
  await pricing.pause();
  t.provoke(2, 'stopped the pricing service, then GET /prices/nobody-home');
  const unread = await b.http.request('GET', price('nobody-home'), { timeoutMs: 3000 });
  const expired = await t.waitFor(async () => (await t.messageCount(QUEUE)) === 0, 2000, 50);
  await pricing.resume();
  if (unread.status !== 504 || !expired) {
    t.fail({
      summary: unread.status !== 504 ? `With the pricing service stopped, GET /prices/nobody-home answered ${unread.status || unread.failure}, not 504.` : `The request nobody picked up was still in "${QUEUE}" 2 s after its 504: it has no expiration.`,
      expected: '504 after 150 ms, and the request gone from the queue soon after (expiration "150")',
      saw: `${showReply(unread)}; ${expired ? 'the queue emptied' : 'still queued'}`,
      why: 'Once the client has its 504, nobody will read the answer. With an expiration of the time-out, the broker drops the request instead of keeping it for a service that comes back much later and answers into the void.',
      fix: 'expiration: String(timeoutMs) in the publish options.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(2, 'the request nobody picked up got its 504 and expired from the queue');
  await closeApp(t, b);

  // ---- App C: its connection is lost ----------------------------------------------------------
  const c = await start(t, 1500);
  const ok = await c.http.request('GET', price('cherry'), { timeoutMs: 4000 });
  if (ok.status !== 200) t.fail({ summary: `GET /prices/cherry on a fresh app answered ${ok.status || ok.failure}, not 200.`, saw: showReply(ok) });
  const cut = t.cutConnections('the network between your app and the broker fails');
  t.provoke([1, 5], `cut ${cut} connection(s) of a fresh app: amqplib emits 'error' on it`);
  await t.pause(50); // an 'error' event nobody listens to ends the process now
  t.observe(1, "your app survived the connection error (an 'error' listener heard it)");
  const lost = await c.http.request('GET', price('cherry'), { timeoutMs: 4000 });
  if (lost.status === 503 && (!lost.headers.get('retry-after') || !hasError(lost))) {
    t.fail({
      summary: `With its connection lost, GET /prices/cherry answered 503 at once, but without ${lost.headers.get('retry-after') ? 'a JSON { error } that says why' : 'a Retry-After header'}.`,
      expected: '503 with Retry-After (seconds) and a JSON { error }',
      saw: `${showReply(lost)}, Retry-After ${lost.headers.get('retry-after') ?? '(none)'}: ${lost.text.slice(0, 120) || '(empty body)'}`,
      why: 'Retry-After tells the client (and any proxy) when it is worth asking again. Without it, clients retry at once, all together, and hit an app that cannot serve them yet.',
      fix: "res.set('Retry-After', '5') before res.status(503).",
    });
  }
  if (lost.status !== 503 || lost.ms > 1000) {
    t.fail({
      summary:
        lost.status === 503
          ? `With its connection lost, GET /prices/cherry waited ${lost.ms} ms before its 503.`
          : `With its connection lost, GET /prices/cherry answered ${lost.status ? lost.status : `nothing (${lost.failure})`}, not 503 at once.`,
      expected: '503 at once: the closed channel refuses to publish',
      saw: `${showReply(lost)}: ${lost.text.slice(0, 120)}`,
      why:
        lost.status === 500
          ? "channel.sendToQueue() throws once the connection is gone. Express 5 hands the error of an async route to its error handler, which answers 500: the app looks broken, where it is the broker it cannot reach. 503 (with Retry-After) says: try again later."
          : 'Once the connection is gone, sendToQueue() throws ("Channel closed"). Caught and turned into a 503, the client knows at once; left to the time-out, it waits for nothing.',
      fix: 'Wrap sendToQueue() in try/catch: on an error, clear the timer, delete the entry and reject with new NoReply(503, …).',
    });
  }
  t.observe(5, `with the connection lost, GET /prices/cherry → 503 with Retry-After in ${lost.ms} ms`);
  c.closed = true; // its connection is gone: nothing left to close
  await closeApp(t, c);
}

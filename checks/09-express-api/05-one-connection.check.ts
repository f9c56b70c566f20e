// Check 9.5: the learner's jobs API under load. The checker caps the queue "jobs" at 100
// messages (a policy: max-length 100, overflow reject-publish), so the broker refuses part of
// the load, then autocannon sends 200 POST /jobs, 50 at a time. Every 202 must match a job in
// the queue and every refused job a 503; the frames the app sent say which connection published
// and which consumed, and on how many channels; the management API lists the app's connections
// and their channels. Then the checker publishes results to "job-results" and reads the status
// resource, calls close(), and cuts the connections of a second app.
import { randomUUID } from 'node:crypto';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { connectionMark, connectionsSince, consumes, unsettled, type AmqpConnection } from '../../runner/check/frames.js';
import { deleteQueueUnderConsumer } from '../06-patterns/support.js';
import { showReply, startApp, stopAllApps, type InProcessApp } from '../../runner/check/http-app.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type { ConnectionInfo } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/09-express-api/05-one-connection.js';
import { startLoad, type LoadReply } from './load.js';

type T = CheckContext<typeof Exercise>;

const JOBS = 'jobs';
const RESULTS = 'job-results';
const CAP = 100;
const REQUESTS = 200;
const AT_ONCE = 50;
const MAX_CHANNELS = 4;

interface Started {
  http: InProcessApp;
  app: Exercise.JobsApp;
  conns: () => AmqpConnection[];
  opened: () => number;
}

async function start(t: T, label: string): Promise<Started> {
  const mark = connectionMark();
  const before = t.connectionsOpened();
  let made: Exercise.JobsApp | undefined;
  const http = await startApp(t, label, async () => {
    made = await t.target.createApp({ amqpUrl: t.url, queue: JOBS, resultsQueue: RESULTS });
    if (typeof made?.app !== 'function' || typeof made?.close !== 'function') {
      t.fail({
        summary: `${label} returned ${made === undefined ? 'nothing' : `an object with keys ${Object.keys(made).join(', ') || '(none)'}`}, not { app, close }.`,
        expected: '{ app, close }: the Express app, and a function that closes its connections',
        saw: made === undefined ? 'undefined' : `keys ${Object.keys(made).join(', ')}`,
        fix: 'return { app, close };',
      });
    }
    return { app: made!.app };
  });
  return { http, app: made!, conns: () => connectionsSince(mark), opened: () => t.connectionsOpened() - before };
}

const publishesOf = (c: AmqpConnection) => c.sent.filter((m) => m.name === 'basic.publish');
const consumesOf = (c: AmqpConnection) => c.sent.filter((m) => m.name === 'basic.consume');

/**
 * The app's connections (by their local ports) as the management API lists them, once it lists
 * them all with their channels: a new connection's channel count comes with a statistics tick.
 */
async function listedConnections(t: T, ports: number[]): Promise<ConnectionInfo[]> {
  const mine = async () => (await t.mgmt.connections(t.vhost)).filter((c) => ports.includes(c.peer_port));
  const complete = async () => {
    const listed = await mine();
    return listed.length >= ports.length && listed.every((c) => (c.channels ?? 0) > 0) ? listed : undefined;
  };
  return (await t.waitFor(complete, 8000, 200)) ?? (await mine());
}

export default defineCheck<typeof Exercise>(async (t) => {
  try {
    await run(t);
  } finally {
    await stopAllApps({ graceMs: 200, closeTimeoutMs: 2000 });
  }
});

async function run(t: T) {
  await t.mgmt.setPolicy(t.vhost, 'jobs-cap', { pattern: `^${JOBS}$`, definition: { 'max-length': CAP, overflow: 'reject-publish' }, 'apply-to': 'queues' });
  t.log(`set a policy on "${JOBS}": max-length ${CAP}, overflow reject-publish (the broker refuses what does not fit)`);
  const a = await start(t, `createApp({ amqpUrl, queue: "${JOBS}", resultsQueue: "${RESULTS}" })`);
  await expectQuorumQueue(t, JOBS);
  // The management API shows a new connection's channels only after a statistics tick (up to 5 s): start waiting now.
  const startPorts = a.conns().map((c) => c.socket.localPort ?? 0);
  const firstListing = listedConnections(t, startPorts);

  // ---- the load ---------------------------------------------------------------------------
  t.provoke([1, 2, 3], `${REQUESTS} POST /jobs {"n": …}, ${AT_ONCE} at a time (autocannon); the queue takes ${CAP}, the broker refuses the rest`);
  const load = startLoad({ url: a.http.url, method: 'POST', path: () => '/jobs', json: (n) => ({ n }), amount: REQUESTS, connections: AT_ONCE, timeoutSec: 25 });
  // A connection or a channel per request is plain after a few requests, and slow to watch to the end: stop the load then.
  const churn = setInterval(() => {
    const channelCloses = a.conns().flatMap((c) => c.sent).filter((m) => m.name === 'channel.close').length;
    if (a.opened() > 12 || channelCloses > 10) load.stop();
  }, 50);
  const outcome = await t.clock.during('waiting', () => load.done).finally(() => clearInterval(churn));

  // Connections and channels, from the frames the app sent.
  const conns = a.conns();
  const publishers = conns.filter((c) => publishesOf(c).length > 0);
  const consumers = conns.filter((c) => consumesOf(c).some((m) => m.queue === RESULTS));
  if (a.opened() > 2) {
    t.fail({
      summary: `Your app opened ${a.opened()} connections for ${REQUESTS} requests${a.opened() >= 10 ? ': a connection per request' : ''}.`,
      expected: 'two connections, opened once in createApp(): one to publish, one to consume',
      saw: `${a.opened()} connections opened, ${publishers.length} of them published`,
      why: "A connection is a TCP handshake, an AMQP handshake and a process on the broker: several round trips, before the job is even sent. Per request, the latency doubles, the broker spends its time opening and closing, and a burst of traffic becomes a burst of connections the broker may refuse. Connections are meant to live as long as the process.",
      fix: 'Open the connections in createApp(), and let every request use the same confirm channel.',
      link: t.ui('connections'),
    });
  }
  const both = publishers.filter((c) => consumers.includes(c) || consumesOf(c).length > 0);
  if (both.length || publishers.length !== 1 || consumers.length !== 1) {
    t.fail({
      summary: both.length
        ? 'Your app publishes and consumes on the same connection.'
        : consumers.length === 0
          ? `Your app does not consume "${RESULTS}" on a connection of its own.`
          : `Your app published on ${publishers.length} connections.`,
      expected: 'one connection that only publishes, and another that only consumes',
      saw: conns.map((c, i) => `connection ${i + 1}: ${publishesOf(c).length} publishes, ${consumesOf(c).map((m) => `consumes "${m.queue}"`).join(', ') || 'no consumer'}`).join('; ') || 'no connection',
      why: 'When the broker runs short of memory or disk, or a queue cannot keep up, it slows down (or blocks) the connections that publish. A consumer on the same connection is slowed with it: its acks wait behind the publishes, and the queue it should empty fills up. Two connections keep the two apart.',
      fix: "Open two connections in createApp(): amqp.connect(url) twice. Publish on the first (a confirm channel), consume on the second.",
      link: t.ui('connections'),
    });
  }
  const publisher = publishers[0]!;
  const channelsUsed = new Set(publishesOf(publisher).map((m) => m.channel));
  const closes = publisher.sent.filter((m) => m.name === 'channel.close').length;
  if (channelsUsed.size > MAX_CHANNELS || closes > 0) {
    t.fail({
      summary: closes > 0 ? `Your app closed ${closes} channels during the load: a channel per request.` : `Your app published on ${channelsUsed.size} different channels: a channel per request.`,
      expected: `the same few channels (at most ${MAX_CHANNELS}) for every request, opened once`,
      saw: `publishes on channel${channelsUsed.size === 1 ? '' : 's'} ${[...channelsUsed].slice(0, 10).join(', ')}${channelsUsed.size > 10 ? ', …' : ''}; ${closes} channel.close`,
      why: 'Opening a channel is a round trip to the broker (two for a confirm channel), and each open channel costs memory on both sides. Per request, that is latency on every request and churn the broker has to track. One confirm channel carries many publishes in flight at once: each gets its own confirm.',
      fix: 'const channel = await publisher.createConfirmChannel() once in createApp(); every request publishes on it.',
      link: t.ui('channels'),
    });
  }
  t.observe([1, 3], `frames: ${a.opened()} connections opened; one published ${publishesOf(publisher).length} jobs on ${channelsUsed.size} channel${channelsUsed.size === 1 ? '' : 's'}, the other consumed "${RESULTS}"`);

  const by = (status: number) => outcome.replies.filter((r) => r.status === status);
  const accepted = by(202);
  const refused = by(503);
  const other = outcome.replies.filter((r) => r.status !== 202 && r.status !== 503);
  const tally = () =>
    `${accepted.length} × 202, ${refused.length} × 503${other.length ? `, ${other.length} other (${[...new Set(other.map((r) => r.status))].join(', ')})` : ''}${outcome.errors ? `, ${outcome.errors} without an answer` : ''}`;
  if (other.length || outcome.errors || outcome.replies.length !== REQUESTS) {
    const sample = other[0];
    t.fail({
      summary: `Of ${REQUESTS} POST /jobs, ${REQUESTS - accepted.length - refused.length} got neither a 202 nor a 503.`,
      expected: `${REQUESTS} answers, each 202 (the job is safe) or 503 (the broker refused it)`,
      saw: `${tally()}${sample ? `; e.g. ${sample.status}: ${sample.body.slice(0, 120)}` : ''}`,
      why: 'Under load the broker refuses what the queue cannot take, and the app must say so: 503 with Retry-After, so the client tries later. A 500, or no answer, leaves the client guessing whether its job exists.',
      fix: 'Wait for the confirm of each publish; on a nack, answer res.set("Retry-After", "5").status(503).json({ error }).',
    });
  }

  // What the queue holds, job by job.
  const messages = await t.takeMessages(JOBS, REQUESTS * 2);
  const jobs = messages.map((m) => {
    let body: { n?: unknown } | undefined;
    try {
      body = JSON.parse(m.content.toString()) as typeof body;
    } catch {
      body = undefined;
    }
    const id = m.properties.messageId as unknown;
    return { m, body, id: typeof id === 'string' ? id : undefined };
  });
  const idOf = (r: LoadReply) => {
    try {
      const id = (JSON.parse(r.body) as { id?: unknown }).id;
      return typeof id === 'string' ? id : undefined;
    } catch {
      return undefined;
    }
  };
  const statusOf202 = (r: LoadReply) => {
    try {
      return (JSON.parse(r.body) as { status?: unknown }).status;
    } catch {
      return undefined;
    }
  };
  const badAnswer = accepted.find((r) => !idOf(r) || r.headers.location !== `/jobs/${idOf(r)}` || statusOf202(r) !== 'queued');
  if (badAnswer) {
    t.fail({
      summary: `A 202 for POST /jobs came without ${!idOf(badAnswer) ? 'the job id in its JSON body' : statusOf202(badAnswer) !== 'queued' ? 'the status "queued" in its JSON body' : 'a Location header pointing at its status'}.`,
      expected: '202, body {"id": "…", "status": "queued"}, header Location: /jobs/<id>',
      saw: `body ${badAnswer.body.slice(0, 120) || '(empty)'}, Location ${badAnswer.headers.location ?? '(none)'}`,
      why: '202 Accepted means: the work will be done later. The client needs to know where to ask how it went: the Location header names the status resource, and the id is how the job is found again.',
      fix: "res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' })",
    });
  }
  const inQueue = new Set(jobs.map((j) => j.id));
  const lost = accepted.filter((r) => !inQueue.has(idOf(r)));
  if (lost.length) {
    t.fail({
      summary: `${lost.length} of the ${accepted.length} jobs answered 202 are not in the queue: the broker refused them, and your app answered 202 anyway.`,
      expected: `a 202 only for a job the broker confirmed: ${jobs.length} jobs in "${JOBS}", so at most ${jobs.length} × 202, and a 503 for the others`,
      saw: `${tally()}; ${jobs.length} jobs in the queue`,
      why: "A 202 is a promise: the job will be done. The broker refused these (the queue was full), so they are gone, and their clients will never retry: they were told all was well. Only the broker's confirm (an ack, not a nack) says a job is safe.",
      fix: 'Publish on a confirm channel (connection.createConfirmChannel()) and answer 202 in the callback of sendToQueue(queue, body, options, (err) => …) when err is null; 503 when it is set.',
      link: t.ui('queues', JOBS),
    });
  }
  if (refused.length === 0) {
    t.fail({
      summary: `The queue was capped at ${CAP} jobs, yet all ${REQUESTS} requests were answered 202.`,
      expected: 'a 503 for each job the broker refused',
      saw: `${tally()}; ${jobs.length} in the queue`,
      fix: 'Answer 202 only after the confirm; a nack means 503.',
    });
  }
  const errorOf = (r: LoadReply) => {
    try {
      return String((JSON.parse(r.body) as { error?: unknown }).error ?? '').trim();
    } catch {
      return '';
    }
  };
  const noRetry = refused.find((r) => !r.headers['retry-after'] || !errorOf(r));
  if (noRetry) {
    t.fail({
      summary: `A 503 for a job the broker refused came without ${noRetry.headers['retry-after'] ? 'a JSON { error } that says why' : 'a Retry-After header'}.`,
      expected: '503 with Retry-After: <seconds> and a JSON { error }',
      saw: `503, headers: ${Object.keys(noRetry.headers).join(', ')}; body ${noRetry.body.slice(0, 120) || '(empty)'}`,
      why: 'Retry-After tells the client when it is worth trying again. Without it, every refused client retries at once, and the queue that was full is hit again, all together.',
      fix: "res.set('Retry-After', '5').status(503).json({ error })",
    });
  }
  const extra = jobs.filter((j) => !accepted.some((r) => idOf(r) === j.id));
  if (extra.length) {
    t.fail({
      summary: `${extra.length} job(s) in the queue have no 202 with their id: their clients were told the job was not accepted (or got another id).`,
      expected: 'each job in the queue carries, as its messageId, the id its 202 gave',
      saw: `e.g. messageId ${JSON.stringify(extra[0]!.m.properties.messageId)}, body ${extra[0]!.m.content.toString().slice(0, 120)}`,
      why: 'A client told 503 retries, and the job then runs twice; a job whose id was never given out cannot be followed.',
      fix: 'Make the id first, publish req.body with { messageId: id }, and answer 202 with that same id once the broker confirmed it.',
    });
  }
  const transient = jobs.find((j) => j.m.properties.deliveryMode !== 2);
  const badBody = jobs.find((j) => typeof j.body?.n !== 'number' || Object.keys(j.body).length !== 1 || j.m.properties.contentType !== 'application/json');
  if (transient || badBody) {
    const j = (transient ?? badBody)!;
    t.fail({
      summary: transient ? 'The jobs in the queue are not persistent.' : `A job in the queue is not the request's JSON body: ${j.m.content.toString().slice(0, 120)} (${j.m.properties.contentType ?? 'no content type'}).`,
      expected: 'persistent: true, messageId: <id>, contentType application/json, the request body as it came: {"n": …}',
      saw: `deliveryMode ${j.m.properties.deliveryMode ?? '(none)'}, messageId ${JSON.stringify(j.m.properties.messageId)}, body ${j.m.content.toString().slice(0, 120)}`,
      why: transient
        ? 'A quorum queue keeps every message on disk anyway, but the persistent flag is what a classic queue, and any queue a policy or a move turns it into, goes by. A job you answered 202 for must survive a restart.'
        : 'The worker that takes the job needs what the client sent, and the id its status is kept under (the messageId, which also lets a consumer spot a job delivered twice).',
      fix: "channel.sendToQueue(queue, Buffer.from(JSON.stringify(req.body)), { persistent: true, messageId: id, contentType: 'application/json' }, callback)",
    });
  }
  t.observe(2, `${tally()}; the ${jobs.length} jobs in "${JOBS}" are exactly those answered 202 (persistent JSON, messageId = id, Location /jobs/<id>)`);

  // The same, as the broker lists it.
  const ports = conns.filter((c) => !c.closed).map((c) => c.socket.localPort ?? 0);
  await firstListing;
  const listed = await listedConnections(t, ports);
  const listedPublisher = listed.find((c) => c.peer_port === publisher.socket.localPort);
  if (listed.length !== 2 || (listedPublisher?.channels ?? 0) > MAX_CHANNELS) {
    t.fail({
      summary: `The broker lists ${listed.length} connection(s) of your app${listedPublisher ? `, the publishing one with ${listedPublisher.channels} channels` : ''}.`,
      expected: `2 connections; at most ${MAX_CHANNELS} channels on the publishing one`,
      saw: listed.map((c) => `"${c.name}": ${c.channels ?? '?'} channel(s)`).join(', ') || 'none',
      why: 'What the broker holds for your app after the load is what it holds for it all day: connections and channels that stay, not ones per request.',
      fix: 'Two connections and one confirm channel, opened in createApp().',
      link: t.ui('connections'),
    });
  }
  t.observe(1, `the management API lists 2 connections of your app in this vhost: ${listed.map((c) => `${c.channels} channel(s)`).join(' and ')}`);

  // ---- the status resource ------------------------------------------------------------------
  await expectQuorumQueue(t, RESULTS);
  const ids = accepted.map(idOf).filter((id): id is string => !!id);
  const [done1, done2, failed, queued] = ids;
  const consumer = consumers[0]!;
  const stranger = randomUUID(); // an id this app never gave out
  t.provoke(4, `published 4 results to "${RESULTS}": "done" for two accepted jobs, "failed" for a third, and one for an id your app never gave out`);
  await t.publish(RESULTS, [
    { id: done1, status: 'done' },
    { id: done2, status: 'done' },
    { id: failed, status: 'failed' },
    { id: stranger, status: 'done' },
  ]);
  const statusOf = async (id: string) => t.clock.during('learner', () => a.http.request('GET', `/jobs/${id}`));
  const seen = await t.waitFor(async () => {
    const r = await statusOf(failed!);
    return (r.json as { status?: unknown } | undefined)?.status === 'failed' ? r : undefined;
  }, 3000, 100);
  const [d1, q1, unknown] = [await statusOf(done1!), await statusOf(queued!), await statusOf(stranger)];
  const st = (r: { json: unknown }) => (r.json as { id?: unknown; status?: unknown; error?: unknown } | undefined) ?? {};
  if (!seen || st(d1).status !== 'done' || st(d1).id !== done1 || st(q1).status !== 'queued' || q1.status !== 200 || unknown.status !== 404 || !String(st(unknown).error ?? '').trim()) {
    t.fail({
      summary: !seen
        ? `Your app did not take the results from "${RESULTS}" into account: GET /jobs/<id> never said "failed" for the failed job.`
        : unknown.status !== 404
          ? `GET /jobs/<id> for an id your app never gave out answered ${unknown.status || unknown.failure}, not 404: a result for an unknown id made a job of it.`
          : 'GET /jobs/:id does not answer as the contract says.',
      expected: `GET /jobs/${done1} → 200 {"id": …, "status": "done"}; a job without a result → "queued"; an id never given out (even one a result named) → 404 with a JSON { error }`,
      saw: [d1, q1, unknown].map((r) => `${showReply(r)} ${r.text.slice(0, 80)}`).join('; '),
      why: 'The status resource is how a client that got a 202 learns how its job went: it polls the Location it was given. It reads what the workers reported on "job-results".',
      fix: `Consume "${RESULTS}" on the consuming connection; for each result, statuses.set(id, status) when the id is one of yours, then ack. GET /jobs/:id answers statuses.get(id), or 404.`,
    });
  }
  const settled = unsettled(consumer, 4);
  const results = consumes([consumer]).find((c) => c.consume.queue === RESULTS)!;
  if (results.consume.noAck || !results.prefetch || settled.count > 0 || (await t.messageCount(RESULTS)) > 0) {
    t.fail({
      summary: results.consume.noAck
        ? `Your app consumes "${RESULTS}" with { noAck: true }.`
        : !results.prefetch
          ? `Your app consumes "${RESULTS}" without a prefetch limit.`
          : `Your app left ${settled.count} of the 4 results unacknowledged.`,
      expected: 'manual acks with a prefetch limit, and an ack for every result, also one for an unknown id',
      saw: results.consume.noAck ? 'noAck true' : `prefetch ${results.prefetch ?? 'none'}, ${settled.settled} of 4 acked`,
      why: results.consume.noAck
        ? 'In no-ack mode the broker forgets a result the moment it sends it: if the app dies before recording it, the result is lost.'
        : !results.prefetch
          ? 'Without a prefetch limit the broker sends the whole queue at once: after an outage, thousands of results land in the app\'s memory together.'
          : 'An unacknowledged result stays with your app until its connection closes, then comes back: the prefetch window fills up, and results stop coming.',
      fix: `await channel.prefetch(50); channel.consume('${RESULTS}', onResult, { noAck: false }), and channel.ack(msg) for every message, after recording it (or deciding to drop it).`,
      link: t.ui('queues', RESULTS),
    });
  }
  t.observe(4, `GET /jobs/<id> → "done", "failed", "queued" as the results said, 404 for an unknown id; all 4 results acked, with a prefetch of ${results.prefetch}`);
  const openBefore = t.connectionsOpen();
  await deleteQueueUnderConsumer(t, RESULTS, 4);
  if (await t.waitFor(() => t.connectionsOpen() < openBefore, 500, 20)) {
    t.fail({
      summary: `When the broker cancelled your consumer (the checker deleted the queue "${RESULTS}"), your connection closed: the consumer callback threw on the null message.`,
      expected: 'the callback returns on null, and the connection stays open',
      saw: `${openBefore} connection(s) open before the deletion, ${t.connectionsOpen()} a moment after`,
      why: 'When its queue is deleted (by an operator, a policy, a failover), the broker cancels the consumer, and amqplib calls your callback one last time with null. Reading msg.content, or acking null, throws inside amqplib, which then closes the whole connection.',
      fix: 'Start the consumer callback with: if (msg === null) return;',
    });
  }
  const afterCancel = await statusOf(done2!);
  if (afterCancel.status !== 200) t.fail({ summary: `After the broker cancelled your consumer, GET /jobs/<id> answered ${afterCancel.status || afterCancel.failure}.`, saw: showReply(afterCancel), fix: 'if (msg === null) return; at the top of the consumer callback.' });

  // ---- close() ---------------------------------------------------------------------------------
  t.provoke(5, 'called close()');
  await t.expectClosedOnReturn('close()', conns, () => a.app.close(), { closer: 'publisher.close() and consumer.close()' });
  await t.expectConnectionsClosed('close()');
  t.observe(5, 'close() closed both connections');

  // ---- a second app loses its connections -------------------------------------------------------
  const b = await start(t, 'createApp(…) for a second app');
  const cut = t.cutConnections("the network fails under the second app");
  t.provoke(1, `cut the second app's ${cut} connection(s): amqplib emits 'error' on each`);
  await t.pause(50); // an 'error' event nobody listens to ends the process now
  t.observe(1, "your app survived the connection errors (an 'error' listener on each connection)");
  await b.http.stop({ graceMs: 200 });
}

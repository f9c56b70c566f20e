// Check 9.1: the learner's Express app, served by the checker on a free port and talked to over
// real HTTP. Bodies that are not JSON objects (nothing may be published); twenty jobs at once
// (202, Location, Retry-After, one persistent message each with the job's id, one connection
// for all of them); the status resource; the broker refusing messages (a max-length policy with
// reject-publish: 503 with Retry-After, never 202) and taking them again; the connection blocked
// and unblocked; close(). Then a second app whose connection the checker cuts: 503, no crash.
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type { GetMessage } from 'amqplib';
import {
  acceptMessagesAgain,
  blockConnections,
  expectErrorAnswers,
  header,
  idFromLocation,
  refuseNewMessages,
  recordAnswers,
  retryAfterSeconds,
  showFull,
  startApp,
  statusHint,
  stopAllApps,
  unblockConnections,
  type AppModule,
  type HttpReply,
  type InProcessApp,
} from './support.js';

const QUEUE = 'jobs';
const JOBS = 20;
const POST = (json: unknown) => ({ json, timeoutMs: 6000 });
const job = (n: number) => ({ task: 'resize', image: `photo-${n}.jpg`, width: 200 + n });
type Ctx = CheckContext<AppModule>;

export default defineCheck<AppModule>(async (t) => {
  try {
    t.provoke(1, `called createApp() in a vhost where "${QUEUE}" does not exist yet`);
    const app = await serve(t, '');
    await expectQuorumQueue(t, QUEUE);
    t.observe(1, `read "${QUEUE}" from the broker: a durable quorum queue`);

    await badBodies(t, app);
    const accepted = await twentyJobs(t, app);
    await statusResource(t, app, accepted);
    await refused(t, app);
    await blocked(t, app);

    expectErrorAnswers(t, 7, answers);

    t.provoke(8, 'stopped the app: the server first, then your close()');
    const report = await app.stop();
    if (report.close !== 'ok') {
      t.fail({
        summary: `close() ${report.close === 'hung' ? 'did not finish within 5 s' : `threw: ${report.error}`}.`,
        expected: 'close() resolves once the channel and the connection are closed',
        saw: report.close === 'hung' ? 'a promise that never settled' : `an error: ${report.error}`,
        why: 'Whoever stops the service (a deploy, a SIGTERM) waits for close(): a close() that hangs or throws keeps the process from exiting cleanly.',
        fix: 'In close(): await channel.close(), then await connection.close().',
      });
    }
    await t.expectConnectionsClosed('close()');
    t.observe(8, 'close() resolved and your connection to the broker is closed');

    await connectionLost(t);
  } finally {
    await stopAllApps();
  }
});

/** Every answer the app gave, for line 7. */
const answers: HttpReply[] = [];

async function serve(t: Ctx, again: string): Promise<InProcessApp> {
  const app = await startApp(t, `createApp({ amqpUrl, queue: "${QUEUE}" })${again}`, () => t.target.createApp({ amqpUrl: t.url, queue: QUEUE }));
  return recordAnswers(app, answers);
}

/** Line 5: malformed JSON, another Content-Type, no body: 400, and nothing published. */
async function badBodies(t: Ctx, app: InProcessApp): Promise<void> {
  const sent: { what: string; reply: HttpReply }[] = [];
  const cases: [string, { body?: string; headers?: Record<string, string> }][] = [
    ['malformed JSON ({"task": "resize",)', { body: '{"task": "resize",', headers: { 'content-type': 'application/json' } }],
    ['text/plain ("resize photo-1.jpg")', { body: 'resize photo-1.jpg', headers: { 'content-type': 'text/plain' } }],
    ['no body at all', {}],
    ['a JSON array ([1, 2, 3])', { body: '[1, 2, 3]', headers: { 'content-type': 'application/json' } }],
  ];
  t.provoke(5, `sent POST /jobs with ${cases.map(([what]) => what).join(', ')}`);
  for (const [what, opts] of cases) sent.push({ what, reply: await app.request('POST', '/jobs', { ...opts, timeoutMs: 6000 }) });
  for (const { what, reply } of sent) {
    if (reply.status === 400) continue;
    const noParserHint = reply.status === 500 && /Cannot (read|destructure) propert/i.test(reply.text);
    t.fail({
      summary: `POST /jobs with ${what} answered ${statusHint(reply)}, not 400.`,
      expected: '400 Bad Request: the client sent something the app cannot take, and sending it again will not help',
      saw: showFull(reply),
      why: noParserHint
        ? 'In Express 5, req.body is undefined unless a body parser filled it: a body of another Content-Type (or none) leaves it undefined, and reading req.body.something throws. The error handler then answers 500, as if the server were at fault.'
        : 'A 5xx tells the client the server failed and invites it to retry; a 2xx says the job was taken. Neither is true: the request itself is wrong.',
      fix: "Parse with app.use(express.json()) (malformed JSON then reaches your error handler with err.status 400), and answer 400 when req.body is not a plain object: typeof body !== 'object' || body === null || Array.isArray(body).",
    });
  }
  const published = t.sent('basic.publish').length;
  const queued = await t.messageCount(QUEUE);
  if (published > 0 || queued > 0) {
    t.fail({
      summary: `After ${sent.length} bad requests, your app had published ${published} message(s) (${queued} in "${QUEUE}").`,
      expected: 'nothing published for a request answered 400',
      saw: `${published} basic.publish sent by your connection, ${queued} message(s) in the queue`,
      why: 'A job the client was told is wrong must not run anyway: the worker would get a job nobody is waiting for, with a body it cannot use.',
      fix: 'Validate req.body first and throw (or return the 400) before you publish anything.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(5, `each answered 400, and your connection published nothing (no basic.publish, "${QUEUE}" empty)`);
}

/** Line 2 (and 1: one connection): twenty jobs at once. */
async function twentyJobs(t: Ctx, app: InProcessApp): Promise<Map<string, unknown>> {
  const bodies = Array.from({ length: JOBS }, (_, i) => job(i + 1));
  t.provoke([1, 2], `sent ${JOBS} POST /jobs at once, each a JSON object`);
  const replies = await Promise.all(bodies.map((b) => app.request('POST', '/jobs', POST(b))));
  const wrong = replies.find((r) => r.status !== 202);
  if (wrong) {
    const noParser = wrong.status === 400 || /Cannot (read|destructure) propert/i.test(wrong.text);
    t.fail({
      summary: `POST /jobs with a valid JSON object answered ${statusHint(wrong)}, not 202${noParser ? ': is the body parsed (express.json())?' : '.'}`,
      expected: '202 Accepted, once the broker has confirmed the job',
      saw: `${replies.filter((r) => r.status === 202).length} of ${JOBS} answered 202; for instance ${showFull(wrong)}`,
      why: noParser
        ? 'Is the body parsed? Without app.use(express.json()), req.body is undefined in Express 5, so a valid job looks like no body at all.'
        : '202 Accepted is the answer for "I have your job, it will run later": the client then polls the Location it was given.',
      fix: noParser ? 'app.use(express.json()) before the routes.' : "res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' }), after the confirm.",
    });
  }
  const ids: string[] = [];
  for (const r of replies) {
    const location = header(r, 'location');
    const id = idFromLocation(location);
    const retry = retryAfterSeconds(r);
    const body = r.json as { id?: unknown; status?: unknown } | undefined;
    if (!id || retry === undefined || body?.id !== id || body?.status !== 'queued') {
      t.fail({
        summary: !id
          ? `A 202 came without a Location header pointing at /jobs/<id>.`
          : retry === undefined
            ? 'A 202 came without a valid Retry-After header.'
            : `A 202's body is not { id: "${id}", status: "queued" }.`,
        expected: '202 with Location: /jobs/<id>, Retry-After: 1 (seconds) and the body { id, status: "queued" }',
        saw: showFull(r),
        why: 'An asynchronous API answers "accepted" with where to look next: the Location of a status resource, and Retry-After, how many seconds to wait before asking. Without them the client has no way to learn what became of its job.',
        fix: "res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' })",
      });
    }
    ids.push(id);
  }
  const distinct = new Set(ids);
  if (distinct.size !== JOBS) {
    t.fail({
      summary: `${JOBS} jobs got only ${distinct.size} different ids.`,
      expected: `${JOBS} different job ids (randomUUID() per request)`,
      saw: `Locations ${[...new Set(replies.map((r) => header(r, 'location')))].slice(0, 4).join(', ')}…`,
      why: 'The id names the job in its status resource and in the message: two jobs with one id cannot be told apart, by the client or by the worker.',
      fix: 'const id = randomUUID() inside the handler, once per request.',
    });
  }

  if (t.connectionsOpened() !== 1) {
    t.fail({
      summary: `Your app opened ${t.connectionsOpened()} connections to the broker for ${JOBS} requests.`,
      expected: 'one connection, opened in createApp(), for every request',
      saw: `${t.connectionsOpened()} connections opened (${t.connectionsOpen()} still open)`,
      why: 'A connection is a TCP socket, a handshake of several round trips and a process on the broker: opening one per request makes every request slower and, under load, exhausts the broker. Connections are meant to live as long as the process.',
      fix: 'Open the connection and the channel once, in createApp(), and use them in every request.',
      link: t.ui('connections'),
    });
  }
  t.observe(1, `your app used one connection for all ${JOBS} requests (the sockets it opened)`);

  const messages = await t.takeMessages(QUEUE, 1000);
  const byId = new Map<string, GetMessage>(messages.map((m) => [String(m.properties.messageId), m]));
  const missing = ids.filter((id) => !byId.has(id));
  if (messages.length !== JOBS || missing.length) {
    t.fail({
      summary: `${JOBS} jobs answered 202, and "${QUEUE}" holds ${messages.length} message(s)${missing.length ? `; ${missing.length} job id(s) are in no message's messageId` : ''}.`,
      expected: `${JOBS} messages, each with properties.messageId = the job's id (the id in its Location)`,
      saw: `messageIds ${messages.slice(0, 3).map((m) => JSON.stringify(m.properties.messageId)).join(', ')}${messages.length > 3 ? ', …' : ''}`,
      why: 'The message is the job: a 202 for a job that is not in the queue is a job lost. Its messageId is how a worker, and a log, tie it back to the status resource.',
      fix: "channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), { persistent: true, messageId: id, contentType: 'application/json' }, callback)",
      link: t.ui('queues', QUEUE),
    });
  }
  const sentBodies = new Map(ids.map((id, i) => [id, bodies[i]]));
  for (const [id, m] of byId) {
    let content: unknown;
    try {
      content = JSON.parse(m.content.toString());
    } catch {
      content = m.content.toString();
    }
    const problems = [
      m.properties.deliveryMode !== 2 && `deliveryMode ${m.properties.deliveryMode ?? 'unset'} (not persistent)`,
      m.properties.contentType !== 'application/json' && `contentType ${JSON.stringify(m.properties.contentType)}`,
      JSON.stringify(content) !== JSON.stringify(sentBodies.get(id)) && `body ${m.content.toString().slice(0, 80)} instead of ${JSON.stringify(sentBodies.get(id))}`,
    ].filter(Boolean);
    if (problems.length) {
      const persistent = m.properties.deliveryMode !== 2;
      t.fail({
        summary: persistent
          ? `The job ${id} went to the broker as a transient message (not persistent).`
          : `The message of job ${id} is not the job as it was posted: ${problems.join('; ')}.`,
        expected: "the posted JSON object, persistent (deliveryMode 2), contentType 'application/json'",
        saw: problems.join('; '),
        why: persistent
          ? 'The 202 promises the job will run. A quorum queue keeps every message on disk, but a transient message says "losing me is fine", and RabbitMQ 4.x classic queues drop transient messages at a restart. Say what you mean: persistent: true.'
          : 'The worker reads the job from the message: what the client posted, as JSON, and the content type that says how to read it.',
        fix: "{ persistent: true, messageId: id, contentType: 'application/json' } and Buffer.from(JSON.stringify(req.body))",
        link: t.ui('queues', QUEUE),
      });
    }
  }
  t.observe(2, `every 202 had Location /jobs/<id> and Retry-After; "${QUEUE}" holds ${JOBS} persistent JSON messages, each with the job's id as messageId and the posted body`);
  return sentBodies;
}

/** Line 6: GET /jobs/:id. */
async function statusResource(t: Ctx, app: InProcessApp, accepted: Map<string, unknown>): Promise<void> {
  const [id] = [...accepted.keys()];
  const unknown = '00000000-0000-4000-8000-000000000000';
  t.provoke(6, `asked GET /jobs/${id} (a job it accepted) and GET /jobs/${unknown} (no such job)`);
  const known = await app.request('GET', `/jobs/${id}`);
  const body = known.json as { id?: unknown; status?: unknown } | undefined;
  if (known.status !== 200 || body?.id !== id || body?.status !== 'queued') {
    t.fail({
      summary: `GET /jobs/${id}, the Location of a job it accepted, answered ${statusHint(known)}.`,
      expected: `200 with { id: "${id}", status: "queued" }`,
      saw: showFull(known),
      why: 'The Location of a 202 is a promise: the client will ask there what became of its job.',
      fix: "app.get('/jobs/:id', …): look the id up in the jobs you accepted, and res.json({ id, ...job }).",
    });
  }
  const none = await app.request('GET', `/jobs/${unknown}`);
  if (none.status !== 404) {
    t.fail({
      summary: `GET /jobs/${unknown}, an id it never gave out, answered ${statusHint(none)}, not 404.`,
      expected: '404 Not Found',
      saw: showFull(none),
      why: 'A client that asks about a job that does not exist must hear so, not get a status for a job nobody submitted.',
      fix: "When jobs.get(id) is undefined: throw new HttpError(404, 'no such job').",
    });
  }
  t.observe(6, 'answered 200 { id, status: "queued" } for the known job and 404 for the unknown one');
}

/** Line 3 (a nack): 503 with Retry-After, never 202; then the app takes jobs again. */
async function refused(t: Ctx, app: InProcessApp): Promise<void> {
  const probes = await refuseNewMessages(t, QUEUE);
  if (probes === false) throw new Error(`the broker kept accepting messages on "${QUEUE}" despite the max-length policy; the check cannot judge`);
  t.provoke(3, `put a policy on "${QUEUE}" (max-length 0, overflow reject-publish): the broker now refuses (nacks) every message; then sent 3 POST /jobs at once`);
  const replies = await Promise.all([1, 2, 3].map((n) => app.request('POST', '/jobs', POST(job(100 + n)))));
  const accepted = replies.filter((r) => r.status >= 200 && r.status < 300);
  if (accepted.length) {
    t.fail({
      summary: `The broker refused the jobs, and your app answered ${accepted[0]!.status} anyway: ${accepted.length} job(s) lost.`,
      expected: '503 with Retry-After: the broker did not take the job',
      saw: `${showFull(accepted[0]!)}${accepted.length > 1 ? ` (and ${accepted.length - 1} more 202)` : ''}; "${QUEUE}" holds none of these jobs`,
      why: 'A 202 tells the client it may forget the job. If the answer goes out before the broker confirms (or after it refused), nothing will ever run it and nobody knows. Only the confirm makes the job safe.',
      fix: 'Publish on a confirm channel and await the confirm of this message (the sendToQueue callback, wrapped in a promise) before you answer; when it reports an error, answer 503.',
      link: t.ui('queues', QUEUE),
    });
  }
  const bad = replies.find((r) => r.status !== 503 || retryAfterSeconds(r) === undefined);
  if (bad) {
    t.fail({
      summary: `The broker refused the job, and your app answered ${statusHint(bad)}${bad.status === 503 ? ' without a Retry-After header' : ''}.`,
      expected: '503 Service Unavailable with Retry-After (seconds): "not now, try again in a moment"',
      saw: showFull(bad),
      why: 'A refusal (the queue is full, the broker is short of memory) is temporary, and the client can do something about it: retry later. 503 with Retry-After says exactly that; 500 says the server is broken, and a hanging request says nothing at all.',
      fix: "Catch the publish's rejection and answer res.status(503).set('Retry-After', '5'); or throw an error your error handler turns into that.",
    });
  }
  const slipped = await acceptMessagesAgain(t, QUEUE);
  if (slipped.length) throw new Error(`"${QUEUE}" took ${slipped.length} job(s) while over its max-length; the check cannot judge`);
  t.observe(3, `all 3 answered 503 with Retry-After, and "${QUEUE}" took none of them`);

  t.provoke(3, `deleted the policy: the broker takes messages again; sent one more job`);
  const again = await app.request('POST', '/jobs', POST(job(200)));
  if (again.status !== 202) {
    t.fail({
      summary: `Once the broker took messages again, POST /jobs answered ${statusHint(again)}, not 202.`,
      expected: '202: a refused message does not close the channel, so the next job goes through',
      saw: showFull(again),
      why: 'A nack is an answer about one message, not about the channel: the app must serve the next request as usual.',
      fix: 'Keep using the same confirm channel after a nack; do not close it or mark the app as broken.',
    });
  }
  await t.takeMessages(QUEUE, 10);
  t.observe(3, 'the next job answered 202: the app recovered from the refusal');
}

/** Line 4: the connection blocked: 503 at once, nothing published; unblocked: 202 again. */
async function blocked(t: Ctx, app: InProcessApp): Promise<void> {
  const before = t.sent('basic.publish').length;
  if (blockConnections(t, 'low on memory') === 0) throw new Error('the app has no open connection to block; the check cannot judge');
  t.provoke(4, 'sent POST /jobs while your connection was blocked');
  const reply = await app.request('POST', '/jobs', { json: job(300), timeoutMs: 4000 });
  const published = t.sent('basic.publish').length - before;
  unblockConnections(t);
  if (reply.status !== 503 || retryAfterSeconds(reply) === undefined || published > 0) {
    t.fail({
      summary:
        reply.status === 503 && retryAfterSeconds(reply) !== undefined
          ? 'While the connection was blocked, your app answered 503 but still published the job.'
          : `While the connection was blocked, POST /jobs answered ${statusHint(reply)}, not 503 with Retry-After.`,
      expected: "503 with Retry-After at once, nothing published, from the 'blocked' event until 'unblocked'",
      saw: `${showFull(reply)}; ${published} basic.publish sent while blocked`,
      why: 'During a memory or disk alarm the broker stops reading from every publishing connection: a publish then waits, and so does the request, until the alarm clears (minutes, maybe). Better to tell the client at once to come back later. Here only the event was sent, so a publish went through; in a real alarm it would hang.',
      fix: "connection.on('blocked', () => (blocked = true)); connection.on('unblocked', () => (blocked = false)); and in POST /jobs: if (blocked) answer 503 with Retry-After before publishing.",
    });
  }
  const after = await app.request('POST', '/jobs', POST(job(301)));
  if (after.status !== 202) {
    t.fail({
      summary: `After 'unblocked', POST /jobs answered ${statusHint(after)}, not 202.`,
      expected: "202 again once the connection is unblocked",
      saw: showFull(after),
      why: 'An alarm ends: a service that stays at 503 after it is over turns a short pause into an outage.',
      fix: "connection.on('unblocked', () => (blocked = false))",
    });
  }
  await t.takeMessages(QUEUE, 10);
  t.observe(4, "answered 503 with Retry-After and published nothing while blocked; answered 202 again after 'unblocked'");
}

/** Line 3 (the channel gone) and 1 ('error' listener): a second app, its connection cut. */
async function connectionLost(t: Ctx): Promise<void> {
  const app = await serve(t, ' (a second app)');
  t.cutConnections('a network failure under the second app');
  t.provoke([1, 3], 'cut the second app\'s connection to the broker (a network failure), then sent POST /jobs');
  await t.pause(50);
  const reply = await app.request('POST', '/jobs', { json: job(400), timeoutMs: 5000 });
  if (reply.status !== 503 || retryAfterSeconds(reply) === undefined) {
    t.fail({
      summary: `With its connection to the broker lost, the app answered POST /jobs with ${statusHint(reply)}, not 503 with Retry-After.`,
      expected: '503 with Retry-After: the app cannot take jobs right now',
      saw: showFull(reply),
      why:
        reply.status >= 200 && reply.status < 300
          ? 'A 202 with no connection to the broker is a job that exists nowhere.'
          : 'On a closed channel sendToQueue throws (and the confirms still waiting fail with "channel closed"). That is the same situation as a refusal for the client: not now, retry later.',
      fix: 'Let publishConfirmed() reject when sendToQueue throws (inside the promise executor it does), and turn every publish failure into 503 with Retry-After.',
    });
  }
  t.observe([1, 3], 'the app survived the lost connection (its error listener) and answered 503 with Retry-After');
  await app.stop();
}

// Check 9.3: the learner's app, served in the worker, with a database of its own. Requests
// without a key (400, nothing stored); ten requests with one key and one body at once, held at
// the jobs table until all have arrived (one job row, one outbox row, one message, ten identical
// 202s); a retry (same 202); the same key with another body (422); two other keys (two more
// jobs); a failed transaction (503); a restart, then the first key again (same 202); close().
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/09-express-api/03-idempotency-key.js';
import {
  checkDatabase,
  expectErrorAnswers,
  header,
  idFromLocation,
  learnerBackends,
  lockTable,
  loseConnections,
  recordAnswers,
  retryAfterSeconds,
  showFull,
  startApp,
  statusHint,
  stopAllApps,
  terminateBackend,
  waitForBlocked,
  withResources,
  type CheckDb,
  type HttpReply,
  type InProcessApp,
} from './support.js';

type Ctx = CheckContext<typeof Exercise>;
const QUEUE = 'jobs';
const AT_ONCE = 10;
const KEY = '4f1a6c2e-0b7d-4d0e-9a51-3c2f8e7b6a90';
const JOB = { task: 'invoice', order: 1042, total: 99.5 };
const post = (app: InProcessApp, key: string | undefined, json: unknown) =>
  app.request('POST', '/jobs', { json, headers: key === undefined ? {} : { 'Idempotency-Key': key }, timeoutMs: 8000 });

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    defer(() => stopAllApps());
    const db = await checkDatabase(defer);
    const deps: Exercise.AppDeps = { amqpUrl: t.url, databaseUrl: db.url, queue: QUEUE };
    const answers: HttpReply[] = [];
    const serve = async (why = '') => recordAnswers(await startApp(t, `createApp({ amqpUrl, databaseUrl, queue: "${QUEUE}" })${why}`, () => t.target.createApp(deps)), answers);

    let app = await serve();
    await noKey(t, db, app);
    const first = await tenAtOnce(t, db, app);
    await retried(t, db, app, first);
    await otherBody(t, db, app);
    const others = await otherKeys(t, db, app);
    await transactionFails(t, db, app);

    t.provoke(5, 'stopped the app and started a new one (a restart, or another process behind the load balancer), then sent the first key again');
    await app.stop();
    app = await serve(' (a new process)');
    const again = await post(app, KEY, JOB);
    if (again.status !== 202 || idOf(again) !== first) {
      t.fail({
        summary: `After a restart, the same Idempotency-Key answered ${again.status === 202 ? `202 with another job id (${idOf(again)} instead of ${first})` : statusHint(again)}.`,
        expected: `the same 202, for the job ${first}`,
        saw: showFull(again),
        why: 'A client retries whenever it did not get an answer: often because the process died, or another instance got the retry. Keys kept in the memory of one process forget exactly those cases.',
        fix: 'Keep the key in the jobs table (idempotency_key, UNIQUE) and decide with INSERT … ON CONFLICT DO NOTHING.',
      });
    }
    t.observe(5, `the new process answered the same 202 for the job ${first}`);

    await oneMessageEach(t, db, [first, ...others]);
    expectErrorAnswers(t, 7, answers);

    t.provoke(9, 'stopped the app: the server first, then your close()');
    const report = await app.stop();
    if (report.close !== 'ok') {
      t.fail({
        summary: `close() ${report.close === 'hung' ? 'did not finish within 5 s' : `threw: ${report.error}`}.`,
        expected: 'close() resolves once the relay has stopped and the pool, the channel and the connection are closed',
        saw: report.close === 'hung' ? 'a promise that never settled' : `an error: ${report.error}`,
        why: 'A deploy stops the process and waits for close(): one that hangs is killed halfway, one that throws leaves things open.',
        fix: 'await relay.stop(), then await pool.end(), channel.close() and connection.close().',
      });
    }
    await t.expectConnectionsClosed('close()');
    if (!(await t.waitFor(async () => (await learnerBackends(db)).length === 0, 2000))) {
      t.fail({
        summary: `close() returned, but your app still has ${(await learnerBackends(db)).length} connection(s) to Postgres open.`,
        expected: 'no database connection left once close() returns',
        saw: `${(await learnerBackends(db)).length} connection(s) of your app in pg_stat_activity`,
        why: 'A pool keeps its connections until pool.end(): a process that forgets it does not exit, and Postgres counts them against max_connections.',
        fix: 'await pool.end() in close(), after the relay has stopped.',
      });
    }
    t.observe(9, 'close() resolved; no connection to the broker or to Postgres was left open');

    const lossy = await serve(' (once more)');
    const newJob = await post(lossy, 'd0f5b3c4-8a6e-4c9b-8d3a-4e5f6a7b8c93', { task: 'invoice', order: 4000 });
    if (newJob.status !== 202) throw new Error(`the app answered ${newJob.status} to a new job after a restart; the check cannot go on`);
    await loseConnections(t, db, 8);
    await lossy.stop();
  }),
);

/** Line 1: no key, an empty key: 400, nothing stored. */
async function noKey(t: Ctx, db: CheckDb, app: InProcessApp): Promise<void> {
  t.provoke(1, 'sent POST /jobs without an Idempotency-Key header, then with an empty one, then with a key but a JSON array, and with a key but a text/plain body');
  const replies = [
    await post(app, undefined, JOB),
    await post(app, '', JOB),
    await post(app, '0b6e1f52-6c0a-4a7e-8d0e-5f0d4c1b2a33', [1, 2]),
    await app.request('POST', '/jobs', { body: 'invoice 1042', headers: { 'content-type': 'text/plain', 'Idempotency-Key': '1c7d2e63-7d1b-4b8f-9e1f-6a1e5d2c3b44' }, timeoutMs: 8000 }),
  ];
  const stored = await count(t, db);
  for (const r of replies) {
    if (r.status !== 400) {
      const keyless = r === replies[0] || r === replies[1];
      t.fail({
        summary: keyless
          ? `POST /jobs ${r === replies[0] ? 'without an Idempotency-Key' : 'with an empty Idempotency-Key'} answered ${statusHint(r)}, not 400.`
          : `POST /jobs with ${r === replies[2] ? 'a JSON array' : 'a text/plain body'} answered ${statusHint(r)}, not 400.`,
        expected: '400 Bad Request, and nothing stored',
        saw: showFull(r),
        why: keyless
          ? 'Without a key, a retry cannot be told from a new job: the one guarantee this endpoint gives is gone. The IETF draft on the Idempotency-Key header answers 400 when an endpoint that requires the key does not get one.'
          : 'A job is a JSON object: refuse anything else before storing it.',
        fix: keyless ? "const key = req.get('Idempotency-Key')?.trim(); if (!key) throw new HttpError(400, …)" : "if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, …)",
      });
    }
  }
  if (stored !== 0) {
    t.fail({
      summary: `Requests answered 400 still stored ${stored} job(s).`,
      expected: 'no job row for a refused request',
      saw: `${stored} row(s) in jobs`,
      why: 'A job the client was told is refused must not run anyway.',
      fix: 'Check the key and the body first, before the transaction.',
    });
  }
  t.observe(1, 'each answered 400, and the jobs table is empty');
}

/** Lines 2 and 3: ten requests, one key, one body, all at once. */
async function tenAtOnce(t: Ctx, db: CheckDb, app: InProcessApp): Promise<string> {
  // SHARE: reading goes on, writing waits. Every request gets as far as its INSERT, then the checker lets them all go at once.
  const lock = await lockTable(t, db, 'jobs', 'SHARE');
  t.provoke([2, 3], `sent ${AT_ONCE} POST /jobs at once with the same Idempotency-Key and the same body, while the jobs table was locked for writing`);
  const pending = Promise.all(Array.from({ length: AT_ONCE }, () => post(app, KEY, JOB)));
  await waitForBlocked(t, db, /./, 4000);
  let waiting = 0;
  for (let stable = 0; stable < 6; ) {
    const now = (await learnerBackends(db)).filter((b) => b.waitEventType === 'Lock').length;
    stable = now === waiting ? stable + 1 : 0;
    waiting = now;
    await t.pause(50);
  }
  await lock.release();
  t.log(`released the lock with ${waiting} of your app's database connections waiting at it`);
  const replies = await pending;
  const bad = replies.find((r) => r.status !== 202);
  const ids = new Set(replies.map(idOf));
  const rows = await jobsWithKey(t, db, KEY);
  const outbox = await outboxCount(db);
  if (rows.length !== 1 || outbox !== 1) {
    t.fail({
      summary: `${AT_ONCE} requests with one Idempotency-Key made ${rows.length} job row(s) and ${outbox} outbox row(s).`,
      expected: 'exactly one job, whichever request was first',
      saw: `${rows.length} job rows with idempotency_key ${KEY}; ${outbox} outbox row(s); answers ${summary(replies)}`,
      why: 'A check in the code ("is there a job with this key? no? insert one") lets requests that arrive together all see "no", and all insert: a race. Only the database sees every transaction, so only it can say "this key exists" atomically: a UNIQUE constraint, and INSERT … ON CONFLICT DO NOTHING.',
      fix: 'idempotency_key text NOT NULL UNIQUE in SCHEMA, and INSERT INTO jobs (id, idempotency_key, payload) VALUES ($1, $2, $3) ON CONFLICT (idempotency_key) DO NOTHING; rowCount 0 means another request was first.',
    });
  }
  if (bad || ids.size !== 1 || !ids.has(rows[0]!.id)) {
    t.fail({
      summary: bad
        ? bad.status === 422
          ? `Of ${AT_ONCE} requests with one Idempotency-Key and one body, one answered 422: the same body was taken for a different one.`
          : `Of ${AT_ONCE} requests with one Idempotency-Key, one answered ${statusHint(bad)}: the retries must get the first request's answer.`
        : `${AT_ONCE} requests with one Idempotency-Key got ${ids.size} different job ids.`,
      expected: `${AT_ONCE} times the same 202, with Location /jobs/${rows[0]!.id}`,
      saw: `answers ${summary(replies)}`,
      why: 'The client cannot tell which of its attempts reached the server first; whichever answer it reads must name the one job that exists. An error (a unique violation that became a 500) makes it retry again, or give up on a job that was stored.',
      fix:
        bad?.status === 422
          ? 'Compare the bodies as JSON values, in the database: SELECT id, payload = $2::jsonb AS same_body … (the text of a jsonb column is not the text the client sent).'
          : 'When the INSERT … ON CONFLICT DO NOTHING inserted nothing, SELECT the id of the job with that key and answer the same 202 with it.',
    });
  }
  const r = replies[0]!;
  if (retryAfterSeconds(r) === undefined || (r.json as { status?: unknown } | undefined)?.status !== 'queued') {
    t.fail({
      summary: 'The 202 lacks a Retry-After header or the body { id, status: "queued" }.',
      expected: "202 with Location: /jobs/<id>, Retry-After: 1 and { id, status: 'queued' }",
      saw: showFull(r),
      why: 'The answer to a retry must be the answer to the first request: where to look, and when.',
      fix: "res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' })",
    });
  }
  const id = rows[0]!.id;
  const status = await app.request('GET', `/jobs/${id}`);
  if (status.status !== 200 || (status.json as { id?: unknown } | undefined)?.id !== id) {
    t.fail({
      summary: `GET /jobs/${id}, the Location of the 202, answered ${statusHint(status)}.`,
      expected: `200 { id: "${id}", status: "queued" }`,
      saw: showFull(status),
      why: 'The Location of a 202 is where the client looks next.',
      fix: 'SELECT status FROM jobs WHERE id = $1, as in exercise 9.2.',
    });
  }
  for (const junk of ['not-a-uuid', `x${id}`, `${id}x`]) {
    const r = await app.request('GET', `/jobs/${junk}`);
    if (r.status !== 404) {
      t.fail({
        summary: `GET /jobs/${junk}, an id that is not a uuid, answered ${statusHint(r)}, not 404.`,
        expected: '404 Not Found',
        saw: showFull(r),
        why: 'Postgres refuses a string that is not a uuid for a uuid column (invalid input syntax): the route must check the id before it queries.',
        fix: 'UUID.test(id) with a pattern anchored at both ends (^…$); otherwise 404.',
      });
    }
  }
  t.observe([2, 3], `one job row (with its key) and one outbox row; all ${AT_ONCE} answered the same 202, Location /jobs/${id}, GET there answers 200 (and 404 for ids that are not uuids)`);
  return id;
}

/** Line 3: a retry, later. */
async function retried(t: Ctx, db: CheckDb, app: InProcessApp, first: string): Promise<void> {
  t.provoke(3, 'sent the same key and body once more, a moment later, its keys in another order (a client retrying after a time-out)');
  const before = await count(t, db);
  const r = await post(app, KEY, { total: 99.5, order: 1042, task: 'invoice' });
  if (r.status !== 202 || idOf(r) !== first || (await count(t, db)) !== before) {
    t.fail({
      summary: `A retry with the same Idempotency-Key (the body's keys in another order) answered ${r.status === 202 ? `202 for another job, ${idOf(r)}` : statusHint(r)}.`,
      expected: `the same 202 for the job ${first}, and no new row`,
      saw: `${showFull(r)}; jobs: ${before} → ${await count(t, db)} rows`,
      why: 'A client may serialise the same JSON object with its keys in another order on its retry: the same job all the same. Compare the bodies as JSON values (jsonb equality does), not as text.',
      fix: 'Compare with payload = $2::jsonb, in the database.',
    });
  }
  t.observe(3, `the same 202 for the job ${first}, and no new row`);
}

/** Line 4: the same key with a different body. */
async function otherBody(t: Ctx, db: CheckDb, app: InProcessApp): Promise<void> {
  t.provoke(4, 'sent the same key with a different body (total 150 instead of 99.5)');
  const before = await count(t, db);
  const r = await post(app, KEY, { ...JOB, total: 150 });
  const after = await count(t, db);
  if (r.status !== 422 || after !== before) {
    t.fail({
      summary: `The same Idempotency-Key with a different body answered ${statusHint(r)}${after !== before ? ' and stored a new job' : ''}, not 422.`,
      expected: '422 Unprocessable Content, and nothing stored',
      saw: `${showFull(r)}; jobs: ${before} → ${after} rows`,
      why: r.status === 202
        ? 'A 202 here tells the client its new job (total 150) was accepted, while the stored one says 99.5: a different job than it asked for, silently.'
        : 'A key names one job. Reused with another body, it is a client bug, and the IETF draft on the header answers it with 422.',
      fix: "When the key exists, compare the bodies (SELECT id, payload = $2::jsonb AS same_body FROM jobs WHERE idempotency_key = $1) and throw new HttpError(422, …) when they differ.",
    });
  }
  t.observe(4, 'answered 422, and stored nothing');
}

/** Line 2: other keys are other jobs. */
async function otherKeys(t: Ctx, db: CheckDb, app: InProcessApp): Promise<string[]> {
  const keys = ['a3c1e8f0-5d2b-4f6e-9a07-1b2c3d4e5f60', 'b7d2f9a1-6e3c-4a7f-8b18-2c3d4e5f6a71'];
  t.provoke(2, 'sent two requests at once with two other keys (and two other bodies)');
  const before = await count(t, db);
  const replies = await Promise.all(keys.map((k, i) => post(app, k, { task: 'invoice', order: 2000 + i })));
  const ids = replies.map(idOf);
  if (replies.some((r) => r.status !== 202) || new Set(ids).size !== 2 || (await count(t, db)) !== before + 2) {
    t.fail({
      summary: `Two requests with two new Idempotency-Keys did not make two new jobs: ${summary(replies)}.`,
      expected: 'two 202s with two new job ids, and two new rows',
      saw: `${summary(replies)}; jobs: ${before} → ${await count(t, db)} rows`,
      why: 'The key decides what is a retry: a new key is a new job.',
      fix: 'Insert with the request\'s own key, and look up the first job by that key only.',
    });
  }
  t.observe(2, 'two 202s, two new job ids, two new rows');
  return ids as string[];
}

/** Line 6: the transaction fails. */
async function transactionFails(t: Ctx, db: CheckDb, app: InProcessApp): Promise<void> {
  const before = await count(t, db);
  const lock = await lockTable(t, db, 'jobs', 'SHARE');
  const pending = post(app, 'c9e4a2b3-7f5d-4b8a-9c29-3d4e5f6a7b82', { task: 'invoice', order: 3000 });
  const waiting = await waitForBlocked(t, db, /./, 4000);
  if (waiting) {
    t.provoke(6, `sent a new job; while its transaction waited for the jobs table, ended that database connection (pg_terminate_backend ${waiting.pid})`);
    await terminateBackend(db, waiting.pid);
  }
  await lock.release();
  const r = await pending;
  if (!waiting || r.status !== 503 || retryAfterSeconds(r) === undefined || (await count(t, db)) !== before) {
    t.fail({
      summary: !waiting ? 'While the jobs table was locked, POST /jobs never waited to write to it.' : `When its transaction failed, POST /jobs answered ${statusHint(r)}, not 503 with Retry-After.`,
      expected: '503 with Retry-After, and nothing stored: the client retries with the same key later',
      saw: `${showFull(r)}; jobs: ${before} → ${await count(t, db)} rows`,
      why: 'A database that fails is a temporary problem. With the key, the retry is safe: it either finds the job (if it was stored after all) or stores it now.',
      fix: "Catch the transaction's error and throw new HttpError(503, …, 5).",
    });
  }
  t.observe(6, 'answered 503 with Retry-After, and stored nothing');
}

/** Lines 2 and 3, in the broker: one message per job, never one per request. */
async function oneMessageEach(t: Ctx, db: CheckDb, ids: string[]): Promise<void> {
  t.provoke([2, 3], `waited for the relay to send the outbox rows of the ${ids.length} jobs`);
  await t.waitFor(async () => (await db.sql.query('SELECT 1 FROM outbox WHERE sent_at IS NULL')).rowCount === 0, 4000);
  await t.pause(300);
  await expectQuorumQueue(t, QUEUE);
  const messages: GetMessage[] = await t.takeMessages(QUEUE, 1000);
  const got = messages.map((m) => String(m.properties.messageId)).sort();
  if (got.join() !== [...ids].sort().join()) {
    t.fail({
      summary: `The queue holds ${messages.length} message(s) for ${ids.length} jobs.`,
      expected: `one message per job: messageIds ${[...ids].sort().join(', ')}`,
      saw: `messageIds ${got.join(', ') || '(none)'}`,
      why: 'Every request that stores a job writes one outbox row, and the relay sends one message per row: a retry that stores nothing sends nothing.',
      fix: 'Write the outbox row only when the INSERT INTO jobs inserted a row (rowCount 1), in the same transaction.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe([2, 3], `"${QUEUE}" (a durable quorum queue) holds exactly ${ids.length} messages, one per job`);
}

// ---- helpers ------------------------------------------------------------------------------

function idOf(r: HttpReply): string | undefined {
  return idFromLocation(header(r, 'location'));
}

function summary(replies: HttpReply[]): string {
  const counts = new Map<string, number>();
  for (const r of replies) {
    const k = r.status === 202 ? `202 ${idOf(r)}` : String(r.status || r.failure);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n} × ${k}`).join(', ');
}

async function count(t: Ctx, db: CheckDb): Promise<number> {
  try {
    return Number((await db.sql.query<{ n: string }>('SELECT count(*) AS n FROM jobs')).rows[0]!.n);
  } catch (err) {
    return t.fail({
      summary: `The checker could not read the table "jobs": ${(err as Error).message}`,
      expected: 'the tables jobs and outbox, as SCHEMA creates them',
      saw: (err as Error).message,
      why: 'The checker reads your tables by the names and columns SCHEMA gives.',
      fix: 'Run await pool.query(SCHEMA) in createApp() before anything else.',
    });
  }
}

async function jobsWithKey(t: Ctx, db: CheckDb, key: string): Promise<{ id: string }[]> {
  try {
    return (await db.sql.query<{ id: string }>('SELECT id::text FROM jobs WHERE idempotency_key = $1', [key])).rows;
  } catch (err) {
    return t.fail({
      summary: `The checker could not read jobs.idempotency_key: ${(err as Error).message}`,
      expected: 'a column idempotency_key in jobs, holding the header\'s value',
      saw: (err as Error).message,
      why: 'The key must be stored with the job: that is how the next request with it finds the job.',
      fix: 'Keep the column idempotency_key in SCHEMA and insert the key there.',
    });
  }
}

async function outboxCount(db: CheckDb): Promise<number> {
  return Number((await db.sql.query<{ n: string }>('SELECT count(*) AS n FROM outbox')).rows[0]!.n);
}

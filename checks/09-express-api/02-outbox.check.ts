// Check 9.2: the learner's app runs in a process of its own (so the checker can kill it), with a
// database of its own on the capstone's Postgres. Five jobs: one job row and one outbox row
// each, then one message each. The outbox table locked, the transaction's connection ended
// (503, and neither row); the jobs table locked and the process killed in the middle of the
// transaction (neither row). The broker refusing: POST still 202, the rows stay unsent; then the
// broker taking messages again, the outbox locked so the relay stops between the confirm and the
// mark, the process killed there; restarted, the relay sends what was left. At the end every job
// row has its message(s), every message its job row (a copy only with the same messageId), the
// status survives the restarts, and close() closes the connections.
import type { GetMessage } from 'amqplib';
import { isDeepStrictEqual } from 'node:util';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/09-express-api/02-outbox.js';
import {
  acceptMessagesAgain,
  checkDatabase,
  expectErrorAnswers,
  header,
  idFromLocation,
  learnerBackends,
  lockTable,
  loseConnections,
  recordAnswers,
  refuseNewMessages,
  retryAfterSeconds,
  showFull,
  spawnApp,
  startApp,
  statusHint,
  stopAllApps,
  terminateBackend,
  waitForBlocked,
  withResources,
  type CheckDb,
  type ChildApp,
  type HttpReply,
  type InProcessApp,
} from './support.js';

type Ctx = CheckContext<typeof Exercise>;
const QUEUE = 'jobs';
const FIRST = 5;
const job = (n: number) => ({ task: 'thumbnail', image: `photo-${n}.jpg` });

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    defer(() => stopAllApps());
    const db = await checkDatabase(defer);
    const deps: Exercise.AppDeps = { amqpUrl: t.url, databaseUrl: db.url, queue: QUEUE };
    const answers: HttpReply[] = [];
    const spawn = async (why = '') => recordAnswers(await spawnApp(t, `createApp({ amqpUrl, databaseUrl, queue: "${QUEUE}" })${why}`, { exportName: 'createApp', deps }), answers);
    const serve = async (why: string) => recordAnswers(await startApp(t, `createApp({ amqpUrl, databaseUrl, queue: "${QUEUE}" })${why}`, () => t.target.createApp(deps)), answers);
    /** Every job message the checker took off the queue so far (the final comparison counts them all). */
    const taken: GetMessage[] = [];
    const take = async () => taken.push(...(await t.takeMessages(QUEUE, 1000)).filter((m) => m.content.toString() !== 'checker probe'));

    let app = await spawn();
    const ids = await firstJobs(t, db, app);
    await t.waitFor(async () => (await unsent(db)).length === 0 && (await t.messageCount(QUEUE)) >= FIRST, 4000);
    await take();
    await expectQuorumQueue(t, QUEUE);
    firstMessages(t, taken, ids);

    await transactionFails(t, db, app);
    await killedMidTransaction(t, db, app);
    app = await spawn(' (restarted after the kill)');
    await statusSurvives(t, app, ids[0]!);

    const held = await refusedThenKilled(t, db, app, taken);
    app = await spawn(' (restarted after the second kill)');
    t.provoke(5, `restarted the app: the killed process left ${held.length} outbox row(s) unsent`);
    const leftUnsent = await t.waitFor(async () => (await unsent(db)).length === 0, 5000);
    if (!leftUnsent) {
      t.fail({
        summary: `After the restart, ${(await unsent(db)).length} outbox row(s) the killed process left unsent stayed unsent for 5 s.`,
        expected: 'the relay of the new process sends them within a second or two',
        saw: `outbox rows with sent_at NULL: ${(await unsent(db)).map((r) => r.message_id).join(', ')}`,
        why: 'A process can die at any moment; the rows it did not get to are the reason the outbox exists. The next process must pick them up by itself, not only the rows of its own requests.',
        fix: 'Run the relay in a loop from createApp() on: a pass, then a pause of at most a second, for as long as the app runs. Each pass selects every row WHERE sent_at IS NULL.',
      });
    }
    t.observe(5, 'the restarted app sent every row the killed one left');
    await t.pause(300); // a pass in progress when the last row was marked has published it already
    await take();
    finalComparison(t, await jobIds(db), taken, held);

    await app.stop();
    expectErrorAnswers(t, 7, answers);

    t.provoke(9, 'started the app once more, inside the checker, and stopped it: the server first, then your close()');
    const local = await serve(' (inside the checker)');
    await closesEverything(t, db, local);

    const lossy = await serve(' (inside the checker, once more)');
    accepted(t, lossy, await lossy.request('POST', '/jobs', { json: job(30), timeoutMs: 8000 }), 'POST /jobs');
    await loseConnections(t, db, 8);
    await lossy.stop();
  }),
);

// ---- phases -------------------------------------------------------------------------------

/** Line 1: five jobs, each with its job row and its outbox row, and 202. */
async function firstJobs(t: Ctx, db: CheckDb, app: ChildApp): Promise<string[]> {
  t.provoke(1, `sent ${FIRST} POST /jobs at once, then one with a JSON array and one with a text/plain body`);
  const replies = await Promise.all(Array.from({ length: FIRST }, (_, i) => app.request('POST', '/jobs', { json: job(i + 1), timeoutMs: 8000 })));
  const ids = replies.map((r) => accepted(t, app, r, 'POST /jobs with a JSON object'));
  const array = await app.request('POST', '/jobs', { json: [1, 2, 3], timeoutMs: 8000 });
  const text = await app.request('POST', '/jobs', { body: 'thumbnail photo-1.jpg', headers: { 'content-type': 'text/plain' }, timeoutMs: 8000 });
  for (const [what, r] of [['a JSON array', array], ['a text/plain body', text]] as const) {
    if (r.status === 400) continue;
    t.fail({
      summary: `POST /jobs with ${what} answered ${statusHint(r)}, not 400.`,
      expected: '400: a job is a JSON object',
      saw: showFull(r),
      why: 'A request the app cannot take must be refused before anything is stored: a job row for it would be a job no worker can run.',
      fix: "if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, …)",
    });
  }
  const jobs = await rows<{ id: string; payload: unknown; status: string }>(t, db, 'jobs', 'SELECT id::text, payload, status FROM jobs');
  const outbox = await rows<{ message_id: string; payload: unknown }>(t, db, 'outbox', 'SELECT message_id::text, payload FROM outbox');
  for (const [i, id] of ids.entries()) {
    const row = jobs.find((r) => r.id === id);
    const out = outbox.filter((r) => r.message_id === id);
    if (!row || row.status !== 'queued' || !isDeepStrictEqual(row.payload, job(i + 1))) {
      t.fail({
        summary: row ? `The job row of ${id} is not { status: "queued", payload: the posted job }.` : `POST /jobs answered 202 for the job ${id}, but the jobs table has no row for it.`,
        expected: `a row in jobs with id ${id}, status "queued" and payload ${JSON.stringify(job(i + 1))}`,
        saw: row ? `status ${JSON.stringify(row.status)}, payload ${JSON.stringify(row.payload)}` : `${jobs.length} row(s) in jobs, none with that id`,
        why: 'The job row is what GET /jobs/:id reads and what the worker will update: it must exist, with the job, as soon as the client hears 202.',
        fix: "INSERT INTO jobs (id, payload) VALUES ($1, $2) with the id you put in Location, inside the transaction, before the COMMIT.",
      });
    }
    if (out.length !== 1 || !isDeepStrictEqual(out[0]!.payload, job(i + 1))) {
      t.fail({
        summary:
          out.length === 0
            ? `The job ${id} has a job row but no outbox row: nothing records that its message must be sent.`
            : out.length > 1
              ? `The job ${id} has ${out.length} outbox rows.`
              : `The outbox row of ${id} does not carry the posted job as its payload.`,
        expected: `one outbox row with message_id ${id} and payload ${JSON.stringify(job(i + 1))}, written in the same transaction as the job row`,
        saw: out.length ? out.map((r) => JSON.stringify(r)).join('; ') : `${outbox.length} row(s) in outbox, none with message_id ${id}`,
        why:
          out.length === 0
            ? 'Without an outbox row, the message depends on a second write (a publish) after the first one. A crash, a refusal or a lost connection between the two leaves a job that never runs: the dual-write problem.'
            : 'One outbox row per job: the relay sends each row once (or again after a crash), and the worker gets the job as it was posted.',
        fix: "INSERT INTO outbox (message_id, payload) VALUES ($1, $2) with the job's id and body, in the same transaction as the job row.",
      });
    }
  }
  t.observe(1, `each of the ${FIRST} jobs answered 202 with Location and Retry-After, and has one job row (status "queued") and one outbox row with the same id and payload; the array and the text got 400`);
  return ids;
}

/** Lines 3 and 5: the relay published one persistent JSON message per row, messageId = the job's id. */
function firstMessages(t: Ctx, messages: GetMessage[], ids: string[]): void {
  t.provoke([3, 5], `waited up to 4 s for your relay to send the ${FIRST} outbox rows`);
  const got = messages.map((m) => String(m.properties.messageId));
  const missing = ids.filter((id) => !got.includes(id));
  if (missing.length && messages.length >= FIRST && messages.some((m) => !m.properties.messageId)) {
    t.fail({
      summary: `Your relay published the jobs without a messageId.`,
      expected: `messageId = the outbox row's message_id (the job's id): ${ids.join(', ')}`,
      saw: `${messages.length} message(s), messageIds ${got.join(', ')}`,
      why: "After a crash between the confirm and the mark, the relay sends a row again. The messageId is what lets a consumer see that it is the same job, and what ties a message to its job row and status resource.",
      fix: "{ persistent: true, messageId: row.message_id, contentType: 'application/json' }",
      link: t.ui('queues', QUEUE),
    });
  }
  if (missing.length) {
    t.fail({
      summary: `${missing.length} of the ${FIRST} jobs never reached "${QUEUE}" (within 4 s).`,
      expected: `${FIRST} messages, with messageIds ${ids.join(', ')}`,
      saw: messages.length ? `${messages.length} message(s), messageIds ${got.join(', ')}` : 'no message at all',
      why: 'The outbox row is a promise that the message will go out: the relay, running beside the app, must send it within a second or two.',
      fix: 'In createApp(), start the relay loop: select the rows WHERE sent_at IS NULL, publish each with messageId: row.message_id, and mark them sent after the confirm.',
      link: t.ui('queues', QUEUE),
    });
  }
  for (const m of messages) {
    const problems = [
      m.properties.deliveryMode !== 2 && 'not persistent',
      m.properties.contentType !== 'application/json' && `contentType ${JSON.stringify(m.properties.contentType)}`,
      !ids.includes(String(m.properties.messageId)) && `messageId ${JSON.stringify(m.properties.messageId)}, which is no job's id`,
    ].filter(Boolean);
    const i = ids.indexOf(String(m.properties.messageId));
    if (i >= 0 && !isDeepStrictEqual(parse(m), job(i + 1))) problems.push(`body ${m.content.toString().slice(0, 80)}`);
    if (problems.length) {
      t.fail({
        summary: `A message your relay published is not the job as stored: ${problems.join('; ')}.`,
        expected: "the outbox row's payload as JSON, persistent, contentType 'application/json', messageId = message_id",
        saw: problems.join('; '),
        why: 'The worker reads the job from the message; the messageId ties it to its job row and lets a consumer drop a copy (the relay may send a row twice after a crash).',
        fix: "channel.sendToQueue(queue, Buffer.from(JSON.stringify(row.payload)), { persistent: true, messageId: row.message_id, contentType: 'application/json' }, callback)",
        link: t.ui('queues', QUEUE),
      });
    }
  }
  t.observe([3, 5], `"${QUEUE}" (a durable quorum queue) got ${FIRST} persistent JSON messages, one per outbox row, messageId = the job's id, and every row is marked sent`);
}

/** Line 2: the outbox locked, the transaction's connection ended while it waits: 503, and neither row. */
async function transactionFails(t: Ctx, db: CheckDb, app: ChildApp): Promise<void> {
  const before = await counts(db);
  const lock = await lockTable(t, db, 'outbox', 'SHARE');
  const pending = app.request('POST', '/jobs', { json: job(10), timeoutMs: 8000 });
  const waiting = await waitForBlocked(t, db, /./, 4000);
  if (waiting) {
    t.provoke(2, `sent POST /jobs; while its transaction waited for the outbox table, ended that database connection (pg_terminate_backend ${waiting.pid}): the transaction fails`);
    await terminateBackend(db, waiting.pid);
  }
  await lock.release();
  const reply = await pending;
  if (!waiting) {
    t.fail({
      summary: 'While the checker held a lock on the outbox table, POST /jobs never waited for it.',
      expected: 'POST /jobs inserts its outbox row (and waits for the lock)',
      saw: `no connection of your app waited for a lock within 4 s; the request answered ${statusHint(reply)}`,
      why: 'The outbox row must be written by the request itself, in the same transaction as the job row.',
      fix: 'INSERT INTO outbox in the transaction of POST /jobs.',
    });
  }
  const after = await counts(db);
  if (after.jobs !== before.jobs || after.outbox !== before.outbox) {
    const orphanJob = after.jobs - before.jobs > after.outbox - before.outbox;
    t.fail({
      summary: orphanJob
        ? 'A job row was written without its outbox row: the two inserts are not one transaction.'
        : `A failed POST /jobs left rows behind (jobs ${before.jobs} → ${after.jobs}, outbox ${before.outbox} → ${after.outbox}).`,
      expected: 'neither row: the job row and the outbox row are committed together or not at all',
      saw: `jobs: ${before.jobs} → ${after.jobs} rows, outbox: ${before.outbox} → ${after.outbox} rows; the request answered ${statusHint(reply)}`,
      why: 'Two separate writes (two autocommitted INSERTs, or two transactions) can be cut between them: a job row without an outbox row is a job whose message is never sent, and nobody notices.',
      fix: "One transaction on one client of the pool: BEGIN; INSERT INTO jobs …; INSERT INTO outbox …; COMMIT (inTransaction() does it), and ROLLBACK when anything fails.",
    });
  }
  if (reply.status !== 503 || retryAfterSeconds(reply) === undefined) {
    t.fail({
      summary: `When its transaction failed, POST /jobs answered ${statusHint(reply)}, not 503 with Retry-After.`,
      expected: '503 with Retry-After: the job was not stored, try again',
      saw: showFull(reply),
      why:
        reply.status >= 200 && reply.status < 300
          ? 'The job was not stored: a 2xx tells the client to forget a job that exists nowhere.'
          : 'The database failing is temporary, and the client can fix it by retrying later: that is 503 with Retry-After, not a 500 (a bug) or no answer.',
      fix: "Catch the transaction's error and throw new HttpError(503, …, 5): the error handler sets Retry-After.",
    });
  }
  t.observe(2, 'answered 503 with Retry-After, and neither a job row nor an outbox row was written');
}

/** Line 1: the jobs table locked, the process killed while its transaction waits: neither row, ever. */
async function killedMidTransaction(t: Ctx, db: CheckDb, app: ChildApp): Promise<void> {
  const before = await counts(db);
  const lock = await lockTable(t, db, 'jobs', 'SHARE');
  const pending = app.request('POST', '/jobs', { json: job(11), timeoutMs: 8000 });
  const waiting = await waitForBlocked(t, db, /./, 4000);
  t.provoke(1, waiting ? `sent POST /jobs and, while its transaction waited for the jobs table, killed your app's process (SIGKILL)` : 'sent POST /jobs and killed your app\'s process (SIGKILL)');
  await app.kill('SIGKILL');
  await lock.release();
  await pending;
  // The statement that waited runs once the lock is gone; then the server notices the client died.
  await t.waitFor(async () => (await learnerBackends(db)).length === 0, 5000);
  const after = await counts(db);
  const [jobs, outbox] = [after.jobs - before.jobs, after.outbox - before.outbox];
  if (jobs !== outbox) {
    t.fail({
      summary: `The process died between two writes and left ${jobs > outbox ? 'a job row without its outbox row' : 'an outbox row without its job row'}.`,
      expected: 'both rows or neither: a transaction that never reached COMMIT leaves nothing',
      saw: `jobs: ${before.jobs} → ${after.jobs} rows, outbox: ${before.outbox} → ${after.outbox} rows`,
      why: 'A process dies between any two lines: an OOM kill, a deploy, a crash. Only what one transaction commits together stays consistent; an INSERT sent on its own commits the moment it runs, even if the process is gone by then.',
      fix: 'BEGIN; INSERT INTO jobs …; INSERT INTO outbox …; COMMIT, on one client of the pool.',
    });
  }
  t.observe(1, jobs ? 'after the kill, the request\'s single statement still committed both rows together' : 'after the kill, neither a job row nor an outbox row of that request exists');
}

/** Line 6: the status is read from the table, so it survives the restart. */
async function statusSurvives(t: Ctx, app: ChildApp, id: string): Promise<void> {
  const unknown = '00000000-0000-4000-8000-000000000000';
  t.provoke(6, `asked the restarted app GET /jobs/${id} (accepted by the process it replaced), GET /jobs/${unknown} and three ids that are not uuids`);
  const known = await app.request('GET', `/jobs/${id}`);
  const body = known.json as { id?: unknown; status?: unknown } | undefined;
  if (known.status !== 200 || body?.id !== id || body?.status !== 'queued') {
    t.fail({
      summary: `After a restart, GET /jobs/${id} answered ${statusHint(known)}${known.status === 200 ? ` with ${known.text}` : ''}.`,
      expected: `200 { id: "${id}", status: "queued" }, read from the jobs table`,
      saw: showFull(known),
      why: 'The job outlives the process that accepted it: its status must come from the database, not from the memory of a process that is gone.',
      fix: "SELECT status FROM jobs WHERE id = $1, and res.json({ id, status }).",
    });
  }
  const none = await app.request('GET', `/jobs/${unknown}`);
  const junk = [await app.request('GET', '/jobs/not-a-uuid'), await app.request('GET', `/jobs/x${unknown}`), await app.request('GET', `/jobs/${unknown}x`)];
  for (const r of [none, ...junk]) {
    if (r.status !== 404) {
      t.fail({
        summary: `${r.method} ${r.path}, a job that does not exist, answered ${statusHint(r)}, not 404.`,
        expected: '404 Not Found',
        saw: showFull(r),
        why: r.status === 500 ? 'Postgres refuses a string that is not a uuid for a uuid column (invalid input syntax): check the id before you query, and answer 404.' : 'A client that asks about a job that does not exist must hear so.',
        fix: 'No row (or not a uuid at all): throw new HttpError(404, "no such job").',
      });
    }
  }
  t.observe(6, 'the restarted app answered 200 { status: "queued" } for the old job and 404 for unknown ids and ids that are not uuids');
}

/**
 * Lines 1, 4 and 3: the broker refuses (POST still 202, rows stay unsent); then it takes messages
 * again while the outbox is locked, so the relay publishes and waits to mark them sent: killed there.
 * Resolves with the ids of the jobs posted meanwhile.
 */
async function refusedThenKilled(t: Ctx, db: CheckDb, app: ChildApp, taken: GetMessage[]): Promise<string[]> {
  const probes = await refuseNewMessages(t, QUEUE);
  if (probes === false) throw new Error(`the broker kept accepting messages on "${QUEUE}" despite the max-length policy; the check cannot judge`);
  t.provoke([1, 4], `made the broker refuse (nack) every message to "${QUEUE}" (a policy: max-length 1, overflow reject-publish), then sent 3 POST /jobs`);
  const replies = await Promise.all([21, 22, 23].map((n) => app.request('POST', '/jobs', { json: job(n), timeoutMs: 8000 })));
  const refusedPost = replies.find((r) => r.status !== 202);
  if (refusedPost) {
    t.fail({
      summary: `While the broker refused messages, POST /jobs answered ${statusHint(refusedPost)}, not 202.`,
      expected: '202: the job is safe once the transaction commits, whatever the broker does',
      saw: showFull(refusedPost),
      why: 'With an outbox the request never talks to the broker: the relay sends the message later, and retries until the broker takes it. A request that publishes (and waits for a confirm) is the dual write again.',
      fix: 'Publish nothing in POST /jobs: commit the two rows and answer 202. Only the relay publishes.',
    });
  }
  const held = replies.map((r) => accepted(t, app, r, 'POST /jobs while the broker refused'));
  await t.pause(1500); // the relay tries at least once a second
  const stillUnsent = (await unsent(db)).map((r) => r.message_id);
  const marked = held.filter((id) => !stillUnsent.includes(id));
  if (marked.length) {
    t.fail({
      summary: `The broker refused every message, yet your relay marked ${marked.length} of the 3 outbox rows sent: ${marked.length === 1 ? 'that job is' : 'those jobs are'} lost.`,
      expected: 'the rows stay unsent (sent_at NULL) until the broker confirms their messages',
      saw: `sent_at set for ${marked.join(', ')}; "${QUEUE}" holds none of them`,
      why: 'Marking a row sent is the outbox forgetting it. Before the confirm, or after a nack, nothing is safe in the broker: the relay must leave the row for a later pass.',
      fix: "Mark a row sent only after its message's confirm: await each publish (a confirm channel), and UPDATE outbox SET sent_at = now() only for the rows that were confirmed.",
    });
  }
  t.observe(1, 'all 3 answered 202 although the broker refused messages');
  t.observe(4, 'after 1.5 s of refusals all 3 outbox rows are still unsent');

  const lock = await lockTable(t, db, 'outbox', 'SHARE');
  const slipped = await acceptMessagesAgain(t, QUEUE);
  taken.push(...slipped);
  t.provoke([3, 4], 'made the broker take messages again, with the outbox table locked: your relay can publish, but not mark the rows sent');
  const mark = await waitForBlocked(t, db, /update/i, 5000);
  const published = async () => {
    const inQueue = await t.messageCount(QUEUE);
    return taken.filter((m) => held.includes(String(m.properties.messageId))).length + inQueue;
  };
  if (!mark) {
    await lock.release();
    const retried = await t.waitFor(async () => (await unsent(db)).length === 0, 3000);
    if (!retried) {
      t.fail({
        summary: `Once the broker took messages again, your relay did not send the ${held.length} refused rows again (within 5 s).`,
        expected: 'the relay tries the unsent rows again on its next pass, within a second or two',
        saw: `outbox rows still unsent: ${(await unsent(db)).map((r) => r.message_id).join(', ')}`,
        why: 'A refusal (a full queue, an alarm) is temporary. A relay that gives a row up after one nack loses the job as surely as no outbox at all.',
        fix: 'Leave a refused row unsent, and let the loop pick it up again: every pass selects all rows WHERE sent_at IS NULL.',
      });
    }
    t.note('Your relay marks its rows sent without an UPDATE the checker could hold back, so the kill between the confirm and the mark was skipped.');
    return held;
  }
  await t.waitFor(async () => (await published()) >= held.length, 3000);
  t.provoke(3, `killed your app's process (SIGKILL) while its relay waited to mark the rows sent (${await published()} of their messages were in the broker)`);
  await app.kill('SIGKILL');
  await lock.release();
  await t.waitFor(async () => (await learnerBackends(db)).length === 0, 5000);
  return held;
}

/** Lines 3 and 4, in the end: every job row has its message, every message its job row. */
function finalComparison(t: Ctx, jobs: string[], messages: GetMessage[], held: string[]): void {
  t.provoke([3, 4], `compared the ${jobs.length} job rows with the ${messages.length} messages the relay published over the whole check`);
  const byId = new Map<string, number>();
  for (const m of messages) byId.set(String(m.properties.messageId), (byId.get(String(m.properties.messageId)) ?? 0) + 1);
  const lost = jobs.filter((id) => !byId.has(id));
  const orphans = [...byId.keys()].filter((id) => !jobs.includes(id));
  if (lost.length) {
    t.fail({
      summary: `${lost.length} job(s) with a row in the jobs table never reached the queue: lost.`,
      expected: 'every job row has its message in the queue, sooner or later',
      saw: `no message for ${lost.join(', ')}`,
      why: 'The client got 202 for these jobs. A job whose message never goes out never runs, and nothing tells anyone.',
      fix: 'Write the outbox row in the same transaction as the job row, and mark it sent only after the confirm.',
      link: t.ui('queues', QUEUE),
    });
  }
  if (orphans.length) {
    t.fail({
      summary: `${orphans.length} message(s) in the queue belong to no job row: ${orphans.slice(0, 3).join(', ')}.`,
      expected: 'a message only for a job that exists',
      saw: `messageIds without a job row: ${orphans.join(', ')}`,
      why: 'A worker will run a job the API does not know: its status resource answers 404, and the client was told it failed (or was never told anything).',
      fix: 'Let only the relay publish, and only rows committed together with their job row.',
      link: t.ui('queues', QUEUE),
    });
  }
  const twice = [...byId].filter(([, n]) => n > 1).map(([id]) => id);
  const unexpected = twice.filter((id) => !held.includes(id));
  if (unexpected.length) {
    t.fail({
      summary: `${unexpected.length} job(s) reached the queue more than once although no process died while sending them: ${unexpected.join(', ')}.`,
      expected: 'one message per job; a second copy only for a row whose process was killed between the confirm and the mark',
      saw: unexpected.map((id) => `${id}: ${byId.get(id)} messages`).join(', '),
      why: 'Copies cost every consumer a check, and a relay that sends a row on every pass floods the queue.',
      fix: 'Mark the rows sent (in the same transaction that selected them FOR UPDATE) once their confirms are in.',
    });
  }
  t.observe(
    [3, 4],
    `every one of the ${jobs.length} jobs has its message and no message lacks its job; ${twice.length} job(s) went out twice, all of them rows whose process was killed between the confirm and the mark (same messageId, so a consumer can drop the copy)`,
  );
}

/** Line 9: close() resolves, and leaves no connection to the broker or to Postgres. */
async function closesEverything(t: Ctx, db: CheckDb, app: InProcessApp): Promise<void> {
  const report = await app.stop();
  if (report.close !== 'ok') {
    t.fail({
      summary: `close() ${report.close === 'hung' ? 'did not finish within 5 s' : `threw: ${report.error}`}.`,
      expected: 'close() resolves once the relay has stopped and the pool, the channel and the connection are closed',
      saw: report.close === 'hung' ? 'a promise that never settled' : `an error: ${report.error}`,
      why: 'A deploy stops the process and waits for close(): one that hangs is killed halfway, one that throws leaves things open.',
      fix: "In close(): await the relay loop's end, then await pool.end(), channel.close() and connection.close().",
    });
  }
  await t.expectConnectionsClosed('close()');
  const left = await t.waitFor(async () => (await learnerBackends(db)).length === 0, 2000);
  if (!left) {
    t.fail({
      summary: `close() returned, but your app still has ${(await learnerBackends(db)).length} connection(s) to Postgres open.`,
      expected: 'no database connection left once close() returns',
      saw: `${(await learnerBackends(db)).length} connection(s) of your app in pg_stat_activity`,
      why: 'A pool keeps its connections open until pool.end(): a process that forgets it does not exit, and the database counts the connections against its max_connections.',
      fix: 'await pool.end() in close(), after the relay has stopped.',
    });
  }
  t.observe(9, 'close() resolved; no connection to the broker or to Postgres was left open');
}

// ---- helpers ------------------------------------------------------------------------------

/** The job id of a 202 (from its Location), or a verdict. */
function accepted(t: Ctx, app: ChildApp | InProcessApp, r: HttpReply, what: string): string {
  const crash = 'crash' in app ? app.crash : undefined;
  const id = idFromLocation(header(r, 'location'));
  const body = r.json as { id?: unknown; status?: unknown } | undefined;
  if (r.status === 202 && id && body?.id === id && body?.status === 'queued' && retryAfterSeconds(r) !== undefined) return id;
  return t.fail({
    summary: crash ? `Your app's process crashed: ${crash}` : `${what} answered ${statusHint(r)}, not 202 with Location, Retry-After and the job's id.`,
    expected: "202 with Location: /jobs/<id>, Retry-After: 1 and { id, status: 'queued' }, once the transaction is committed",
    saw: showFull(r),
    why: crash
      ? "An error nobody handled ended the process: in a service that is every request in flight lost. A database connection that dies while it is checked out of the pool emits 'error' on its client."
      : 'The 202 says "your job is stored, look here for its status": the Location of the status resource and when to look.',
    fix: crash
      ? "Listen for 'error' on the pool (pool.on('error', …)) and on each client you check out (inTransaction() does it)."
      : "res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' }) after the COMMIT.",
  });
}

async function rows<R>(t: Ctx, db: CheckDb, table: string, sql: string): Promise<R[]> {
  try {
    return (await db.sql.query(sql)).rows as R[];
  } catch (err) {
    return t.fail({
      summary: `The checker could not read the table "${table}": ${(err as Error).message}`,
      expected: 'the tables jobs and outbox, as SCHEMA creates them',
      saw: (err as Error).message,
      why: 'The checker compares your tables with the messages in the broker, so it reads them by the names and columns SCHEMA gives.',
      fix: 'Run await pool.query(SCHEMA) in createApp(), before anything else, and keep SCHEMA as it is.',
    });
  }
}

async function unsent(db: CheckDb): Promise<{ message_id: string }[]> {
  return (await db.sql.query<{ message_id: string }>('SELECT message_id::text FROM outbox WHERE sent_at IS NULL ORDER BY id')).rows;
}

async function counts(db: CheckDb): Promise<{ jobs: number; outbox: number }> {
  const { rows: r } = await db.sql.query<{ jobs: number; outbox: number }>('SELECT (SELECT count(*)::int FROM jobs) AS jobs, (SELECT count(*)::int FROM outbox) AS outbox');
  return r[0]!;
}

async function jobIds(db: CheckDb): Promise<string[]> {
  return (await db.sql.query<{ id: string }>('SELECT id::text FROM jobs')).rows.map((r) => r.id);
}

function parse(m: GetMessage): unknown {
  try {
    return JSON.parse(m.content.toString());
  } catch {
    return m.content.toString();
  }
}

// Check 9.6: the learner's jobs service (API and worker in one process) is shut down under load.
// autocannon sends POST /jobs over 10 keep-alive connections; the checker's handle() takes 100 ms
// a job, then holds every job it gets until the checker lets it go. With the worker's prefetch
// window full, and one request still uploading its body, the checker lets one job finish and
// calls shutdown() right after its ack (so the broker sends one more job before it takes the
// cancel). It finishes the upload 200 ms later; at 400 ms it lets the held jobs go (one fails), and
// 300 ms after that the late one; then it waits for shutdown(). A second instance is shut down
// with only a request in progress, whose upload ends 300 ms later: shutdown() must wait for it.
// Then it reads everything: the answers the server sent and when, the frames the app sent (in
// which order), the jobs left in the queue, the port, the connections the broker still lists.
// A third instance has its connections cut: it must survive, and answer 503.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { connectionMark, connectionsSince, consumes, onSent, type AmqpConnection, type SentMethod } from '../../runner/check/frames.js';
import { request, shutDown } from '../../runner/check/http-app.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/09-express-api/06-graceful-shutdown.js';
import { startLoad } from './load.js';
import { deleteQueueUnderConsumer } from '../06-patterns/support.js';

type T = CheckContext<typeof Exercise>;

const JOBS = 'jobs';
const PREFETCH = 10;
const WORK_MS = 100;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What the server did with one request, as the checker saw it from a 'request' listener of its own. */
interface Served {
  at: number;
  method: string;
  url: string;
  /** The checker's own slow upload (header x-checker). */
  slow: boolean;
  /** When its answer was sent, with what status and Connection header. */
  finished?: { at: number; status: number; connection: string };
}

/** The checker's handle(): WORK_MS a job, or, once `holding`, until the checker lets it go. */
function checkerWork() {
  const state = {
    holding: false,
    /** Every call, in order, with the job's id. */
    calls: [] as { id: string; at: number }[],
    /** Jobs whose handle() resolved. */
    done: new Set<string>(),
    held: new Map<string, (fail: boolean) => void>(),
    notJob: undefined as string | undefined,
  };
  const handle = async (jobId: string, job: unknown): Promise<void> => {
    const id = typeof jobId === 'string' ? jobId : '';
    if (!id || typeof (job as { n?: unknown } | undefined)?.n !== 'number') state.notJob ??= `handle(${JSON.stringify(jobId) ?? String(jobId)}, ${JSON.stringify(job)?.slice(0, 100) ?? String(job)})`;
    state.calls.push({ id, at: Date.now() });
    if (state.holding) {
      const fail = await new Promise<boolean>((resolve) => state.held.set(id, resolve));
      state.held.delete(id);
      if (fail) throw new Error(`the checker's handle() failed on job ${id}`);
    } else await sleep(WORK_MS);
    state.done.add(id);
  };
  /** Lets held jobs go; those in `failing` reject. */
  const release = (ids: string[], failing: string[] = []) => {
    for (const id of ids) state.held.get(id)?.(failing.includes(id));
  };
  return { state, handle, release };
}

interface Instance {
  service: Exercise.Service;
  server: http.Server;
  port: number;
  conns: () => AmqpConnection[];
  served: Served[];
}

async function startService(t: T, label: string, handle: (id: string, job: unknown) => Promise<void>): Promise<Instance> {
  const mark = connectionMark();
  const service = await t.call(label, () => t.target.start({ amqpUrl: t.url, queue: JOBS, port: 0, handle }), { timeoutMs: 8000 });
  const server = service?.server;
  if (!(server instanceof http.Server) || typeof service?.shutdown !== 'function' || !server.listening) {
    t.fail({
      summary: `${label} did not return { server, shutdown } with a server that listens.`,
      expected: '{ server: the http.Server that app.listen(port) returned, listening; shutdown: an async function }',
      saw: service === undefined ? 'undefined' : `keys ${Object.keys(service).join(', ') || '(none)'}${server instanceof http.Server ? `, a server that ${server.listening ? 'listens' : 'does not listen yet'}` : ''}`,
      why: 'A graceful shutdown starts with the HTTP server: the service must own it, to close it.',
      fix: 'const server = await new Promise((resolve, reject) => { const s = app.listen(port, (err) => (err ? reject(err) : resolve(s))); }); return { server, shutdown };',
    });
  }
  const port = (server.address() as AddressInfo).port;
  const served: Served[] = [];
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const entry: Served = { at: Date.now(), method: req.method ?? '', url: req.url ?? '', slow: req.headers['x-checker'] === 'slow-upload' };
    served.push(entry);
    res.on('finish', () => (entry.finished = { at: Date.now(), status: res.statusCode, connection: String(res.getHeader('connection') ?? 'keep-alive') }));
  });
  t.log(`${label} listens on port ${port}`);
  return { service, server, port, conns: () => connectionsSince(mark), served };
}

/** A POST /jobs whose body is sent in two halves: the request reaches the app, and waits for the rest. */
function slowUpload(port: number) {
  const body = JSON.stringify({ n: -1, note: 'a body that takes a while to upload' });
  const half = Math.floor(body.length / 2);
  const agent = new http.Agent({ keepAlive: true });
  let finish = () => undefined as unknown;
  const answer = new Promise<{ status: number; connection: string; body: string } | { error: string }>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/jobs', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-checker': 'slow-upload' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: String(res.headers.connection ?? ''), body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.write(body.slice(0, half));
    finish = () => req.end(body.slice(half));
  });
  return {
    answer: answer.finally(() => agent.destroy()),
    finish: () => finish(),
  };
}

/** Whether something accepts TCP connections on the port. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

const idOf = (body: string) => {
  try {
    const id = (JSON.parse(body) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
};

/** The request still uploading when shutdown() began must get its 202, confirm included. */
function expectUploadAnswered(t: T, uploaded: { status: number; connection: string; body: string } | { error: string }): void {
  if ('status' in uploaded && uploaded.status === 202 && idOf(uploaded.body)) return;
  t.fail({
    summary: `A request in progress when shutdown() began (its body was still uploading) ${'status' in uploaded ? `was answered ${uploaded.status}` : `got no answer (${uploaded.error})`}, not 202.`,
    expected: '202 {"id": …}: a request the server had taken before the shutdown is served to the end, confirm included',
    saw: 'status' in uploaded ? `${uploaded.status}: ${uploaded.body.slice(0, 120)}` : uploaded.error,
    why: 'server.close() lets the requests already taken finish. Closing the publishing channel (or the connection) before they have their confirm makes them fail, or worse, cuts them off after the job was published: the client retries, and the job runs twice.',
    fix: 'Close the channels only after the server has closed (await the callback of server.close()): by then every request in progress has had its answer.',
  });
}

export default defineCheck<typeof Exercise>(async (t) => {
  const started: Instance[] = [];
  try {
    await run(t, started);
  } finally {
    // Whatever happened, no server of the learner's stays open.
    for (const i of started) if (i.server.listening) await shutDown(i.server, undefined, { graceMs: 200 });
  }
});

async function run(t: T, started: Instance[]) {
  const work = checkerWork();
  const a = await startService(t, `start({ amqpUrl, queue: "${JOBS}", port: 0, handle })`, work.handle);
  started.push(a);
  await expectQuorumQueue(t, JOBS);
  const worker = () => a.conns().find((c) => c.sent.some((m) => m.name === 'basic.consume' && m.queue === JOBS));
  const consume = worker() && consumes([worker()!]).find((c) => c.consume.queue === JOBS);
  if (!consume || consume.consume.noAck || consume.prefetch !== PREFETCH) {
    t.fail({
      summary: !consume ? `start() returned without consuming "${JOBS}".` : consume.consume.noAck ? `Your worker consumes "${JOBS}" with { noAck: true }.` : `Your worker consumes "${JOBS}" with prefetch ${consume.prefetch ?? '(none: unlimited)'}, not ${PREFETCH}.`,
      expected: `channel.prefetch(${PREFETCH}), then channel.consume('${JOBS}', onMessage, { noAck: false }), before start() returns`,
      saw: !consume ? 'no basic.consume' : `noAck ${consume.consume.noAck}, prefetch ${consume.prefetch ?? 'none'}`,
      why: consume?.consume.noAck
        ? 'In no-ack mode the broker forgets a job the moment it sends it. A shutdown (or a crash) then loses every job the worker held: nothing can hand them to the next instance.'
        : 'The prefetch is how many jobs the worker holds at once, and so how many a shutdown has to wait for. Without one, the broker sends the whole queue.',
      fix: `await channel.prefetch(${PREFETCH}); await channel.consume('${JOBS}', onMessage, { noAck: false });`,
    });
  }
  const workerConn = worker()!;
  const publisherOf = () => a.conns().find((c) => c.sent.some((m) => m.name === 'basic.publish'));

  // ---- load, then hold the jobs ----------------------------------------------------------------
  let accepted = 0;
  let startHolding: () => void = () => undefined;
  const holdingStarted = new Promise<void>((r) => (startHolding = r));
  const load = startLoad({
    url: `http://127.0.0.1:${a.port}`,
    method: 'POST',
    path: () => '/jobs',
    json: (n) => ({ n }),
    amount: 2000,
    connections: 10,
    overallRate: 200,
    timeoutSec: 6,
    onReply: (r) => {
      if (r.status === 202 && ++accepted === 30) startHolding();
    },
  });
  t.provoke([1, 2], `POST /jobs {"n": …}, 200 a second over 10 keep-alive connections (autocannon); the checker's handle() takes ${WORK_MS} ms a job`);
  const firstAnswers = await Promise.race([holdingStarted.then(() => true), load.done.then(() => false), sleep(6000).then(() => false)]);
  if (!firstAnswers) {
    load.stop();
    const out = await load.done;
    const statuses = [...new Set(out.replies.map((r) => r.status))];
    t.fail({
      summary: `POST /jobs did not answer 202 to the load: ${accepted} × 202 in ${out.durationMs} ms.`,
      expected: '202 with {"id": …} for each job, once the broker confirmed it',
      saw: `${out.replies.length} answers (${statuses.join(', ') || 'none'}), ${out.errors} errors; e.g. ${out.replies[0]?.body.slice(0, 120) ?? '(no answer)'}`,
      fix: 'Publish the job on the confirm channel and answer res.status(202).json({ id }) in the confirm callback.',
    });
  }
  work.state.holding = true;
  t.log(`${accepted} jobs answered 202; from now on the checker's handle() holds every job it gets`);
  const full = await t.waitFor(() => work.state.held.size >= PREFETCH, 4000, 5);
  if (!full) t.note(`Only ${work.state.held.size} jobs were running at once when the checker shut your service down (the worker's prefetch window was not full).`);
  const upload = slowUpload(a.port);
  if (!(await t.waitFor(() => a.served.some((s) => s.slow), 2000, 5))) t.note('The request with the slow upload did not reach your server before the shutdown.');

  // ---- shutdown() right after an ack ------------------------------------------------------------
  const firstDone = [...work.state.held.keys()][0];
  const acked = new Promise<void>((resolve) => {
    const stop = onSent((c, m) => c === workerConn && m.name === 'basic.ack' && (stop(), resolve()));
  });
  if (firstDone) work.release([firstDone]);
  await Promise.race([acked, sleep(500)]);
  let listeningAtCancel: boolean | undefined;
  const stopCancel = onSent((c, m) => {
    if (c === workerConn && m.name === 'basic.cancel' && listeningAtCancel === undefined) listeningAtCancel = a.server.listening;
  });
  let serverClosedAt: number | undefined;
  a.server.once('close', () => (serverClosedAt = Date.now()));
  const heldAtShutdown = [...work.state.held.keys()];
  const callsBefore = work.state.calls.length;
  const shutdownAt = Date.now();
  t.provoke(['4a', '4b', '4c', '4d', '4e'], `called shutdown() right after a job's ack, with ${heldAtShutdown.length} jobs running, requests in progress (one still uploading its body) and more jobs ready in the queue`);
  let shutdownEnd: number | undefined;
  let shutdownError: unknown;
  const stopping = t.clock
    .during('learner', () => Promise.resolve().then(() => a.service.shutdown()))
    .then(
      () => void (shutdownEnd = Date.now()),
      (err: unknown) => {
        shutdownEnd = Date.now();
        shutdownError = err;
      },
    );
  const stillRunning = (what: string) => {
    const closedAt = workerConn.sent.find((m) => (m.name === 'channel.close' && m.channel === consume!.consume.channel) || m.name === 'connection.close');
    if (shutdownEnd === undefined && !closedAt) return;
    if (!workerConn.sent.some((m) => m.name === 'basic.cancel')) {
      t.fail({
        summary: `shutdown() never cancelled the consumer: the broker kept sending jobs, and shutdown() ${shutdownEnd === undefined ? 'closed the worker' : 'resolved'} while ${work.state.held.size} of them were still running.`,
        expected: 'first await channel.cancel(consumerTag): no new jobs; then wait for the running ones',
        saw: `no basic.cancel; ${work.state.calls.length - callsBefore} job(s) started after shutdown() began`,
        why: 'Without the cancel, every ack frees a place in the prefetch window, and the broker fills it with the next job. The set of running jobs never stops changing, so no wait is ever complete: the channel closes under the last ones, and they are done again by the next instance.',
        fix: 'In shutdown(), after server.close(): await channel.cancel(consumerTag); then await Promise.all(working).',
      });
    }
    t.fail({
      summary:
        shutdownEnd === undefined
          ? `shutdown() closed the worker's ${closedAt!.name === 'channel.close' ? 'channel' : 'connection'} ${closedAt!.at - shutdownAt} ms after it began, while ${what} still running.`
          : `shutdown() ${shutdownError ? `failed (${String((shutdownError as Error)?.message ?? shutdownError)})` : 'resolved'} after ${shutdownEnd - shutdownAt} ms, while ${what} still running.`,
      expected: 'shutdown() waits until every job already running has finished and been acked, also one the broker sent after the cancel went out and before it confirmed it',
      saw: `${work.state.held.size} handle() call(s) still running when shutdown() ${shutdownError ? 'failed' : 'resolved'}`,
      why: "Those jobs are in your worker's hands. Closing the channel under them hands them back to the broker, which gives them to the next instance: done twice. And channel.cancel() is a round trip: jobs the broker sent before it took the cancel still arrive until its answer (cancel-ok); only when await channel.cancel() resolves is the set of running jobs complete.",
      fix: 'In shutdown(): await channel.cancel(consumerTag), then await Promise.all(working) (the promises that end after each ack), and only then close the channels and the connections.',
    });
  };
  // The upload in progress since before the shutdown ends first: its request gets its answer, and the server can close.
  await sleep(200);
  upload.finish();
  const uploaded = await Promise.race([upload.answer, sleep(3000).then(() => ({ error: 'no answer within 3 s' }))]);
  await sleep(Math.max(0, 400 - (Date.now() - shutdownAt)));
  // Jobs that started after shutdown() was called: the broker sent them before it took the cancel.
  const late = work.state.calls.slice(callsBefore).map((c) => c.id).filter((id) => work.state.held.has(id));
  const early = [...work.state.held.keys()].filter((id) => !late.includes(id));
  stillRunning(`${work.state.held.size} jobs were`);
  // Let the jobs go: the first held one fails (it must go back to the queue), the rest succeed; the late ones last.
  const failing = early[0];
  t.provoke(['2', '4c'], `let the ${early.length} jobs that were running finish, 400 ms after shutdown() began; one of them (${failing}) fails`);
  work.release(early, failing ? [failing] : []);
  if (late.length) {
    await sleep(300);
    stillRunning(`${late.length === 1 ? 'a job the broker sent after the cancel went out was' : `${late.length} jobs the broker sent after the cancel went out were`}`);
    t.provoke('4b', `let ${late.length === 1 ? 'the job' : `the ${late.length} jobs`} that arrived after shutdown() began (before the broker confirmed the cancel) finish, 300 ms later`);
    work.release(late);
  }
  await Promise.race([stopping, sleep(8000)]);
  stopCancel();
  load.stop();
  const outcome = await load.done;
  // ---- 4a: it stopped accepting, and said so -------------------------------------------------
  const afterStart = a.served.filter((s) => s.at > shutdownAt);
  const takenAfter = afterStart.filter((s) => s.finished?.status === 202);
  const keptAlive = a.served.filter((s) => s.finished && s.finished.at > shutdownAt && !/close/i.test(s.finished.connection));
  if (listeningAtCancel !== false || takenAfter.length || keptAlive.length || (shutdownEnd !== undefined && (a.server.listening || (await portOpen(a.port))))) {
    t.fail({
      summary:
        listeningAtCancel === undefined
          ? 'shutdown() never cancelled the consumer (no basic.cancel).'
          : listeningAtCancel
            ? 'shutdown() cancelled the consumer while the HTTP server still accepted requests.'
            : keptAlive.length
              ? `After shutdown() began, ${keptAlive.length} answer(s) went out without "Connection: close": their keep-alive connections stayed open, and brought more requests.`
              : takenAfter.length
                ? `After shutdown() began, your server still took ${takenAfter.length} new request(s) and answered 202.`
                : 'After shutdown(), something still accepts connections on the port.',
      expected: 'first server.close(): no new connections, idle ones closed, and each answer sent after that with "Connection: close"; then the consumer cancelled; and the port free when shutdown() resolves',
      saw: `server listening at the cancel: ${listeningAtCancel ?? '(no cancel)'}; ${afterStart.length} request(s) arrived after shutdown() began (${takenAfter.length} answered 202); ${keptAlive.length} answer(s) after it without Connection: close; port ${a.server.listening ? 'still open' : 'closed'}`,
      why: 'Jobs accepted during a shutdown are jobs the worker may already have stopped taking, on channels about to close. And a keep-alive connection brings request after request: server.close() only stops new connections, and waits for the open ones to end. Until they do, the server is not closed, and the process cannot finish.',
      fix: "shutdown(): stopping = true; server.close(callback) first. In the route, if (stopping) res.set('Connection', 'close') before answering: each connection then ends with its answer.",
    });
  }
  if (shutdownEnd === undefined) {
    t.fail({
      summary: 'shutdown() did not finish within 8 s of the last job finishing.',
      expected: 'shutdown() resolves once the requests in progress are answered, the jobs acked, and everything closed',
      saw: `still pending; the server ${a.server.listening ? 'still listens' : 'no longer listens'}; ${a.served.filter((s) => !s.finished).length} request(s) without an answer`,
      why: 'A deployment gives a process a few seconds after SIGTERM, then kills it. A shutdown that hangs is a crash with extra steps.',
      fix: 'Check each await in shutdown(): server.close() calls back only once every connection has ended: set Connection: close on the answers sent while stopping, so that keep-alive connections end with them.',
    });
  }
  if (shutdownError) t.fail({ summary: `shutdown() failed: ${String((shutdownError as Error)?.message ?? shutdownError)}`, fix: 'Run your file on its own and shut it down with Ctrl-C to see the whole error.' });

  if (serverClosedAt === undefined || serverClosedAt > shutdownEnd!) {
    t.fail({
      summary: `shutdown() resolved ${serverClosedAt === undefined ? 'before the server had closed (its close callback never came)' : `${serverClosedAt - shutdownEnd!} ms before the server had closed`}.`,
      expected: "shutdown() awaits server.close()'s callback, which comes once the last connection has ended",
      saw: serverClosedAt === undefined ? 'no close event' : `closed ${serverClosedAt - shutdownEnd!} ms after shutdown() resolved`,
      why: 'Until the close callback, requests may still be in progress on open connections. A caller that exits the process when shutdown() resolves cuts them off without an answer.',
      fix: 'const closed = new Promise((resolve) => server.close(() => resolve())); … await closed; before closing the channels.',
    });
  }
  t.observe('4a', `the server stopped listening before the cancel; no request taken after shutdown() began; every answer after it carried Connection: close; the port was free when shutdown() resolved`);

  // ---- 4d: the request in progress got its answer --------------------------------------------
  expectUploadAnswered(t, uploaded);
  t.observe('4d', `the request still uploading when shutdown() began got 202 (Connection: ${'connection' in uploaded ? uploaded.connection || 'keep-alive' : '?'})`);

  // ---- the jobs: none lost, none done twice ----------------------------------------------------
  const left = await t.takeMessages(JOBS, 1000);
  const messageIdOf = (m: { properties: { messageId?: unknown } }) => (typeof m.properties.messageId === 'string' ? m.properties.messageId : undefined);
  const leftIds = left.map(messageIdOf);
  const answers202 = [...outcome.replies.filter((r) => r.status === 202).map((r) => idOf(r.body)), 'status' in uploaded && uploaded.status === 202 ? idOf(uploaded.body) : undefined].filter(
    (id): id is string => !!id,
  );
  const bad202 = outcome.replies.find((r) => {
    if (r.status !== 202) return false;
    const id = idOf(r.body);
    let status: unknown;
    try {
      status = (JSON.parse(r.body) as { status?: unknown }).status;
    } catch {
      status = undefined;
    }
    return !id || status !== 'queued' || r.headers.location !== `/jobs/${id}`;
  });
  if (bad202) {
    t.fail({
      summary: 'A 202 for POST /jobs did not say where the job is, or that it is queued.',
      expected: '202, Location: /jobs/<id>, body {"id": "<id>", "status": "queued"}',
      saw: `Location ${bad202.headers.location ?? '(none)'}, body ${bad202.body.slice(0, 120)}`,
      fix: "res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' })",
    });
  }
  const badLeft = left.find((m) => m.properties.deliveryMode !== 2 || m.properties.contentType !== 'application/json' || typeof (JSON.parse(m.content.toString()) as { n?: unknown }).n !== 'number');
  if (badLeft) {
    t.fail({
      summary: 'The jobs in the queue are not persistent JSON messages holding the request body.',
      expected: 'persistent: true, contentType application/json, the body as posted ({"n": …})',
      saw: `deliveryMode ${badLeft.properties.deliveryMode ?? '(none)'}, contentType ${badLeft.properties.contentType ?? '(none)'}, body ${badLeft.content.toString().slice(0, 120)}`,
      why: 'The jobs left in the queue wait for the next instance. Only persistent messages are sure to survive a broker restart in the meantime, whatever kind of queue holds them.',
      fix: "sendToQueue(queue, Buffer.from(JSON.stringify(req.body)), { persistent: true, messageId: id, contentType: 'application/json' }, callback)",
    });
  }
  const known = new Set([...work.state.done, ...leftIds.filter((id): id is string => !!id)]);
  const lost = answers202.filter((id) => !known.has(id));
  const twice = [...work.state.done].filter((id) => leftIds.includes(id));
  const callCounts = new Map<string, number>();
  for (const c of work.state.calls) callCounts.set(c.id, (callCounts.get(c.id) ?? 0) + 1);
  const repeated = [...callCounts].filter(([id, n]) => n > 1 && id !== failing);
  const unannounced = [...known].filter((id) => !answers202.includes(id));
  if (work.state.notJob) {
    t.fail({
      summary: `Your worker called ${work.state.notJob}: not the job's id and the body the client sent.`,
      expected: 'handle(msg.properties.messageId, JSON.parse(msg.content.toString())), e.g. handle("5f0c…", {"n": 7})',
      saw: work.state.notJob,
      fix: 'Publish req.body with { messageId: id }; in the worker, call handle(msg.properties.messageId, JSON.parse(msg.content.toString())).',
    });
  }
  if (lost.length || twice.length || repeated.length || unannounced.length) {
    t.fail({
      summary: lost.length
        ? `${lost.length} job(s) answered 202 were lost: neither done nor left in the queue.`
        : twice.length || repeated.length
          ? `${twice.length + repeated.length} job(s) were done and are still in the queue (or were handled twice): the next instance does them again.`
          : `${unannounced.length} job(s) were published, but their client never got a 202 with their id.`,
      expected: 'every job answered 202 either done (handle() resolved, and acked) or still in the queue, never both; and every job published announced by a 202',
      saw: `${answers202.length} × 202; ${work.state.done.size} done; ${left.length} left in the queue; lost ${lost.length}, done and left ${twice.length}, handled twice ${repeated.length}, without a 202 ${unannounced.length}`,
      why: lost.length
        ? 'A 202 is a promise. A job is lost when the API answers before its confirm, or when the worker acks it before the work is done (or its channel drops it).'
        : twice.length || repeated.length
          ? "A job whose handle() resolved but whose ack never reached the broker is delivered again: the channel (or the connection) was closed before the acks of the running jobs went out. The broker only forgets a job it got the ack for."
          : 'A request cut off after its job was published leaves the client without an answer: it retries, and the job runs twice.',
      fix: 'shutdown(): server.close(); await channel.cancel(tag); await Promise.all(working); await the server\'s close callback; then close the channels, then the connections.',
      link: t.ui('queues', JOBS),
    });
  }
  const failedBack = failing ? left.find((m) => messageIdOf(m) === failing) : undefined;
  if (failing && !failedBack) {
    t.fail({
      summary: `handle() rejected job ${failing} during the shutdown, but the job is not back in the queue.`,
      expected: 'channel.reject(msg, true): a failed job goes back to the queue, for the next instance',
      saw: `${left.length} jobs left in the queue, ${failing} not among them`,
      why: 'A job that failed is not done. Acked, or rejected without requeue, it is gone.',
      fix: 'work(job).then(() => channel.ack(msg), () => channel.reject(msg, true))',
      link: t.ui('queues', JOBS),
    });
  }
  t.expectRejectsNotNacks('2', `When handle() rejected job ${failing}`);
  if (failing && !workerConn.sent.some((m) => m.name === 'basic.reject' && m.requeue)) {
    t.fail({
      summary: `handle() rejected job ${failing}, and your worker did not answer its message: no reject was sent.`,
      expected: 'channel.reject(msg, true) when handle() rejects: the job goes back to the queue at once',
      saw: 'no basic.reject; the job came back only when the channel closed',
      why: 'A message nobody answers stays with the worker, holding a prefetch slot, until its channel closes. In a running service that is a job stuck for hours, and a prefetch window that shrinks with every failure.',
      fix: 'handle(id, job).then(() => channel.ack(msg), () => channel.reject(msg, true))',
    });
  }
  t.observe(['1', '2', '4c'], `${answers202.length} jobs answered 202: ${work.state.done.size} done, ${left.length} left in the queue for the next instance (${failing} among them, rejected with requeue); none lost, none done twice`);
  if (late.length) t.observe('4b', `${late.length} job(s) arrived after shutdown() began, before the broker confirmed the cancel; shutdown() waited for them`);

  // ---- the order, in the frames ----------------------------------------------------------------
  const publisher = publisherOf();
  const order = (c: AmqpConnection | undefined) => (c ? c.sent : []);
  const idx = (list: SentMethod[], pred: (m: SentMethod) => boolean) => list.findIndex(pred);
  const w = order(workerConn);
  const cancel = idx(w, (m) => m.name === 'basic.cancel');
  const chClose = idx(w, (m) => m.name === 'channel.close' && m.channel === consume!.consume.channel);
  const connClose = idx(w, (m) => m.name === 'connection.close');
  const answersAfterClose = w.filter((m, i) => chClose >= 0 && i > chClose && (m.name === 'basic.ack' || m.name === 'basic.reject' || m.name === 'basic.nack'));
  const acks = w.filter((m) => m.name === 'basic.ack').length;
  const p = order(publisher);
  const pChClose = idx(p, (m) => m.name === 'channel.close');
  const pConnClose = idx(p, (m) => m.name === 'connection.close');
  const lastPublish = p.map((m) => m.name).lastIndexOf('basic.publish');
  const problem =
    cancel < 0
      ? 'no basic.cancel: the consumer was never cancelled'
      : chClose >= 0 && chClose < cancel
        ? 'the worker channel closed before the consumer was cancelled'
        : chClose < 0
          ? 'the worker channel was never closed (channel.close)'
          : answersAfterClose.length
            ? `${answersAfterClose.length} ack(s) sent after the channel closed`
            : acks < work.state.done.size
              ? `${acks} acks for ${work.state.done.size} jobs done`
              : connClose < 0 || pConnClose < 0
                ? 'a connection was never closed with connection.close (its socket was cut instead)'
                : connClose < chClose
                  ? 'the worker connection closed before its channel'
                  : pChClose < 0 || pChClose > pConnClose || pChClose < lastPublish
                    ? 'the publishing connection closed before (or without) its channel'
                    : undefined;
  if (problem) {
    t.fail({
      summary: `shutdown() did not stop in the right order: ${problem}.`,
      expected: 'worker: basic.cancel, the acks of the running jobs, channel.close, connection.close; publisher: its last publish, channel.close, connection.close',
      saw: `worker connection sent: ${summarise(w.slice(Math.max(0, cancel - 2)))}; publishing connection: ${summarise(p.slice(Math.max(0, lastPublish)))}`,
      why: 'Each step makes the next one safe. The cancel stops new jobs; the running ones then ack on an open channel; a channel\'s close-ok comes only after the broker has processed the acks sent before it, where a connection closed at once may drop acks still on their way (and those jobs come back). A socket cut without connection.close is a crash, as far as the broker can tell.',
      fix: 'await work.cancel(tag); await Promise.all(working); await closed (the server); await work.close(); await out.close(); await consumer.close(); await publisher.close();',
    });
  }
  t.observe(['4b', '4e'], `frames: basic.cancel, ${acks} acks, then channel.close and connection.close on the worker connection; channel.close then connection.close on the publishing one`);
  const stillListed = await t.waitFor(
    async () => {
      const ports = a.conns().map((c) => c.socket.localPort);
      const listed = (await t.mgmt.connections(t.vhost)).filter((c) => ports.includes(c.peer_port));
      return listed.length === 0 ? 'gone' : undefined;
    },
    3000,
    100,
  );
  if (!stillListed) t.fail({ summary: 'After shutdown(), the broker still lists connections of your service.', fix: 'await consumer.close() and await publisher.close() at the end of shutdown().', link: t.ui('connections') });
  t.observe('4e', 'the broker lists no connection of your service any more');

  // ---- a second instance: the request in progress ends last ------------------------------------
  const b = await startService(t, 'start(…) for a second instance', async () => undefined);
  started.push(b);
  const slowB = slowUpload(b.port);
  await t.waitFor(() => b.served.some((x) => x.slow), 2000, 5);
  let bEnd: number | undefined;
  t.provoke('4d', 'a second instance, idle but for one request still uploading its body: called shutdown(), and finished the upload 300 ms later');
  const bStopping = t.clock.during('learner', () => Promise.resolve().then(() => b.service.shutdown())).then(
    () => void (bEnd = Date.now()),
    () => void (bEnd = Date.now()),
  );
  await sleep(300);
  const bResolvedEarly = bEnd !== undefined;
  slowB.finish();
  const uploadedB = await Promise.race([slowB.answer, sleep(3000).then(() => ({ error: 'no answer within 3 s' }))]);
  await Promise.race([bStopping, sleep(5000)]);
  expectUploadAnswered(t, uploadedB);
  if (bResolvedEarly) {
    t.fail({
      summary: 'shutdown() resolved while a request was still in progress (its body still uploading).',
      expected: "shutdown() waits for the server's close callback, which comes after the last request in progress has had its answer",
      saw: `shutdown() resolved before the upload finished; the request then got ${'status' in uploadedB ? uploadedB.status : uploadedB.error}`,
      fix: 'const closed = new Promise((resolve) => server.close(() => resolve())); … await closed; before closing the channels.',
    });
  }
  t.observe('4d', 'the second instance waited for the request in progress: it got its 202, and only then did shutdown() resolve');

  // ---- a third instance loses its connections ----------------------------------------------------
  const c = await startService(t, 'start(…) for a third instance', async () => undefined);
  started.push(c);
  const openBefore = t.connectionsOpen();
  await deleteQueueUnderConsumer(t, JOBS, 2);
  if (await t.waitFor(() => t.connectionsOpen() < openBefore, 500, 20)) {
    t.fail({
      summary: `When the broker cancelled your consumer (the checker deleted the queue "${JOBS}"), your connection closed: the consumer callback threw on the null message.`,
      expected: 'the callback returns on null, and the connection stays open',
      saw: `${openBefore} connection(s) open before the deletion, ${t.connectionsOpen()} a moment after`,
      why: 'When its queue is deleted (by an operator, a policy, a failover), the broker cancels the consumer, and amqplib calls your callback one last time with null. Reading msg.content on null throws inside amqplib, which then closes the whole connection.',
      fix: 'Start the consumer callback with: if (msg === null) return;',
    });
  }
  const cut = t.cutConnections('the network fails under the third instance');
  t.provoke([1, 3], `cut the third instance's ${cut} connection(s): amqplib emits 'error' on each`);
  await sleep(50); // an 'error' event nobody listens to ends the process now
  t.observe(3, "your service survived the connection errors (an 'error' listener on each connection)");
  const r = await request(`http://127.0.0.1:${c.port}`, 'POST', '/jobs', { json: { n: -3 }, timeoutMs: 3000 });
  const rError = (() => {
    try {
      return String((JSON.parse(r.text) as { error?: unknown }).error ?? '').trim();
    } catch {
      return '';
    }
  })();
  if (r.status !== 503 || !/^\d+$/.test(r.headers.get('retry-after') ?? '') || !rError) {
    t.fail({
      summary: r.status === 503 ? 'With its connections lost, POST /jobs answered 503, but without a Retry-After (in seconds) or a JSON { error }.' : `With its connections lost, POST /jobs answered ${r.status || r.failure}, not 503.`,
      expected: '503 with Retry-After: <seconds> and a JSON { error }: the job could not be published',
      saw: `${r.status || r.failure}, Retry-After ${r.headers.get('retry-after') ?? '(none)'}: ${r.text.slice(0, 120)}`,
      why: r.status === 202 ? 'Nothing reached the broker: a 202 is a lie.' : 'A 500 says the app is broken; 503 (with Retry-After) says: not now, try again. The closed channel throws when you publish: catch it, as you catch a nack.',
      fix: 'Wrap the publish in a promise that rejects when sendToQueue() throws or the broker nacks, and answer 503 when it rejects.',
    });
  }
  t.observe(1, 'with its connections lost, the third instance answered POST /jobs with 503');
}

/** "basic.ack ×3, channel.close, connection.close" */
function summarise(list: SentMethod[]): string {
  const out: string[] = [];
  for (const m of list) {
    const last = out.at(-1);
    const match = last && /^(\S+)(?: ×(\d+))?$/.exec(last);
    if (match && match[1] === m.name) out[out.length - 1] = `${m.name} ×${Number(match[2] ?? 1) + 1}`;
    else out.push(m.name);
  }
  return out.slice(0, 12).join(', ') || '(nothing)';
}

// The HTTP harness for checks of learners' web apps (chapter 9): start the app the learner's
// factory built, talk real HTTP to it with fetch, and stop it, with its port freed, even when
// the learner's code hangs.
//
// A factory returns the app (an Express app, an Express Router, or any (req, res) listener),
// either bare or as { app, close? }. The harness owns the HTTP server: it listens on 127.0.0.1
// on a port the OS picks (never a fixed one, so checks run side by side), so it can always stop it.
//
//   const app = await startApp(t, 'createApp(deps)', () => t.target.createApp(deps));
//   try {
//     const r = await app.request('POST', '/jobs', { json: { task: 'resize' } });
//     if (r.status !== 202) t.fail({ … });
//   } finally {
//     await app.stop(); // or stopAllApps() for every app this check started
//   }
//
// Two ways to run it:
// - startApp(): in the check's worker thread, beside the check. The learner's AMQP connections
//   are seen as usual (t.connectionsOpen(), t.sent(), t.cutConnections()).
// - spawnApp(): in a child process (node, runner/check/http-app-host.ts), for checks whose lesson
//   is the process dying: kill('SIGKILL') is a real crash (Postgres rolls back the open
//   transaction, the broker closes the connections), signal('SIGTERM') a real deployment's stop.
//   Its connections are not in the worker, so read them from the broker (management API).
//
// Guarantees: request() never hangs (a time-out per request) and never throws for a network
// failure (status 0 and `failure` say what happened). stop() is idempotent and bounded: it stops
// accepting, gives requests in flight `graceMs`, calls the learner's close() for at most
// `closeTimeoutMs`, then destroys every connection left; a child that does not exit in time
// gets SIGKILL. If the check itself is cut short (its time bound), the runner terminates the
// worker thread: that frees the in-process server's port, and the child, whose IPC channel
// closes with the thread, exits (the host listens for 'disconnect').
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import type { CheckContext } from './context.js';
import { mapCompiledPaths } from './source-map.js';
import { ROOT, buildFile } from '../build.mjs';

/** A request listener: an Express app, an Express Router, or a plain (req, res) function. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Express's own Request and Response types are subtypes
export type Handler = (req: any, res: any, next?: any) => unknown;

/** What a factory may return: the handler itself, or the handler with a close() for its resources. */
export type Served = Handler | { app: Handler; close?: () => unknown };

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Sent as JSON, with Content-Type: application/json. */
  json?: unknown;
  /** Sent as it is (give Content-Type in headers). */
  body?: string;
  /** Abandons the request after this long (default 5000 ms): status 0, failure "no answer within …". */
  timeoutMs?: number;
}

export interface HttpReply {
  method: string;
  path: string;
  /** The HTTP status; 0 when no answer came (see failure). */
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, when it is JSON. */
  json: unknown;
  /** How long the request took, in milliseconds. */
  ms: number;
  /** Why there was no answer: "no answer within 5 s", "connection reset (ECONNRESET)", … */
  failure?: string;
}

export interface StopReport {
  /** What the learner's close() did: returned, threw, did not finish in time, or there was none. */
  close: 'ok' | 'threw' | 'hung' | 'none';
  error?: string;
  /** Requests still unanswered when the grace period ended (their connections were destroyed). */
  abandoned: number;
}

export interface StopOptions {
  /** How long requests in flight may take to finish once the server stops accepting (default 2000 ms). */
  graceMs?: number;
  /** How long the learner's close() may take (default 5000 ms). */
  closeTimeoutMs?: number;
}

export interface AppUnderCheck {
  readonly url: string;
  readonly port: number;
  request(method: string, path: string, opts?: RequestOptions): Promise<HttpReply>;
  /** Stops the app (idempotent): the server first, then the learner's close(); see StopOptions. */
  stop(opts?: StopOptions): Promise<StopReport>;
}

export interface InProcessApp extends AppUnderCheck {
  /** The server the harness owns. */
  readonly server: http.Server;
  /** The learner's close(), if the factory returned one. */
  readonly close?: () => unknown;
}

export interface ChildApp extends AppUnderCheck {
  readonly pid: number;
  /** Sends a signal and waits until the process has exited (SIGKILL: a crash, nothing runs after it). */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ChildExit>;
  /** Resolves when the process has exited, however that happened. */
  readonly exited: Promise<ChildExit>;
  /** A crash the host reported (an unhandled error in the learner's code), if any. */
  crash?: string;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const running = new Set<AppUnderCheck>();

/** Stops every app started in this worker and not stopped yet (call it in the check's finally). */
export async function stopAllApps(opts: StopOptions = {}): Promise<void> {
  await Promise.all([...running].map((app) => app.stop(opts).catch(() => undefined)));
}

// ---- in the worker thread ------------------------------------------------------------------

/**
 * Calls the learner's factory through t.call (a throw or a hang becomes a verdict), serves what
 * it returns on a free port of 127.0.0.1, and returns the app under check.
 */
export async function startApp(t: CheckContext<unknown>, label: string, factory: () => Served | Promise<Served>, opts: { timeoutMs?: number } = {}): Promise<InProcessApp> {
  const served = await t.call(label, factory, { timeoutMs: opts.timeoutMs ?? 8000 });
  const { handler, close } = unwrap(t, label, served);
  const server = http.createServer(handler as http.RequestListener);
  await listen(server);
  const port = (server.address() as AddressInfo).port;
  t.log(`served the app of ${label} on http://127.0.0.1:${port}`);
  let stopped: Promise<StopReport> | undefined;
  const app: InProcessApp = {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close,
    request: (method, p, o) => request(`http://127.0.0.1:${port}`, method, p, o),
    stop(o = {}) {
      stopped ??= shutDown(server, close, o).finally(() => running.delete(app));
      return stopped;
    },
  };
  running.add(app);
  return app;
}

/** The handler and close() of what a factory returned; fails with a clear verdict for anything else. */
function unwrap(t: CheckContext<unknown>, label: string, served: Served): { handler: Handler; close?: () => unknown } {
  const found = servedParts(served);
  if (found) return found;
  return t.fail({
    summary: `${label} returned ${describe(served)}, not an Express app.`,
    expected: '{ app, close } where app is what express() returns (or an express.Router())',
    saw: describe(served),
    why: 'The checker serves your app on a port of its own and sends it real HTTP requests. It needs the app itself, not a server already listening, nor a promise of something else.',
    fix: 'Build the app with const app = express(), add your routes, and return { app, close } without calling app.listen().',
  });
}

function servedParts(served: unknown): { handler: Handler; close?: () => unknown } | undefined {
  if (typeof served === 'function') return { handler: asHandler(served as Handler) };
  if (served && typeof served === 'object' && typeof (served as { app?: unknown }).app === 'function') {
    const { app, close } = served as { app: Handler; close?: () => unknown };
    return { handler: asHandler(app), close: typeof close === 'function' ? close.bind(served) : undefined };
  }
  return undefined;
}

/** An Express app serves requests as it is; a Router (no listen()) is mounted on an app of its own. */
function asHandler(fn: Handler): Handler {
  if (typeof (fn as { listen?: unknown }).listen === 'function') return fn;
  if (typeof (fn as { use?: unknown }).use === 'function' && typeof (fn as { stack?: unknown }).stack === 'object') {
    const app = express();
    app.use(fn as unknown as express.Router);
    return app as unknown as Handler;
  }
  return fn;
}

function describe(x: unknown): string {
  if (x === undefined) return 'undefined';
  if (x === null) return 'null';
  if (x instanceof http.Server) return 'an http.Server (already listening?)';
  if (typeof x === 'object') return `an object with keys ${Object.keys(x).join(', ') || '(none)'}`;
  return `a ${typeof x}`;
}

function listen(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stop accepting, let requests in flight finish, close the learner's resources, destroy what is left. */
export async function shutDown(server: http.Server, close: (() => unknown) | undefined, opts: StopOptions = {}): Promise<StopReport> {
  const graceMs = opts.graceMs ?? 2000;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
  const serverClosed = new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
  server.closeIdleConnections();
  let abandoned = 0;
  if ((await race(serverClosed, graceMs)) === 'timeout') {
    abandoned = await new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n ?? 0)));
    server.closeAllConnections();
  }
  const report: StopReport = { close: 'none', abandoned };
  if (close) {
    try {
      const outcome = await race(Promise.resolve().then(close), closeTimeoutMs);
      report.close = outcome === 'timeout' ? 'hung' : 'ok';
    } catch (err) {
      report.close = 'threw';
      report.error = mapCompiledPaths(err instanceof Error ? err.message : String(err));
    }
  }
  server.closeAllConnections();
  await race(serverClosed, 1000);
  return report;
}

function race(p: Promise<unknown>, ms: number): Promise<'done' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  return Promise.race([p.then(() => 'done' as const), timeout]).finally(() => clearTimeout(timer));
}

// ---- talking to it ---------------------------------------------------------------------------

/** One HTTP request with fetch; never throws for a network failure or a time-out (status 0). */
export async function request(base: string, method: string, p: string, opts: RequestOptions = {}): Promise<HttpReply> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const headers: Record<string, string> = { ...opts.headers };
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] ??= 'application/json';
  }
  const started = Date.now();
  const reply = { method, path: p, status: 0, headers: new Headers(), text: '', json: undefined as unknown, ms: 0 };
  try {
    const res = await fetch(new URL(p, base), { method, headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    reply.status = res.status;
    reply.headers = res.headers;
    reply.text = await res.text();
    try {
      reply.json = reply.text ? JSON.parse(reply.text) : undefined;
    } catch {
      reply.json = undefined;
    }
    return { ...reply, ms: Date.now() - started };
  } catch (err) {
    return { ...reply, ms: Date.now() - started, failure: networkFailure(err, timeoutMs) };
  }
}

function networkFailure(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs / 1000} s`;
  const code = e?.cause?.code;
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'the connection was closed before an answer came';
  if (code === 'ECONNREFUSED') return 'nothing listens on the port (connection refused)';
  return e?.cause?.message ?? e?.message ?? String(err);
}

/** A reply in a line, for verdicts: "POST /jobs → 202 (12 ms)" or "POST /jobs → no answer within 5 s". */
export function showReply(r: HttpReply): string {
  return `${r.method} ${r.path} → ${r.status ? `${r.status}` : r.failure} (${r.ms} ms)`;
}

// ---- in a child process ----------------------------------------------------------------------

export interface SpawnOptions {
  /** The exported factory to call, e.g. "createApp". */
  exportName: string;
  /** Its single argument (JSON: URLs, names, numbers). */
  deps: unknown;
  /** The module to import; default: the code under check (t.targetPath). */
  modulePath?: string;
  /** On SIGTERM, the host stops the app as stop() does, then exits 0 (default: Node's default, exit at once). */
  gracefulSigterm?: boolean;
  /** How long the process may take to start and listen (default 10000 ms). */
  startTimeoutMs?: number;
}

/**
 * Runs the factory in a child process (node, the compiled runner/check/http-app-host.ts), serving
 * its app on a free port. Its output goes to the worker's, so the verdict shows its last lines.
 */
export async function spawnApp(t: CheckContext<unknown>, label: string, opts: SpawnOptions): Promise<ChildApp> {
  const host = buildFile(path.join(ROOT, 'runner', 'check', 'http-app-host.ts'));
  const config = { modulePath: opts.modulePath ?? t.targetPath, exportName: opts.exportName, deps: opts.deps, gracefulSigterm: opts.gracefulSigterm ?? false };
  const child: ChildProcess = fork(host, [], {
    env: { ...process.env, WORKBOOK_HTTP_APP: JSON.stringify(config) },
    execArgv: [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stdout?.on('data', (chunk: Buffer) => process.stdout.write(chunk));
  child.stderr?.on('data', (chunk: Buffer) => process.stdout.write(chunk));
  const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let crash: string | undefined;
  child.on('message', (m: HostMessage) => {
    if (m.type === 'crashed') crash = mapCompiledPaths(m.message);
  });
  t.log(`started a process (pid ${child.pid}) that calls ${label} and serves the app`);

  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  const started = await t.clock.during('learner', () =>
    Promise.race([
      new Promise<HostMessage>((resolve) => child.on('message', (m: HostMessage) => (m.type === 'listening' || m.type === 'failed') && resolve(m))),
      exited.then((e): HostMessage => ({ type: 'failed', message: crash ?? `the process exited (${e.signal ?? `code ${e.code}`}) before it served the app` })),
      new Promise<HostMessage>((resolve) => setTimeout(() => resolve({ type: 'failed', message: `${label} did not finish within ${startTimeoutMs / 1000} s`, hung: true }), startTimeoutMs)),
    ]),
  );
  if (started.type !== 'listening') {
    child.kill('SIGKILL');
    await exited;
    const message = mapCompiledPaths(started.type === 'failed' ? started.message : 'no answer');
    return t.fail({
      summary: `${label} failed in its own process: ${message}`,
      why: 'The checker runs your app in a process of its own, so that it can kill it like a crash would. The app never got to serve a request.',
      fix: started.type === 'failed' && started.hung
        ? 'Make sure createApp() resolves: await what you open (connections, tables), and nothing that waits for a message.'
        : 'Run the file on its own (npx tsx …) to see the whole error.',
    });
  }
  const port = started.port;
  const url = `http://127.0.0.1:${port}`;
  t.log(`the process (pid ${child.pid}) serves ${label}'s app on ${url}`);

  let stopped: Promise<StopReport> | undefined;
  const app: ChildApp = {
    url,
    port,
    pid: child.pid!,
    exited,
    get crash() {
      return crash;
    },
    request: (method, p, o) => request(url, method, p, o),
    async kill(signal = 'SIGKILL', timeoutMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      if ((await race(exited, timeoutMs)) === 'timeout') child.kill('SIGKILL');
      const e = await exited;
      running.delete(app);
      return e;
    },
    stop(o = {}) {
      stopped ??= (async (): Promise<StopReport> => {
        const budget = (o.graceMs ?? 2000) + (o.closeTimeoutMs ?? 5000) + 1000;
        if (child.connected && child.exitCode === null) child.send({ type: 'stop', graceMs: o.graceMs, closeTimeoutMs: o.closeTimeoutMs });
        const report = new Promise<StopReport>((resolve) => child.on('message', (m: HostMessage) => m.type === 'stopped' && resolve(m.report)));
        const outcome = await Promise.race([report, exited.then(() => undefined), new Promise<undefined>((r) => setTimeout(r, budget))]);
        if (outcome) await race(exited, 1000); // it exits right after its report
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
        running.delete(app);
        return outcome ?? { close: 'hung', abandoned: 0 };
      })();
      return stopped;
    },
  };
  running.add(app);
  return app;
}

/** Messages from the host process (runner/check/http-app-host.ts). */
export type HostMessage =
  | { type: 'listening'; port: number }
  | { type: 'failed'; message: string; hung?: boolean }
  | { type: 'crashed'; message: string }
  | { type: 'stopped'; report: StopReport };

/** Messages to the host process. */
export type HostCommand = { type: 'stop'; graceMs?: number; closeTimeoutMs?: number };

export { servedParts };

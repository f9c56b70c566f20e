// What the chapter 9 checks share: the shape of the learner's app factory, the HTTP harness
// (runner/check/http-app.ts) put to this chapter's use, a Postgres database per check (the
// capstone's shared cluster), and the broker refusing messages.
//
// Every exercise of the chapter exports a factory, createApp(deps), that opens what the app
// needs and resolves with { app, close }: `app` is an Express app (or an Express Router), which
// the checker serves on a port of its own; close() releases everything createApp() opened.
// The app never calls listen() itself (its "run on its own" block at the bottom of the file does).
import type { GetMessage } from 'amqplib';
import type { Router, Express } from 'express';
import type { CheckContext } from '../../runner/check/context.js';
import { showReply, type AppUnderCheck, type HttpReply } from '../../runner/check/http-app.js';
import { connectionsSince } from '../../runner/check/frames.js';
import { CHECKER, freshDatabase, type CheckDb, type Cleanup } from '../13-capstone/support.js';

export { startApp, spawnApp, stopAllApps, showReply, type AppUnderCheck, type ChildApp, type HttpReply, type InProcessApp } from '../../runner/check/http-app.js';
export { withResources, CHECKER, type CheckDb, type Cleanup } from '../13-capstone/support.js';

// ---- the learner's side (the exercises' types) --------------------------------------------

/** What createApp() gets. Each exercise uses the fields it needs. */
export interface AppDeps {
  /** The broker's amqp URL (the check's vhost). */
  amqpUrl: string;
  /** The queue jobs go to. */
  queue: string;
  /** A Postgres URL, for exercises with a database (9.2, 9.3). */
  databaseUrl?: string;
}

/** What createApp() resolves with. */
export interface ServedApp {
  app: Express | Router;
  close(): Promise<void>;
}

export type AppFactory<D = AppDeps> = (deps: D) => Promise<ServedApp>;

/** An exercise module of this chapter, as a check sees it. */
export interface AppModule<D = AppDeps> {
  createApp: AppFactory<D>;
}

export type Ctx = CheckContext<AppModule<AppDeps>>;

// ---- the database ----------------------------------------------------------------------------

/** A fresh, empty database for this check, dropped at the end (the capstone's shared Postgres). */
export function checkDatabase(defer: (c: Cleanup) => void): Promise<CheckDb> {
  return freshDatabase(defer, 'none');
}

// ---- the broker refusing ---------------------------------------------------------------------

/**
 * Makes the broker refuse (nack) every new message routed to `queue`: a policy with max-length 1
 * and overflow reject-publish. A quorum queue notices it is over its limit only after the fact,
 * and a policy reaches it a moment after it is set: the checker publishes probes (on channels of
 * its own) until one is refused. The probes stay in the queue, which is then over its limit and
 * refuses every publisher. Resolves with how many messages the queue holds (the probes), or
 * false when the broker never refused (the check cannot judge).
 */
export async function refuseNewMessages(t: CheckContext<unknown>, queue: string): Promise<number | false> {
  await t.mgmt.setPolicy(t.vhost, `${queue}-refuse`, { pattern: `^${escapeRegExp(queue)}$`, 'apply-to': 'queues', definition: { 'max-length': 1, overflow: 'reject-publish' } });
  const refused = await t.waitFor(() => t.brokerRefuses(queue), 5000, 10);
  if (refused !== true) return false;
  return t.messageCount(queue);
}

/**
 * Lifts refuseNewMessages(), in the only order that works on RabbitMQ 3.10: first take the
 * messages out while the policy still holds (below its limit, the queue tells the channels it
 * refused that they may publish again; a channel that was refused stays refused when the policy
 * is merely deleted), then delete the policy, and wait until the queue takes a probe again.
 * Resolves with the messages that were not the checker's probes (published by the code under
 * check while the queue was over its limit: there should be none).
 */
export async function acceptMessagesAgain(t: CheckContext<unknown>, queue: string): Promise<GetMessage[]> {
  const taken = await t.takeMessages(queue, 1000);
  await t.mgmt.deletePolicy(t.vhost, `${queue}-refuse`);
  const accepted = await t.waitFor(async () => !(await t.brokerRefuses(queue)), 5000, 10);
  if (!accepted) throw new Error(`the broker still refused messages on "${queue}" after its policy was deleted; the check cannot judge`);
  taken.push(...(await t.takeMessages(queue, 1000)));
  await t.pause(200); // the queue's "go on" reaches the other channels a moment later
  return taken.filter((m) => m.content.toString() !== 'checker probe');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---- replies --------------------------------------------------------------------------------

/** A header's value, or undefined. */
export function header(r: HttpReply, name: string): string | undefined {
  return r.headers.get(name) ?? undefined;
}

/** Retry-After as seconds (delta-seconds, or an HTTP date from now); undefined when missing or invalid. */
export function retryAfterSeconds(r: HttpReply): number | undefined {
  const v = header(r, 'retry-after')?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.round((at - Date.now()) / 1000));
}

/** "POST /jobs → 503 (12 ms), Retry-After: 5, body {…}" for verdicts. */
export function showFull(r: HttpReply): string {
  const parts = [showReply(r)];
  const location = header(r, 'location');
  const retry = header(r, 'retry-after');
  if (location) parts.push(`Location: ${location}`);
  if (retry) parts.push(`Retry-After: ${retry}`);
  if (r.text) parts.push(`body ${r.text.length > 160 ? `${r.text.slice(0, 160)}…` : r.text}`);
  return parts.join(', ');
}

/** What a status usually means here, for a verdict's "saw". */
export function statusHint(r: HttpReply): string {
  if (r.status === 0) return `no answer (${r.failure})`;
  if (r.status === 500) return `500, an error no handler turned into an answer (${firstLine(r.text)})`;
  return `${r.status}`;
}

function firstLine(s: string): string {
  const text = s.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
  return text.length > 120 ? `${text.slice(0, 120)}…` : text || 'no body';
}

/** The job id at the end of a Location header such as /jobs/<id>. */
export function idFromLocation(location: string | undefined): string | undefined {
  if (!location) return undefined;
  const m = /\/jobs\/([^/?#]+)$/.exec(new URL(location, 'http://x').pathname);
  return m ? decodeURIComponent(m[1]!) : undefined;
}

// ---- the broker blocking a connection ---------------------------------------------------------

/**
 * Tells the learner's open AMQP connections that the broker blocked them, as RabbitMQ does
 * during a memory or disk alarm (connection.blocked; amqplib emits 'blocked' with the reason).
 * A real alarm would block every publisher on the broker, other checks included: the checker
 * delivers the frame to this check's connections only, through their sockets. Returns how many.
 */
export function blockConnections(t: CheckContext<unknown>, reason: string): number {
  const reasonBytes = Buffer.from(reason);
  const n = injectFrame(60, Buffer.concat([Buffer.from([reasonBytes.length]), reasonBytes]));
  t.log(`told your ${n === 1 ? 'connection' : `${n} connections`} that the broker blocked ${n === 1 ? 'it' : 'them'} (connection.blocked "${reason}", as during a memory or disk alarm)`);
  return n;
}

/** Lifts blockConnections(): connection.unblocked (amqplib emits 'unblocked'). */
export function unblockConnections(t: CheckContext<unknown>): number {
  const n = injectFrame(61, Buffer.alloc(0));
  t.log(`told your connection${n === 1 ? '' : 's'} that the broker unblocked ${n === 1 ? 'it' : 'them'} (connection.unblocked)`);
  return n;
}

/** A connection-class method frame (channel 0), pushed into the read side of the learner's open AMQP sockets. */
function injectFrame(method: number, args: Buffer): number {
  const payload = Buffer.concat([Buffer.from([0, 10, 0, method]), args]);
  const head = Buffer.alloc(7);
  head[0] = 1; // a method frame
  head.writeUInt16BE(0, 1); // channel 0: the connection itself
  head.writeUInt32BE(payload.length, 3);
  const frame = Buffer.concat([head, payload, Buffer.from([0xce])]);
  const open = connectionsSince().filter((c) => !c.socket.destroyed && !c.socket.closed);
  for (const c of open) c.socket.push(frame);
  return open.length;
}

// ---- Postgres: holding the code under check at a chosen point --------------------------------

/** A table lock the checker holds in a transaction of its own until release() (ROLLBACK). */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Locks `table` in `mode` (e.g. SHARE: INSERT and UPDATE wait, SELECT … FOR UPDATE does not), in
 * a transaction on a connection of the checker's own, so that the code under check stops at the
 * statement that needs the table.
 */
export async function lockTable(t: CheckContext<unknown>, db: CheckDb, table: string, mode: 'SHARE' | 'ACCESS EXCLUSIVE'): Promise<HeldLock> {
  const c = await db.connect();
  await c.query('BEGIN');
  await c.query(`LOCK TABLE ${table} IN ${mode} MODE`);
  t.log(`locked the table "${table}" (${mode} MODE) in a transaction of the checker's own`);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await c.query('ROLLBACK').catch(() => undefined);
      t.log(`released the lock on "${table}"`);
    },
  };
}

/** A database connection of the code under check, as pg_stat_activity shows it. */
export interface Backend {
  pid: number;
  state: string | null;
  waitEventType: string | null;
  query: string;
}

/** The code under check's connections to the check's database (everything but the checker's own). */
export async function learnerBackends(db: CheckDb): Promise<Backend[]> {
  const { rows } = await db.sql.query<{ pid: number; state: string | null; wait_event_type: string | null; query: string }>(
    `SELECT pid, state, wait_event_type, query FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> $1 AND backend_type = 'client backend'`,
    [CHECKER],
  );
  return rows.map((r) => ({ pid: r.pid, state: r.state, waitEventType: r.wait_event_type, query: r.query }));
}

/** The first connection of the code under check seen waiting for a lock on a statement that matches `statement`, within `ms`. */
export async function waitForBlocked(t: CheckContext<unknown>, db: CheckDb, statement: RegExp, ms: number): Promise<Backend | undefined> {
  return t.waitFor(async () => (await learnerBackends(db)).find((b) => b.waitEventType === 'Lock' && statement.test(b.query)), ms, 20);
}

/** Ends a connection of the code under check from the server side (pg_terminate_backend): its open transaction is rolled back. */
export async function terminateBackend(db: CheckDb, pid: number): Promise<void> {
  await db.sql.query('SELECT pg_terminate_backend($1)', [pid]);
}

// ---- contract lines every app of the chapter shares --------------------------------------------

/** Keeps every answer `app` gives from now on in `into` (for expectErrorAnswers). */
export function recordAnswers<A extends { request: AppUnderCheck['request'] }>(app: A, into: HttpReply[]): A {
  const request = app.request;
  (app as { request: AppUnderCheck['request'] }).request = async (...args) => {
    const reply = await request(...args);
    into.push(reply);
    return reply;
  };
  return app;
}

/** Every error answer in `answers` is JSON { error: "…" }, and only a 503 carries Retry-After (a valid one). */
export function expectErrorAnswers(t: CheckContext<unknown>, line: number, answers: HttpReply[]): void {
  const errors = answers.filter((r) => r.status >= 400);
  t.provoke(line, `looked back at the ${errors.length} error answers above (${[...new Set(errors.map((r) => r.status))].join(', ')})`);
  for (const r of errors) {
    const message = (r.json as { error?: unknown } | undefined)?.error;
    if (typeof message !== 'string' || message.trim() === '') {
      t.fail({
        summary: `The error answer ${showReply(r)} has no { error: "…" } body saying what went wrong.`,
        expected: '{ "error": "<what went wrong>" } as JSON, for every 4xx and 5xx',
        saw: showFull(r),
        why: 'A client (or the developer reading its logs) needs to know why it was refused: "send a JSON object", "no such job", "the broker refused the job". One shape for every error lets the client handle them all in one place.',
        fix: 'Throw new HttpError(status, "<what went wrong>") and let the error handler answer res.status(status).json({ error: err.message }).',
      });
    }
    const retry = header(r, 'retry-after');
    if (retry !== undefined && (r.status !== 503 || retryAfterSeconds(r) === undefined)) {
      t.fail({
        summary: `The error answer ${showReply(r)} carries Retry-After: ${retry}${r.status === 503 ? ', which is neither a number of seconds nor a date' : ''}.`,
        expected: 'Retry-After (a number of seconds) on a 503 only',
        saw: showFull(r),
        why: 'Retry-After tells a client when trying again will help. On a 4xx nothing changes by waiting, and a header that is not a number (say "undefined") breaks clients that read it.',
        fix: 'Set Retry-After only for the errors that carry a retryAfter: if (err instanceof HttpError && err.retryAfter) res.set(...)',
      });
    }
  }
  t.observe(line, `each of the ${errors.length} error answers was JSON with an "error" message, and only the 503s had Retry-After`);
}

/**
 * The app must survive losing its connections: cuts its AMQP connection (a network failure) and
 * ends its idle database connections (pg_terminate_backend), then waits a moment. Without an
 * 'error' listener on the connection or the pool, Node ends the process, and the worker reports it.
 */
export async function loseConnections(t: CheckContext<unknown>, db: CheckDb, line: number): Promise<void> {
  const idle = (await learnerBackends(db)).filter((b) => b.state === 'idle');
  t.provoke(line, `cut your app's connection to the broker and ended its ${idle.length} idle database connection(s) (pg_terminate_backend): a network failure, a database restart`);
  t.cutConnections('a network failure');
  for (const b of idle) await terminateBackend(db, b.pid);
  await t.pause(300);
  t.observe(line, "your app's process survived both (its 'error' listeners)");
}

// Helpers for chapter 7's checks: dead letters read back from the broker (their x-death), the
// policy that applies to each queue as the broker has it now, and a queue made to refuse new
// messages (a length limit with reject-publish) and to take them again.
import type { GetMessage, Message } from 'amqplib';
import type { CheckContext } from '../../runner/check/context.js';
import { enc } from '../../runner/broker/management.js';
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type pg from 'pg';
import { connectionsSince } from '../../runner/check/frames.js';

type Ctx = CheckContext<unknown>;

export const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/** Waits `ms` (only where the broker itself needs time to pass, e.g. a TTL running out). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function plural(n: number, word: string): string {
  return `${n} ${n === 1 ? word : /[^aeiou]y$/.test(word) ? `${word.slice(0, -1)}ies` : `${word}s`}`;
}

/** One entry of a dead letter's x-death header, as the broker writes it. */
export interface Death {
  queue?: string;
  reason?: string;
  count?: number;
  exchange?: string;
  'routing-keys'?: string[];
}

/** The newest x-death entry of a message (the broker puts the latest death first), or undefined. */
export function lastDeath(msg: Message): Death | undefined {
  const deaths = msg.properties.headers?.['x-death'] as Death[] | undefined;
  return Array.isArray(deaths) ? deaths[0] : undefined;
}

/** "rejected in \"orders\"" or "no x-death header", for verdicts. */
export function describeDeath(msg: Message): string {
  const death = lastDeath(msg);
  return death ? `x-death: ${death.reason} in "${death.queue}" (count ${death.count})` : 'no x-death header';
}

/** Takes every message from `queue` now (acked: they are gone afterwards). */
export async function takeAll(t: Ctx, queue: string): Promise<GetMessage[]> {
  return t.takeMessages(queue, 1000);
}

/**
 * The policy that applies to each queue of the sandbox right now, by queue name (undefined: none).
 * Read from the queue list without statistics: that field comes from the queue itself, at once,
 * where the statistics (and a queue's own page) show a new policy only a few seconds later.
 */
export async function policiesOfQueues(t: Ctx): Promise<Map<string, string | undefined>> {
  const queues = (await t.mgmt.request<{ name: string; policy?: string | null }[]>('GET', `/queues/${enc(t.vhost)}?disable_stats=true&enable_queue_totals=true`)) ?? [];
  return new Map(queues.map((q) => [q.name, q.policy ?? undefined]));
}

/** A policy as the management API lists it. */
export interface PolicyInfo {
  name: string;
  pattern: string;
  'apply-to': string;
  priority: number;
  definition: Record<string, unknown>;
}

export async function policy(t: Ctx, name: string): Promise<PolicyInfo | undefined> {
  return t.mgmt.request<PolicyInfo>('GET', `/policies/${enc(t.vhost)}/${enc(name)}`);
}

export async function policies(t: Ctx): Promise<PolicyInfo[]> {
  return (await t.mgmt.request<PolicyInfo[]>('GET', `/policies/${enc(t.vhost)}`)) ?? [];
}

const exactly = (queue: string) => `^${queue.replace(/\W/g, '\\$&')}$`;

/**
 * Makes `queue` refuse new messages (the broker nacks them): a length limit of 0 with
 * reject-publish, by a policy of the checker's. A quorum queue takes the message that goes over
 * its limit and refuses only the next ones, so the checker publishes probes until one is refused.
 * Resolves with the probes the queue took (they stay there: taking them would make room again).
 * Skips the check when the policy does not take effect.
 */
export async function refuse(t: Ctx, queue: string, probeId: string): Promise<number> {
  await t.mgmt.setPolicy(t.vhost, `checker-refuses-${queue}`, { pattern: exactly(queue), priority: 99, definition: { 'max-length': 0, overflow: 'reject-publish' } });
  const probe = await t.confirmChannel();
  let taken = 0;
  const refusing = await t.waitFor(
    () => new Promise<boolean>((resolve) => probe.sendToQueue(queue, Buffer.from('checker probe'), { messageId: probeId }, (err) => resolve(!!err || !++taken))),
    3000,
    25,
  );
  await probe.close().catch(() => undefined);
  if (!refusing) t.skip(`the length-limit policy on "${queue}" did not take effect within 3 s; run the check again`);
  return taken;
}

/**
 * Lets `queue` take messages again. The limit is raised, not removed: a quorum queue tells the
 * publishers it refused that they may go on only when it drops below a limit it still has.
 */
export async function accept(t: Ctx, queue: string): Promise<void> {
  await t.mgmt.setPolicy(t.vhost, `checker-refuses-${queue}`, { pattern: exactly(queue), priority: 99, definition: { 'max-length': 1_000_000, overflow: 'reject-publish' } });
}

// ---- exercises 7.4 to 7.6: a database per check, a crash between commit and ack -------------

export type Cleanup = () => Promise<unknown> | unknown;

/** Runs `body` with a list to push cleanups onto; they run in reverse order, errors ignored. */
export async function withResources<T>(body: (defer: (c: Cleanup) => void) => Promise<T>): Promise<T> {
  const cleanups: Cleanup[] = [];
  try {
    return await body((c) => cleanups.push(c));
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* best effort */
      }
    }
  }
}

/** The application_name of the checker's own Postgres connections: every other one is the code under check's. */
export const PG_CHECKER = 'workbook checker';

export interface CheckDb {
  url: string;
  /** The checker's own connection (autocommit). */
  sql: pg.Client;
  /** The backends of the code under check, open now (idle or busy). */
  learnerBackends(): Promise<number>;
  /** Ends every backend of the code under check, as a Postgres restart or an admin would; returns how many. */
  terminateLearnerBackends(): Promise<number>;
}

/**
 * A fresh database of its own on the capstone's Postgres (embedded, or DATABASE_URL's server),
 * dropped at the end, with `setup` (SQL) run in it first.
 */
export async function freshDatabase(defer: (c: Cleanup) => void, setup = ''): Promise<CheckDb> {
  // Loaded here, not at the top: the checks of 7.1 to 7.3 use this file and need no Postgres.
  const [{ default: Pg }, { createDatabase, sharedCluster }] = await Promise.all([import('pg'), import('../../capstone/pg.js')]);
  const cluster = await sharedCluster();
  // Check workers share a process id and a start time: two of them can pick the same name in the same millisecond.
  let db: Awaited<ReturnType<typeof createDatabase>> | undefined;
  for (let attempt = 1; !db; attempt++) {
    try {
      db = await createDatabase(cluster, 'chk');
    } catch (err) {
      if (attempt >= 5 || !/duplicate key value|already exists/.test((err as Error).message)) throw err;
      await pause(5 + Math.random() * 20);
    }
  }
  defer(() => db.drop());
  const sql = new Pg.Client({ connectionString: db.url, application_name: PG_CHECKER });
  sql.on('error', () => undefined);
  await sql.connect();
  defer(() => sql.end());
  if (setup) await sql.query(setup);
  const others = `FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM '${PG_CHECKER}'`;
  return {
    url: db.url,
    sql,
    learnerBackends: async () => Number((await sql.query<{ n: string }>(`SELECT count(*) AS n ${others}`)).rows[0]!.n),
    terminateLearnerBackends: async () => (await sql.query(`SELECT pg_terminate_backend(pid) ${others}`)).rowCount ?? 0,
  };
}

/** Method frames in a chunk a socket writes (whole frames, as amqplib writes them): class and method ids. */
function methodsIn(chunk: Buffer): string[] {
  const found: string[] = [];
  for (let at = 0; at + 7 <= chunk.length; ) {
    const size = chunk.readUInt32BE(at + 3);
    if (chunk[at] === 1 && size >= 4) found.push(`${chunk.readUInt16BE(at + 7)}.${chunk.readUInt16BE(at + 9)}`);
    at += size + 8;
  }
  return found;
}

/**
 * A trap for the moment between a consumer's work and its ack: once armed, the next chunk one
 * of the learner's AMQP connections writes with a basic.ack in it never leaves; its socket is
 * destroyed instead (ECONNRESET), as when the process dies right before its ack. The broker
 * then gives the message back. Install it before the learner's code connects.
 */
export function ackTrap(t: CheckContext<unknown>, defer: (c: Cleanup) => void) {
  const amqpPort = Number(new URL(t.broker.amqpUrl).port || 5672);
  let armed: ((socket: Socket) => void) | undefined;
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket }).socket;
    socket.once('connect', () => {
      if (socket.remotePort !== amqpPort) return;
      const write = socket.write;
      socket.write = function (this: Socket, ...args: unknown[]) {
        const chunk = args[0];
        if (armed && Buffer.isBuffer(chunk) && connectionsSince().some((c) => c.socket === socket) && methodsIn(chunk).includes('60.80')) {
          const cut = armed;
          armed = undefined;
          socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
          cut(socket);
          return true;
        }
        return (write as (...a: unknown[]) => boolean).apply(this, args);
      } as Socket['write'];
    });
  };
  dc.subscribe('net.client.socket', onSocket);
  defer(() => dc.unsubscribe('net.client.socket', onSocket));
  return {
    /** Arms the trap; `onCut` runs at the very moment (synchronously), and the promise resolves once it happened (undefined: not within `ms`). */
    arm<R>(onCut: () => R | Promise<R>, ms: number): Promise<R | undefined> {
      return new Promise<R | undefined>((resolve) => {
        const timer = setTimeout(() => {
          armed = undefined;
          resolve(undefined);
        }, ms);
        armed = () => {
          clearTimeout(timer);
          resolve(onCut());
        };
      });
    },
  };
}


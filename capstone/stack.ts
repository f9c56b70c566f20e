// The pieces `up`, `chaos`, `naive` and the benchmark put together: a database with the
// schema and triggers, a vhost on the workbook's broker, the relay and the receiver as
// child processes (so they can be killed like real ones), a status line, and a wait for
// the bridge to go quiet.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import amqp from 'amqplib';
import pg from 'pg';
import { ROOT, STATE_DIR } from '../runner/paths.js';
import { findBroker } from '../runner/broker/find.js';
import { managementFor } from '../runner/broker/management.js';
import { vhostUrl, type BrokerInfo } from '../runner/broker/types.js';
import { DEAD_LETTER_QUEUE, QUEUE, RETRY_DELAYS_MS, retryQueue } from '../solutions/13-capstone/02-topology.js';
import { createOdooClient, type OdooConfig } from '../solutions/13-capstone/04-odoo-client.js';
import { createDatabase, sharedCluster, type Database } from './pg.js';

export const CAPSTONE_DIR = path.join(STATE_DIR, 'capstone');
export const LOG_DIR = path.join(CAPSTONE_DIR, 'logs');
const UP_FILE = path.join(CAPSTONE_DIR, 'up.json');

export type CodeFrom = 'solutions' | 'exercises';

/** What `up` leaves for `load`, `verify` and `status` in other terminals. */
export interface UpState {
  pid: number;
  from: CodeFrom;
  databaseUrl: string;
  amqpUrl: string;
  managementUrl: string;
  vhost: string;
  odoo: OdooConfig;
  odooAdminUrl?: string;
  /** The relay's and the receiver's pids, for `down` when `up` itself was killed (SIGKILL) and left them running. */
  parts?: Partial<Record<Part['name'], number>>;
}

/** What the running `up` wrote; undefined when no `up` runs. */
export function readUpState(): UpState | undefined {
  const s = readUpFile();
  return s && isAlive(s.pid) ? s : undefined;
}

/** What the last `up` wrote, whether or not it still runs. */
export function readUpFile(): UpState | undefined {
  try {
    return JSON.parse(readFileSync(UP_FILE, 'utf8')) as UpState;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function writeUpState(s: UpState): void {
  mkdirSync(CAPSTONE_DIR, { recursive: true });
  writeFileSync(UP_FILE, JSON.stringify(s, null, 2));
}

export function clearUpState(): void {
  rmSync(UP_FILE, { force: true });
}

/** A new database with the tables, and the triggers from solutions/ or exercises/ (or the naive design's). */
export async function bridgeDatabase(prefix: string, design: 'bridge' | 'naive', from: CodeFrom = 'solutions'): Promise<Database> {
  const cluster = await sharedCluster();
  const db = await createDatabase(cluster, prefix);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    if (design === 'naive') {
      await client.query(readFileSync(path.join(ROOT, 'capstone', 'sql', 'schema.sql'), 'utf8'));
      await client.query(readFileSync(path.join(ROOT, 'capstone', 'sql', 'naive.sql'), 'utf8'));
    } else {
      const mod = (await import(pathToFileURL(path.join(ROOT, from, '13-capstone', '01-outbox.ts')).href)) as {
        installOutbox(db: pg.ClientBase): Promise<void>;
      };
      await mod.installOutbox(client);
    }
  } catch (err) {
    await client.end();
    await db.drop().catch(() => undefined);
    throw err;
  }
  await client.end();
  return db;
}

/** A vhost of our own on the workbook's broker, emptied first when `fresh`. */
export async function bridgeVhost(name: string, fresh: boolean): Promise<{ broker: BrokerInfo; url: string; vhost: string }> {
  const broker = await findBroker();
  const mgmt = managementFor(broker);
  if (broker.classroom) {
    // A classroom account may not create vhosts: the bridge runs in the learner's demo vhost.
    const vhost = broker.classroom.demoVhost;
    if (fresh) await (await import('../runner/classroom/empty.js')).emptyVhost(mgmt, vhost);
    return { broker, url: vhostUrl(broker, vhost), vhost };
  }
  if (fresh) await mgmt.deleteVhost(name);
  await mgmt.createVhost(name, broker.username);
  return { broker, url: vhostUrl(broker, name), vhost: name };
}

export interface Part {
  name: 'relay' | 'receiver';
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** Runs the relay or the receiver (its run-on-its-own block) as a child process. */
export function spawnPart(name: 'relay' | 'receiver', from: CodeFrom, env: Record<string, string>, opts: { quiet?: boolean } = {}): Part {
  const file = path.join(ROOT, from, '13-capstone', name === 'relay' ? '03-relay.ts' : '06-receiver.ts');
  return { name, ...spawnScript(file, env, opts) };
}

/** Runs a part of the original project's naive design as a child process (capstone/naive/part.ts). */
export function spawnNaivePart(name: 'listen' | 'receiver', env: Record<string, string>, opts: { quiet?: boolean } = {}): Omit<Part, 'name'> {
  return spawnScript(path.join(ROOT, 'capstone', 'naive', 'part.ts'), { ...env, NAIVE_PART: name }, opts);
}

function spawnScript(file: string, env: Record<string, string>, opts: { quiet?: boolean }): Omit<Part, 'name'> {
  // CAPSTONE_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof": extra node flags, e.g. to profile.
  const flags = (process.env.CAPSTONE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', file], {
    cwd: ROOT,
    env: { ...process.env, BRIDGE_LOG_DIR: LOG_DIR, FORCE_COLOR: process.stdout.isTTY ? '1' : '0', ...env },
    stdio: opts.quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited };
}

export function partEnv(s: { databaseUrl: string; amqpUrl: string; odoo: OdooConfig }): Record<string, string> {
  return {
    DATABASE_URL: s.databaseUrl,
    RABBITMQ_URL: s.amqpUrl,
    ODOO_URL: s.odoo.url,
    ODOO_DB: s.odoo.db,
    ODOO_USER: s.odoo.user,
    ODOO_API_KEY: s.odoo.apiKey,
  };
}

export interface Snapshot {
  at: number;
  /** Outbox rows ever written (highest id). */
  events: number;
  unpublished: number;
  /** Age of the oldest unpublished row, ms. */
  oldestMs: number;
  queue: number;
  retry: number;
  dead: number;
  contacts: number;
  /** Why Odoo could not be counted (contacts is -1 then). */
  odooProblem?: string;
}

/** One look at every stage of the pipeline. */
export async function snapshot(s: { databaseUrl: string; amqpUrl: string; odoo: OdooConfig }, delays = RETRY_DELAYS_MS): Promise<Snapshot> {
  const db = new pg.Client({ connectionString: s.databaseUrl });
  db.on('error', () => undefined);
  await db.connect();
  let row: { events: string; unpublished: string; oldest_ms: number | null };
  try {
    row = (
      await db.query(
        `SELECT coalesce(max(id), 0) AS events,
                count(*) FILTER (WHERE published_at IS NULL) AS unpublished,
                extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE published_at IS NULL)) * 1000 AS oldest_ms
           FROM outbox`,
      )
    ).rows[0];
  } finally {
    await db.end();
  }
  const counts = await queueCounts(s.amqpUrl, [QUEUE, DEAD_LETTER_QUEUE, ...delays.map(retryQueue)]);
  let contacts = -1;
  let odooProblem: string | undefined;
  try {
    contacts = await createOdooClient({ ...s.odoo, timeoutMs: 3000 }).execute<number>('res.partner', 'search_count', [[['ref', '=like', 'pg:%'], ['active', 'in', [true, false]]]]);
  } catch (err) {
    const kind = (err as { kind?: string }).kind;
    odooProblem = kind === 'fatal' ? 'refuses our credentials' : kind === 'retry' ? 'unreachable' : (err as Error).message;
  }
  return {
    at: Date.now(),
    events: Number(row.events),
    unpublished: Number(row.unpublished),
    oldestMs: Math.round(row.oldest_ms ?? 0),
    queue: counts[QUEUE] ?? 0,
    retry: delays.reduce((n, d) => n + (counts[retryQueue(d)] ?? 0), 0),
    dead: counts[DEAD_LETTER_QUEUE] ?? 0,
    contacts,
    odooProblem,
  };
}

/** Ready messages per queue (exact, over AMQP); a missing queue counts 0. */
export async function queueCounts(amqpUrl: string, queues: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const conn = await amqp.connect(amqpUrl).catch(() => undefined);
  if (!conn) return out;
  conn.on('error', () => undefined);
  try {
    for (const q of queues) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const ok = await ch.checkQueue(q).catch(() => undefined);
      out[q] = ok?.messageCount ?? 0;
      await ch.close().catch(() => undefined);
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return out;
}

/** "events 12000 (+950/s) · outbox 3 unpublished, oldest 0.1 s · queue 40 · retry 0 · dead 5 · Odoo 11040 (+940/s)" */
export function statusLine(now: Snapshot, before?: Snapshot): string {
  const secs = before ? (now.at - before.at) / 1000 : 0;
  const rate = (a: number, b?: number) => (before && secs > 0 && b !== undefined && b >= 0 && a >= 0 ? ` (+${Math.round((a - b) / secs)}/s)` : '');
  return [
    `events ${now.events}${rate(now.events, before?.events)}`,
    `outbox ${now.unpublished} unpublished${now.unpublished ? `, oldest ${(now.oldestMs / 1000).toFixed(1)} s` : ''}`,
    `queue ${now.queue}`,
    `retry ${now.retry}`,
    `dead ${now.dead}`,
    `Odoo ${now.contacts < 0 ? `? (${now.odooProblem ?? 'unreachable'})` : now.contacts}${rate(now.contacts, before?.contacts)}`,
  ].join(' · ');
}

/**
 * Waits until the bridge is quiet: nothing unpublished, nothing in the main or retry
 * queues, and Odoo's count unchanged, three looks in a row.
 */
export async function waitQuiet(s: { databaseUrl: string; amqpUrl: string; odoo: OdooConfig }, timeoutMs: number, onLook?: (snap: Snapshot, prev?: Snapshot) => void, delays = RETRY_DELAYS_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  let prev: Snapshot | undefined;
  while (Date.now() < deadline) {
    const snap = await snapshot(s, delays);
    onLook?.(snap, prev);
    const idle = snap.unpublished === 0 && snap.queue === 0 && snap.retry === 0 && snap.contacts >= 0 && prev?.contacts === snap.contacts && prev?.dead === snap.dead;
    quiet = idle ? quiet + 1 : 0;
    if (quiet >= 3) return true;
    prev = snap;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return false;
}

export function haveExercises(): boolean {
  return existsSync(path.join(ROOT, 'exercises', '13-capstone', '03-relay.ts'));
}

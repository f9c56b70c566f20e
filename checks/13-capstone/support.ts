// What the chapter 13 checks need besides the broker: a Postgres database of their own
// (on the capstone's shared embedded cluster, or DATABASE_URL's server), the Odoo
// stand-in in-process on a free port, and sample events. Candidates for the runner:
// withResources() (cleanups that run whatever happens) is generic.
import type { Channel, Message } from 'amqplib';
import dc from 'node:diagnostics_channel';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import pg from 'pg';
import { readFile } from 'node:fs/promises';
import type { CheckContext } from '../../runner/check/context.js';
import { CheckFailure, CheckSkipped } from '../../runner/check/verdict.js';
import { createDatabase, sharedCluster } from '../../capstone/pg.js';
import { startOdooStandIn, type OdooStandIn, type StandInOptions } from '../../capstone/odoo/server.js';
import type { CustomerEvent } from '../../solutions/13-capstone/02-topology.js';
import type { OdooConfig } from '../../solutions/13-capstone/04-odoo-client.js';

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
export const CHECKER = 'workbook checker';

export interface CheckDb {
  url: string;
  name: string;
  /** The checker's own connection (autocommit). */
  sql: pg.Client;
  /** Another connection, e.g. for a transaction kept open. */
  connect(): Promise<pg.Client>;
}

/**
 * A fresh database. schema "none": empty; "tables": capstone/sql/schema.sql;
 * "reference": the tables and the reference triggers (solutions/13-capstone/01-outbox.sql).
 */
export async function freshDatabase(defer: (c: Cleanup) => void, schema: 'none' | 'tables' | 'reference'): Promise<CheckDb> {
  const cluster = await sharedCluster();
  // Check workers share a process id and a start time, so two of them can pick the same name
  // in the same millisecond: try again a moment later.
  let db: Awaited<ReturnType<typeof createDatabase>> | undefined;
  for (let attempt = 1; !db; attempt++) {
    try {
      db = await createDatabase(cluster, 'chk');
    } catch (err) {
      if (attempt >= 5 || !/duplicate key value|already exists/.test((err as Error).message)) throw err;
      await sleep(5 + Math.random() * 20);
    }
  }
  defer(() => db.drop());
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ connectionString: db.url, application_name: CHECKER });
    c.on('error', () => undefined); // the check may terminate backends on purpose
    await c.connect();
    clients.push(c);
    return c;
  };
  defer(() => Promise.all(clients.map((c) => c.end().catch(() => undefined))));
  const sql = await connect();
  if (schema !== 'none') await sql.query(await readFile(new URL('../../capstone/sql/schema.sql', import.meta.url), 'utf8'));
  if (schema === 'reference') await sql.query(await readFile(new URL('../../solutions/13-capstone/01-outbox.sql', import.meta.url), 'utf8'));
  return { url: db.url, name: db.name, sql, connect };
}

/** The Odoo stand-in on a free port, stopped at the end. */
export async function standIn(defer: (c: Cleanup) => void, opts: StandInOptions = {}): Promise<OdooStandIn & { config: OdooConfig }> {
  const odoo = await startOdooStandIn({ adminPort: false, ...opts });
  defer(() => odoo.stop());
  return Object.assign(odoo, { config: { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey, timeoutMs: 3000 } });
}

let seq = 0;
/** An event as the relay publishes it. */
export function event(key: string, version: number, data: Record<string, unknown> = {}): CustomerEvent {
  return {
    eventId: `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
    entity: 'customer',
    key,
    version,
    data: { id: Number(key), name: `Customer ${key} v${version}`, email: `c${key}@example.com`, city: 'Porto', country: 'Portugal', version, ...data },
    committedAt: new Date().toISOString(),
  };
}

/** Partners the bridge wrote for a customer key (by its ref "pg:<key>"). */
export function partnersOf(odoo: OdooStandIn, key: string): Record<string, unknown>[] {
  return odoo.records('res.partner').filter((p) => p.ref === `pg:${key}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Timers that keep the event loop alive (unref()'d ones do not count). */
export function pendingTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}


/**
 * Runs a step of the checker that the code under check can make fail (a queue it did not
 * declare, a channel the broker closed because of what it left behind): the error becomes
 * a verdict that says which step and why, never a broken check.
 */
export async function checkerStep<R>(t: CheckContext<unknown>, what: string, fn: () => Promise<R>, explain: { why?: string; fix?: string } = {}): Promise<R> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CheckFailure || err instanceof CheckSkipped) throw err;
    const broker = t.lastBrokerError?.message;
    return t.fail({
      summary: `The checker could not ${what}: ${broker ?? (err as Error).message}`,
      why: explain.why ?? 'The checker relies on what your code declared. The broker refused this step, so something your code set up is missing or different.',
      fix: explain.fix ?? 'Compare what your code declares with the contract at the top of the file.',
    });
  }
}

/** The error a promise rejects with, or undefined when it resolves (within `ms`, else 'timeout'). */
export async function rejection(p: () => Promise<unknown>, ms = 5000): Promise<Error | undefined | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([p(), new Promise((_, reject) => (timer = setTimeout(() => reject(TIMEOUT), ms)))]);
    return undefined;
  } catch (err) {
    return err === TIMEOUT ? 'timeout' : (err as Error);
  } finally {
    clearTimeout(timer);
  }
}
const TIMEOUT = new Error('timeout');

/**
 * Takes the messages ready in `queue` (at most `max`; acked, so gone afterwards) with a
 * consumer rather than basic.get: "bridge.customers" has a single active consumer, and a
 * quorum queue with one refuses basic.get (405 RESOURCE_LOCKED). While another consumer is
 * the active one, this one waits: it returns what came within `ms`.
 */
export async function takeReady(t: CheckContext<unknown>, queue: string, max = 1000, ms = 2000): Promise<Message[]> {
  const ch = await t.channel();
  try {
    const want = Math.min((await ch.checkQueue(queue)).messageCount, max);
    if (want === 0) return [];
    await ch.prefetch(want);
    const taken = await firstMessages(ch, queue, want, ms);
    if (taken.length) ch.ack(taken.at(-1)!, true);
    return taken;
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** The first `n` messages a consumer on `ch` receives from `queue` within `ms` (unacked; the consumer is cancelled). */
export async function firstMessages(ch: Channel, queue: string, n: number, ms: number): Promise<Message[]> {
  const got: Message[] = [];
  let enough: () => void = () => undefined;
  const full = new Promise<void>((resolve) => (enough = resolve));
  const { consumerTag } = await ch.consume(queue, (m) => {
    if (m && got.length < n && got.push(m) === n) enough();
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([full, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
  await ch.cancel(consumerTag);
  return got;
}

/** A request as the proxy saw it. */
export interface WireRequest {
  method: string;
  path: string;
  contentType: string;
  body: string;
  /** The JSON-RPC request, when the body parsed. */
  rpc?: { jsonrpc?: unknown; method?: unknown; id?: unknown; params?: { service?: unknown; method?: unknown; args?: unknown[] } };
  /** The answer's status and body, once sent. */
  status?: number;
  answer?: string;
}

/**
 * What the proxy does instead of forwarding as usual: answer with a status and a body, not
 * answer at all ('hang'), forward it late ({ delayMs }: a slow Odoo), or forward and then
 * drop the connection before answering ('lose-answer': Odoo committed, the client never hears of it).
 */
export type Scripted = { status: number; body: string; contentType?: string } | { delayMs: number } | 'hang' | 'lose-answer';

export interface WireProxy {
  /** Base URL of the proxy (hand it to the client instead of Odoo's). */
  url: string;
  requests: WireRequest[];
  /** Answers the next request with `answer` instead of forwarding it. */
  next(answer: Scripted): void;
  /** Answers the next request that `match` picks with `answer` instead of forwarding it. */
  when(match: (r: WireRequest) => boolean, answer: Scripted): void;
  /** Stops (down: connections refused) or starts listening again on the same port. */
  setDown(down: boolean): Promise<void>;
}

/**
 * An HTTP proxy in front of the Odoo stand-in: records what the client sends (the wire is
 * what the check observes), forwards it, and can answer in Odoo's place, the way a proxy or
 * a load balancer does (429, 500, an HTML page with status 200) or not at all (a hang).
 */
export async function wireProxy(defer: (c: Cleanup) => void, target: string): Promise<WireProxy> {
  const requests: WireRequest[] = [];
  const script: { match: (r: WireRequest) => boolean; answer: Scripted }[] = [];
  const sockets = new Set<Socket>();
  const upstream = new URL(target);
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    let rpc: WireRequest['rpc'];
    try {
      rpc = JSON.parse(body);
    } catch {
      rpc = undefined;
    }
    const seen: WireRequest = { method: req.method ?? '', path: req.url ?? '', contentType: String(req.headers['content-type'] ?? ''), body, rpc };
    requests.push(seen);
    const hit = script.findIndex((x) => x.match(seen));
    const answer = hit >= 0 ? script.splice(hit, 1)[0]!.answer : undefined;
    if (answer === 'hang') return; // the socket is destroyed when the check ends
    if (answer && typeof answer === 'object' && 'delayMs' in answer) await new Promise((r) => setTimeout(r, answer.delayMs));
    else if (answer && answer !== 'lose-answer') {
      Object.assign(seen, { status: answer.status, answer: answer.body });
      res.writeHead(answer.status, { 'content-type': answer.contentType ?? 'application/json' });
      return void res.end(answer.body);
    }
    const forward = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => Object.assign(seen, { status: up.statusCode, answer: Buffer.concat(chunks).toString('utf8') }));
      if (answer === 'lose-answer') return void up.on('end', () => res.socket?.destroy());
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.socket?.destroy()); // the stand-in dropped it: so do we
    forward.end(body);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const listen = (port: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
  const port = await listen(0);
  const close = async () => {
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  defer(close);
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    next: (answer) => void script.push({ match: () => true, answer }),
    when: (match, answer) => void script.push({ match, answer }),
    setDown: async (down) => {
      if (down) await close();
      else await listen(port);
    },
  };
}

export interface TcpProxy {
  /** `amqpUrl` with the proxy's host and port instead of the broker's. */
  url: string;
  /** Connections the proxy accepted so far. */
  opened(): number;
  /**
   * The connections open at this moment stop forwarding, both ways: what the client sends
   * never reaches the broker, and nothing comes back (no confirm, no heartbeat). Newer
   * connections pass as usual. Returns how many were frozen.
   */
  freeze(): number;
  /** Ends the frozen connections abruptly, both sides: what they held is never delivered. */
  resetFrozen(): number;
}

/**
 * A TCP proxy in front of the broker, to stop one connection without touching the broker
 * (a broker-wide alarm would block every other check on it). Its sockets to the broker are
 * the code under check's connections, as the checker's socket tracker sees them.
 */
export async function tcpProxy(defer: (c: Cleanup) => void, amqpUrl: string): Promise<TcpProxy> {
  const target = new URL(amqpUrl);
  const pairs = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>();
  let opened = 0;
  const server = net.createServer((client) => {
    opened++;
    const upstream = net.connect(Number(target.port || 5672), target.hostname);
    const pair = { client, upstream, frozen: false };
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
  defer(async () => {
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const p of pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    await closed;
  });
  return {
    url: Object.assign(new URL(amqpUrl), { host: `127.0.0.1:${port}` }).href,
    opened: () => opened,
    freeze() {
      let n = 0;
      for (const p of pairs) {
        if (p.frozen) continue;
        p.client.unpipe(p.upstream);
        p.upstream.unpipe(p.client);
        p.client.pause();
        p.upstream.pause();
        p.frozen = true;
        n++;
      }
      return n;
    },
    resetFrozen() {
      const frozen = [...pairs].filter((p) => p.frozen);
      for (const p of frozen) {
        p.client.resetAndDestroy();
        p.upstream.resetAndDestroy();
      }
      return frozen.length;
    },
  };
}

/**
 * The connection names the code under check announces to the broker (connection_name in the
 * client properties of Connection.StartOk), read from what its sockets send: exact and at
 * once, where the management API lists a new connection seconds later. The checker's own
 * connection ("workbook checker") is left out.
 */
export function announcedNames(defer: (c: Cleanup) => void): () => string[] {
  const names: string[] = [];
  const onSocket = (message: unknown) => {
    // Every write of a socket ends in _write or _writev (amqplib's frames bypass socket.write).
    const socket = (message as { socket: Socket }).socket as Socket & {
      _write: (chunk: Buffer, encoding: string, done: () => void) => void;
      _writev?: (chunks: { chunk: Buffer }[], done: () => void) => void;
    };
    let seen = 0;
    const look = (chunk: unknown) => {
      if (seen >= 8192 || !Buffer.isBuffer(chunk)) return;
      seen += chunk.length;
      const name = connectionNameIn(chunk);
      if (name !== undefined && name !== 'workbook checker') names.push(name);
    };
    const write = socket._write;
    socket._write = function (chunk, encoding, done) {
      look(chunk);
      return write.call(this, chunk, encoding, done);
    };
    const writev = socket._writev;
    if (writev) {
      socket._writev = function (chunks, done) {
        for (const c of chunks) look(c.chunk);
        return writev.call(this, chunks, done);
      };
    }
  };
  dc.subscribe('net.client.socket', onSocket);
  defer(() => dc.unsubscribe('net.client.socket', onSocket));
  return () => [...names];
}

/** In a field table: the short-string key "connection_name", the type S (long string), its length, its text. */
const NAME_KEY = Buffer.concat([Buffer.from([15]), Buffer.from('connection_nameS', 'latin1')]);
function connectionNameIn(frame: Buffer): string | undefined {
  const at = frame.indexOf(NAME_KEY);
  if (at < 0 || at + NAME_KEY.length + 4 > frame.length) return undefined;
  const length = frame.readUInt32BE(at + NAME_KEY.length);
  const start = at + NAME_KEY.length + 4;
  return frame.subarray(start, start + length).toString('utf8');
}

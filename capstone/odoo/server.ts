// An Odoo stand-in that speaks Odoo's external JSON-RPC API the way Odoo 17 does:
//   POST /jsonrpc {"jsonrpc":"2.0","method":"call","params":{"service","method","args"},"id"}
//   service "common": version, login, authenticate          (a wrong key: result false)
//   service "object": execute_kw / execute, after checking uid + password/API key
//                     (a wrong key: error odoo.exceptions.AccessDenied)
// Every answer is HTTP 200, errors included: {"error":{"code":200,"message":"Odoo Server
// Error","data":{"name","debug","message","arguments","context"}}}. Only a body that is
// not JSON gets a 400, as in Odoo.
//
// Faults can be switched at runtime, in-process (standIn.setFaults) or over HTTP on the
// admin port (POST /faults), so a check or the chaos run can make "Odoo" misbehave:
// down (connection refused), slow, a rate of 502s or serialization failures, a field it
// rejects with ValidationError, revoked API keys, and answers lost after the commit.
// There is no "expired session": /jsonrpc keeps none (auth="none", save_session=False in
// Odoo's rpc.py) and checks db, uid and key on every call. Code 100, "Odoo Session
// Expired", comes only from the web client's cookie-session routes (/web/session/…,
// /web/dataset/call_kw), which this stand-in does not serve.
//
// Run it on its own: npm run odoo -- [--port 8069] [--admin-port 8070] [--db workbook] [--host 0.0.0.0] [--api-key …]
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Orm, type RejectRule } from './orm.js';
import {
  AccessDenied,
  DatabaseMissing,
  NameError,
  OdooException,
  PyException,
  PyTypeError,
  SerializationFailure,
  serializeError,
} from './errors.js';

export interface StandInUser {
  login: string;
  password: string;
  /** API keys are 40 hex characters in Odoo; any string works here. */
  apiKey?: string;
  readonly?: boolean;
}

export interface StandInOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Port of the admin endpoint (faults, stats). 0 picks one; false: no admin endpoint. */
  adminPort?: number | false;
  db?: string;
  /** Default: admin / admin with a random API key (see standIn.apiKey). */
  users?: StandInUser[];
  /** One line per request and fault, for the curious. */
  log?: (line: string) => void;
}

export interface Faults {
  /** Refuse connections, as a stopped Odoo does. */
  down: boolean;
  /** Delay before each /jsonrpc answer. */
  slowMs: number;
  /** Share of /jsonrpc requests that fail with `errorKind` (0..1). */
  errorRate: number;
  /** The next N /jsonrpc requests fail with `errorKind`. */
  failNext: number;
  /** bad-gateway: HTTP 502 from the proxy in front; serialization: psycopg2 SerializationFailure (HTTP 200). */
  errorKind: 'bad-gateway' | 'serialization';
  /** Values of this field (matching pattern, when given) raise ValidationError. */
  reject: RejectRule | null;
  /** Every API key is refused (AccessDenied), as after a key was revoked. */
  keysRevoked: boolean;
  /** The next N object calls are carried out and committed, then the connection drops before the answer. */
  dropAfterCommit: number;
}

export const NO_FAULTS: Faults = {
  down: false,
  slowMs: 0,
  errorRate: 0,
  failNext: 0,
  errorKind: 'bad-gateway',
  reject: null,
  keysRevoked: false,
  dropAfterCommit: 0,
};

export interface StandInStats {
  requests: number;
  /** Answers with an `error` member, by data.name. */
  errors: Record<string, number>;
  /** Calls per "service.method" or "model.method". */
  calls: Record<string, number>;
  faultsInjected: number;
}

export interface OdooStandIn {
  /** Base URL, e.g. http://127.0.0.1:8069 (the API is at /jsonrpc). */
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly port: number;
  readonly db: string;
  readonly login: string;
  readonly apiKey: string;
  readonly orm: Orm;
  readonly stats: StandInStats;
  faults(): Faults;
  setFaults(change: Partial<Faults>): Promise<Faults>;
  /** All records of a model (with external ids for res.partner: record.xmlid). */
  records(model: string): Record<string, unknown>[];
  /** Called after every committed call that changed records. */
  onCommit(listener: (changes: { model: string; ids: number[] }[], at: number) => void): () => void;
  stop(): Promise<void>;
}

export const ODOO_VERSION = {
  server_version: '17.0',
  server_version_info: [17, 0, 0, 'final', 0, ''],
  server_serie: '17.0',
  protocol_version: 1,
};

export async function startOdooStandIn(opts: StandInOptions = {}): Promise<OdooStandIn> {
  const db = opts.db ?? 'workbook';
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => undefined);
  const orm = new Orm();
  const users = opts.users ?? [{ login: 'admin', password: 'admin', apiKey: randomBytes(20).toString('hex') }];
  users.forEach((u, i) => {
    const uid = u.login === 'admin' ? 2 : 100 + i;
    orm.addUser({ uid, login: u.login, password: u.password, apiKeys: u.apiKey ? [u.apiKey] : [], readonly: u.readonly, active: true });
  });
  const first = users[0]!;
  let faults: Faults = { ...NO_FAULTS };
  const stats: StandInStats = { requests: 0, errors: {}, calls: {}, faultsInjected: 0 };
  const listeners = new Set<(changes: { model: string; ids: number[] }[], at: number) => void>();
  orm.onCommit = (changes, at) => listeners.forEach((l) => l(changes, at));

  // ---- authentication -------------------------------------------------------

  /** res.users._check_credentials for RPC: the password, or one of the user's API keys. */
  const credentialsOk = (uid: number, secret: unknown) => {
    const u = orm.users.get(uid);
    if (!u || !u.active || typeof secret !== 'string') return false;
    if (u.apiKeys.includes(secret)) return !faults.keysRevoked;
    return secret === u.password && !faults.keysRevoked;
  };
  const authenticate = (dbName: unknown, login: unknown, secret: unknown): number | false => {
    if (dbName !== db) throw DatabaseMissing(String(dbName));
    const u = [...orm.users.values()].find((x) => x.login === login);
    return u && credentialsOk(u.uid, secret) ? u.uid : false;
  };

  // ---- dispatch_rpc ------------------------------------------------------------

  const dispatch = (service: unknown, method: unknown, args: unknown[]): unknown => {
    if (service === 'common') {
      stats.calls[`common.${method}`] = (stats.calls[`common.${method}`] ?? 0) + 1;
      switch (method) {
        case 'version':
          return ODOO_VERSION;
        case 'about':
          return 'See http://openerp.com';
        case 'login':
          return authenticate(args[0], args[1], args[2]);
        case 'authenticate':
          return authenticate(args[0], args[1], args[2]);
        default:
          throw PyException(`Method not found: ${String(method)}`);
      }
    }
    if (service === 'object') {
      if (method !== 'execute' && method !== 'execute_kw') throw NameError(`Method not available ${String(method)}`);
      const [dbName, uidRaw, secret, model, fn, ...rest] = args;
      if (dbName !== db) throw DatabaseMissing(String(dbName));
      const uid = Number(uidRaw) || 0; // Odoo: int(params[1]); false -> 0
      if (!credentialsOk(uid, secret)) throw AccessDenied();
      const callArgs = method === 'execute_kw' ? ((rest[0] as unknown[]) ?? []) : rest;
      const kwargs = method === 'execute_kw' ? ((rest[1] as Record<string, unknown>) ?? {}) : {};
      if (!Array.isArray(callArgs)) throw PyTypeError(`execute_kw() args must be a list, not ${typeof callArgs}`);
      stats.calls[`${String(model)}.${String(fn)}`] = (stats.calls[`${String(model)}.${String(fn)}`] ?? 0) + 1;
      return orm.transaction(() => orm.call(uid, String(model), String(fn), callArgs, kwargs ?? {}));
    }
    if (service === 'db') {
      if (method === 'list') return [db];
      if (method === 'server_version') return ODOO_VERSION.server_version;
      throw PyException(`Method not found: ${String(method)}`);
    }
    throw PyException(`No handler for service ${String(service)}`); // KeyError in Odoo; close enough
  };

  // ---- HTTP ---------------------------------------------------------------------

  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => void handle(req, res));
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const send = (res: http.ServerResponse, status: number, body: string, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/web/login') return send(res, 200, 'Odoo stand-in of rabbitmq-workbook: POST /jsonrpc\n', 'text/plain');
    if (path !== '/jsonrpc' && path !== '/web/webclient/version_info') return send(res, 404, notFoundPage(), 'text/html; charset=utf-8');
    if (req.method !== 'POST') return send(res, 405, methodNotAllowedPage(), 'text/html; charset=utf-8');
    stats.requests++;

    if (faults.slowMs > 0) await new Promise((r) => setTimeout(r, faults.slowMs));
    if (faults.down) return req.socket.destroy(); // went down while we waited
    const injected = faults.failNext > 0 || (faults.errorRate > 0 && Math.random() < faults.errorRate);
    if (injected) {
      if (faults.failNext > 0) faults.failNext--;
      stats.faultsInjected++;
      if (faults.errorKind === 'bad-gateway') {
        log('fault: 502 Bad Gateway');
        return send(res, 502, badGatewayPage(), 'text/html');
      }
    }

    let request: { jsonrpc?: unknown; method?: unknown; params?: Record<string, unknown>; id?: unknown };
    try {
      request = JSON.parse(raw);
      if (!request || typeof request !== 'object' || Array.isArray(request)) throw new Error('not an object');
    } catch {
      return send(res, 400, badRequestPage('Invalid JSON data'), 'text/html; charset=utf-8');
    }
    const id = request.id ?? null;
    const params = request.params ?? {};
    let drop = false;
    let body: Record<string, unknown>;
    try {
      if (injected) throw SerializationFailure(); // errorKind "serialization": after Odoo's own 5 tries
      let result: unknown;
      if (path === '/web/webclient/version_info') {
        result = ODOO_VERSION;
      } else {
        const missing = ['service', 'method', 'args'].filter((k) => !(k in params));
        if (missing.length) throw PyTypeError(`jsonrpc() missing ${missing.length} required positional argument${missing.length > 1 ? 's' : ''}: ${missing.map((m) => `'${m}'`).join(' and ')}`);
        const args = params.args;
        if (!Array.isArray(args)) throw PyTypeError(`dispatch_rpc() args must be a list`);
        result = dispatch(params.service, params.method, args);
        if (params.service === 'object' && faults.dropAfterCommit > 0) {
          faults.dropAfterCommit--;
          stats.faultsInjected++;
          drop = true;
        }
      }
      body = { jsonrpc: '2.0', id, result: result === undefined ? null : result };
    } catch (err) {
      const error = serializeError(err, params.service === 'object' ? 'service/model.py' : 'service/common.py');
      const name = (error.data as { name: string }).name;
      stats.errors[name] = (stats.errors[name] ?? 0) + 1;
      if (!(err instanceof OdooException)) log(`internal error: ${(err as Error).stack}`);
      body = { jsonrpc: '2.0', id, error };
    }
    if (drop) {
      log('fault: committed, then dropped the connection before answering');
      return req.socket.destroy();
    }
    send(res, 200, JSON.stringify(body));
  }

  const listen = (srv: http.Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve((srv.address() as AddressInfo).port);
      });
    });

  const port = await listen(server, opts.port ?? 0);
  const url = `http://${host}:${port}`;

  const setFaults = async (change: Partial<Faults>): Promise<Faults> => {
    const wasDown = faults.down;
    faults = { ...faults, ...change };
    orm.reject = faults.reject;
    if (faults.down && !wasDown) {
      await new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      log('fault: down (connections refused)');
    } else if (!faults.down && wasDown) {
      await listen(server, port);
      log('back up');
    }
    return { ...faults };
  };

  // ---- admin endpoint ----------------------------------------------------------

  let admin: http.Server | undefined;
  let adminUrl: string | undefined;
  if (opts.adminPort !== false) {
    admin = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        try {
          const path = (req.url ?? '/').split('?')[0];
          const query = new URL(req.url ?? '/', 'http://x').searchParams;
          const input = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
          let out: unknown;
          if (path === '/faults' && req.method === 'POST') out = await setFaults(input as Partial<Faults>);
          else if (path === '/faults') out = faults;
          else if (path === '/reset' && req.method === 'POST') out = await setFaults({ ...NO_FAULTS });
          else if (path === '/stats') out = { ...stats, partners: orm.models.get('res.partner')!.records.size };
          else if (path === '/records') out = records(query.get('model') ?? 'res.partner');
          else if (path === '/') out = { url, db, login: first.login, apiKey: first.apiKey, endpoints: ['GET/POST /faults', 'POST /reset', 'GET /stats', 'GET /records?model=res.partner'] };
          else return send(res, 404, JSON.stringify({ error: 'no such admin endpoint' }));
          send(res, 200, JSON.stringify(out, null, 2));
        } catch (err) {
          send(res, 400, JSON.stringify({ error: (err as Error).message }));
        }
      });
    });
    const adminPort = await listen(admin, opts.adminPort ?? 0);
    adminUrl = `http://${host}:${adminPort}`;
  }

  function records(model: string) {
    const m = orm.model(model);
    const xml = new Map<number, string>();
    if (model !== 'ir.model.data') {
      for (const x of orm.models.get('ir.model.data')!.records.values()) if (x.model === model) xml.set(x.res_id as number, x.complete_name as string);
    }
    return [...m.records.values()].map((r) => ({ ...r, xmlid: xml.get(r.id) ?? false }));
  }

  return {
    url,
    adminUrl,
    port,
    db,
    login: first.login,
    apiKey: first.apiKey ?? first.password,
    orm,
    stats,
    faults: () => ({ ...faults }),
    setFaults,
    records,
    onCommit(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all(
        [server, admin].filter((s): s is http.Server => !!s && s.listening).map((s) => new Promise<void>((r) => s.close(() => r()))),
      );
    },
  };
}

function notFoundPage() {
  return '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n';
}
function methodNotAllowedPage() {
  return '<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n';
}
function badRequestPage(description: string) {
  return `<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>${description}</p>\n`;
}
function badGatewayPage() {
  return '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
}

// ---- npm run odoo ----------------------------------------------------------------
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const apiKey = arg('api-key') ?? process.env.ODOO_API_KEY ?? randomBytes(20).toString('hex');
  const odoo = await startOdooStandIn({
    host: arg('host') ?? '127.0.0.1',
    port: Number(arg('port') ?? 8069),
    adminPort: Number(arg('admin-port') ?? 8070),
    db: arg('db') ?? process.env.ODOO_DB ?? 'workbook',
    users: [{ login: process.env.ODOO_USER ?? 'admin', password: 'admin', apiKey }],
    log: (line) => console.log(`${new Date().toISOString().slice(11, 23)} ${line}`),
  });
  console.log(`Odoo stand-in (speaks Odoo 17's JSON-RPC) at ${odoo.url}/jsonrpc`);
  console.log(`  ODOO_URL=${odoo.url} ODOO_DB=${odoo.db} ODOO_USER=${odoo.login} ODOO_API_KEY=${odoo.apiKey}`);
  console.log(`  faults: curl -s ${odoo.adminUrl}/faults -d '{"down":true}'   (see ${odoo.adminUrl}/)`);
  process.once('SIGINT', () => void odoo.stop());
  process.once('SIGTERM', () => void odoo.stop());
}

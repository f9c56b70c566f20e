// Exercise 13.4: an Odoo client that reads the answer's BODY: HTTP 200 is not success
// Text: chapters/13-capstone/README.md   Check: npm run check 13.4   Hint: npm run hint 13.4
//
// Odoo's external API is JSON-RPC over HTTP: POST {url}/jsonrpc with
//   {"jsonrpc":"2.0","method":"call","params":{"service":…,"method":…,"args":[…]},"id":n}
// and it answers HTTP 200 even when it refuses: the body then has an `error` member
// ({code, message, data: {name, message, arguments, debug}}) instead of `result`.
// The original project acked on HTTP 200, and so lost every record Odoo rejected.
// createOdooClient(config) must return a client that
//   1. sends every call as such a POST to <config.url>/jsonrpc (config.url with or without a
//      trailing '/'), with content-type application/json,
//   2. authenticate() calls service "common", method "authenticate" with [db, user, apiKey, {}]
//      and returns the uid; Odoo answers `false` (not an error) when it refuses the key: throw
//      a 'fatal' OdooError then,
//   3. execute(model, method, args, kwargs = {}) calls service "object", method "execute_kw" with
//      [db, uid, apiKey, model, method, args, kwargs] and returns `result`; it authenticates
//      before its first call only, and never again because a call failed: /jsonrpc keeps no
//      session, Odoo checks db, uid and key on every call, so the uid stays valid,
//   4. throws, for every failure, an OdooError(message, kind, odooName): odooName is Odoo's
//      exception (error.data.name) or what failed before Odoo answered ('network', 'http.502'),
//      the message says what happened (Odoo's message, the HTTP status, the network error's
//      code), and kind tells the receiver what to do (classify(name) decides for Odoo's errors):
//      a. 'retry': a network error, a timeout (config.timeoutMs), HTTP 5xx or 429, a body that
//         is not JSON, database errors (psycopg2.*), anything unknown,
//      b. 'reject': the record itself is wrong: ValidationError, UserError, MissingError,
//         AccessError, and Python's ValueError, TypeError, KeyError,
//      c. 'fatal': AccessDenied, or an HTTP status other than 200 that is neither 5xx nor 429
//         (a 404: config.url is wrong). No retry will help.
import { pathToFileURL } from 'node:url';

export type FailureKind = 'retry' | 'reject' | 'fatal';

export class OdooError extends Error {
  constructor(
    message: string,
    /** What the caller should do about it. */
    readonly kind: FailureKind,
    /** Odoo's exception (error.data.name), or "network", "http.502"... */
    readonly odooName: string,
  ) {
    super(message);
    this.name = 'OdooError';
  }
}

export interface OdooConfig {
  /** Base URL, e.g. http://localhost:8069 */
  url: string;
  db: string;
  user: string;
  /** An API key (Preferences > Account Security), used in place of the password. */
  apiKey: string;
  timeoutMs?: number;
}

export interface OdooClient {
  authenticate(): Promise<number>;
  execute<T = unknown>(model: string, method: string, args: unknown[], kwargs?: Record<string, unknown>): Promise<T>;
}

const REJECTED = new Set([
  'odoo.exceptions.ValidationError',
  'odoo.exceptions.UserError',
  'odoo.exceptions.MissingError',
  'odoo.exceptions.AccessError',
  'builtins.ValueError',
  'builtins.TypeError',
  'builtins.KeyError',
]);

/** What an Odoo error means for the message that caused it. */
export function classify(name: string): FailureKind {
  // TODO 1: 'odoo.exceptions.AccessDenied' -> 'fatal'; a name in REJECTED -> 'reject';
  //         anything else (psycopg2.* database errors, the unknown) -> 'retry'.
  throw new Error(`TODO: classify ${name} in exercises/13-capstone/04-odoo-client.ts`);
}

export function createOdooClient(config: OdooConfig): OdooClient {
  const endpoint = `${config.url.replace(/\/+$/, '')}/jsonrpc`;
  const timeoutMs = config.timeoutMs ?? 30_000;
  let uid: number | undefined;

  async function rpc(service: string, method: string, args: unknown[]): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        // One call per HTTP request: the id only has to be there.
        body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service, method, args }, id: 1 }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new OdooError(`Odoo is unreachable at ${endpoint} (${cause})`, 'retry', 'network');
    }
    // TODO 2: HTTP 5xx or 429 -> throw new OdooError(…, 'retry', `http.${res.status}`);
    //         any other status than 200 -> 'fatal' (a wrong URL: no retry will help).
    // TODO 3: parse the JSON body (not JSON -> 'retry'). If it has an `error` member, throw
    //         new OdooError(`${name}: ${message}`, classify(name), name) with
    //         name = error.data.name and message = error.data.message (an error without `data`:
    //         name 'unknown', message = error.message). HTTP 200 is NOT success.
    const body = (await res.json()) as { result?: unknown };
    return body.result;
  }

  async function authenticate(): Promise<number> {
    const result = await rpc('common', 'authenticate', [config.db, config.user, config.apiKey, {}]);
    // TODO 4: Odoo answers `false` (not an error) when it refuses the key: throw a 'fatal'
    //         OdooError then. Otherwise keep the uid for execute() and return it.
    uid = result as number;
    return uid;
  }

  return {
    authenticate,
    async execute<T>(model: string, method: string, args: unknown[], kwargs: Record<string, unknown> = {}): Promise<T> {
      // One login for the client's life: /jsonrpc has no session to expire, it checks the key on
      // every call (a revoked key is AccessDenied on the next one).
      const id = uid ?? (await authenticate());
      return (await rpc('object', 'execute_kw', [config.db, id, config.apiKey, model, method, args, kwargs])) as T;
    },
  };
}

// On its own: ODOO_URL=… ODOO_DB=… ODOO_USER=… ODOO_API_KEY=… npx tsx exercises/13-capstone/04-odoo-client.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const odoo = createOdooClient({
    url: process.env.ODOO_URL ?? 'http://localhost:8069',
    db: process.env.ODOO_DB ?? 'workbook',
    user: process.env.ODOO_USER ?? 'admin',
    apiKey: process.env.ODOO_API_KEY ?? 'admin',
  });
  console.log(`uid ${await odoo.authenticate()}`);
  console.log(await odoo.execute('res.partner', 'search_read', [[]], { fields: ['name'], limit: 5 }));
}

// Known-wrong 13.4: treats AccessDenied like any other error, as a reason to retry.
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
export function classify(name: string, code?: number): FailureKind {
  if (code === 100 || name === 'odoo.http.SessionExpiredException') return 'retry';
  if (REJECTED.has(name)) return 'reject';
  return 'retry'; // psycopg2.* (serialization failures, a restarting database) and the unknown: try later
}

export function createOdooClient(config: OdooConfig): OdooClient {
  const endpoint = `${config.url.replace(/\/+$/, '')}/jsonrpc`;
  const timeoutMs = config.timeoutMs ?? 30_000;
  let uid: number | undefined;
  let seq = 0;

  async function rpc(service: string, method: string, args: unknown[]): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service, method, args }, id: ++seq }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new OdooError(`Odoo is unreachable at ${endpoint} (${cause})`, 'retry', 'network');
    }
    if (res.status >= 500 || res.status === 429) {
      await res.body?.cancel();
      throw new OdooError(`Odoo answered HTTP ${res.status} ${res.statusText}`, 'retry', `http.${res.status}`);
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new OdooError(`HTTP ${res.status} from ${endpoint}: is ODOO_URL right?`, 'fatal', `http.${res.status}`);
    }
    let body: { result?: unknown; error?: { code?: number; message?: string; data?: { name?: string; message?: string } } };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      throw new OdooError(`Odoo answered HTTP 200 with a body that is not JSON`, 'retry', 'http.invalid-body');
    }
    // HTTP 200 says nothing: Odoo reports its refusals in the body.
    if (body.error) {
      const name = body.error.data?.name ?? 'unknown';
      const message = body.error.data?.message ?? body.error.message ?? 'no message';
      throw new OdooError(`${name}: ${message}`, classify(name, body.error.code), name);
    }
    return body.result;
  }

  async function authenticate(): Promise<number> {
    const result = await rpc('common', 'authenticate', [config.db, config.user, config.apiKey, {}]);
    if (typeof result !== 'number' || result <= 0) {
      throw new OdooError(`Odoo refused the login "${config.user}" on database "${config.db}" with this API key`, 'fatal', 'odoo.exceptions.AccessDenied');
    }
    uid = result;
    return result;
  }

  return {
    authenticate,
    async execute<T>(model: string, method: string, args: unknown[], kwargs: Record<string, unknown> = {}): Promise<T> {
      const id = uid ?? (await authenticate());
      try {
        return (await rpc('object', 'execute_kw', [config.db, id, config.apiKey, model, method, args, kwargs])) as T;
      } catch (err) {
        if (err instanceof OdooError && err.odooName === 'odoo.http.SessionExpiredException') uid = undefined; // log in again next time
        throw err;
      }
    },
  };
}

// A small client for the RabbitMQ management HTTP API (https://www.rabbitmq.com/docs/http-api-reference).
// Only the calls the workbook needs; every path segment is URL-encoded ("/" is %2F).
import http from 'node:http';
import https from 'node:https';
import type { BrokerInfo } from './types.js';
export interface QueueInfo {
  name: string;
  vhost: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive: boolean;
  type?: string; // "classic" | "quorum" | "stream"
  arguments: Record<string, unknown>;
  messages?: number;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
  consumer_details?: ConsumerInfo[];
  policy?: string;
  effective_policy_definition?: Record<string, unknown>;
}

export interface ConsumerInfo {
  consumer_tag: string;
  ack_required: boolean;
  prefetch_count: number;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  queue: { name: string; vhost: string };
  channel_details: { connection_name: string; name: string; number: number; peer_port: number };
}

export interface BindingInfo {
  source: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: Record<string, unknown>;
  vhost: string;
}

export interface ExchangeInfo {
  name: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments: Record<string, unknown>;
}

export interface ConnectionInfo {
  name: string;
  vhost: string;
  user: string;
  peer_port: number;
  peer_host: string;
  timeout?: number; // negotiated heartbeat, seconds
  client_properties?: Record<string, unknown>;
  channels?: number;
}

export class ManagementError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

export class ManagementClient {
  private readonly base: string;
  private readonly auth: string;

  constructor(readonly url: string, username: string, password: string) {
    this.base = url.replace(/\/+$/, '');
    this.auth = 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
  }

  /**
   * Raw request. Returns undefined for 404 on GET so callers can say "does not exist".
   * node:http, not fetch: fetch loads undici, about 0.1 s of CPU in every check worker.
   */
  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T | undefined> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let res: { status: number; text: string };
    try {
      res = await send(`${this.base}/api${path}`, method, { authorization: this.auth, 'content-type': 'application/json', ...headers }, payload);
    } catch (err) {
      const cause = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ManagementError(`management API at ${this.base} is unreachable (${cause})`);
    }
    if (res.status === 404 && method === 'GET') return undefined;
    if (res.status === 401) throw new ManagementError(`management API at ${this.base} refused the credentials (401)`, 401);
    if (res.status < 200 || res.status >= 300) {
      throw new ManagementError(`${method} ${path} failed: ${res.status} ${res.text}`.trim(), res.status);
    }
    return (res.text ? JSON.parse(res.text) : undefined) as T;
  }

  private get<T>(path: string) {
    return this.request<T>('GET', path);
  }

  overview() {
    return this.get<{ rabbitmq_version: string; management_version: string; cluster_name: string; node: string }>('/overview');
  }

  async createVhost(vhost: string, user: string, opts: { defaultQueueType?: string } = {}) {
    await this.request('PUT', `/vhosts/${enc(vhost)}`, opts.defaultQueueType ? { default_queue_type: opts.defaultQueueType } : {});
    await this.request('PUT', `/permissions/${enc(vhost)}/${enc(user)}`, { configure: '.*', write: '.*', read: '.*' });
  }

  async deleteVhost(vhost: string) {
    await this.request('DELETE', `/vhosts/${enc(vhost)}`).catch((err: ManagementError) => {
      if (err.status !== 404) throw err;
    });
  }

  vhosts() {
    return this.get<{ name: string }[]>('/vhosts').then((v) => v ?? []);
  }

  queue(vhost: string, name: string) {
    return this.get<QueueInfo>(`/queues/${enc(vhost)}/${enc(name)}`);
  }

  queues(vhost: string) {
    return this.get<QueueInfo[]>(`/queues/${enc(vhost)}`).then((q) => q ?? []);
  }

  deleteQueue(vhost: string, name: string) {
    return this.request('DELETE', `/queues/${enc(vhost)}/${enc(name)}`).catch(ignore404);
  }

  exchange(vhost: string, name: string) {
    return this.get<ExchangeInfo>(`/exchanges/${enc(vhost)}/${enc(name)}`);
  }

  exchanges(vhost: string) {
    return this.get<ExchangeInfo[]>(`/exchanges/${enc(vhost)}`).then((e) => e ?? []);
  }

  deleteExchange(vhost: string, name: string) {
    return this.request('DELETE', `/exchanges/${enc(vhost)}/${enc(name)}`).catch(ignore404);
  }

  bindings(vhost: string) {
    return this.get<BindingInfo[]>(`/bindings/${enc(vhost)}`).then((b) => b ?? []);
  }

  consumers(vhost: string) {
    return this.get<ConsumerInfo[]>(`/consumers/${enc(vhost)}`).then((c) => c ?? []);
  }

  connections(vhost?: string) {
    const path = vhost === undefined ? '/connections' : `/vhosts/${enc(vhost)}/connections`;
    return this.get<ConnectionInfo[]>(path).then((c) => c ?? []);
  }

  /** Force-closes a client connection; the client sees CONNECTION_FORCED with this reason. False when it was not there. */
  closeConnection(name: string, reason: string): Promise<boolean> {
    return this.request('DELETE', `/connections/${enc(name)}`, undefined, { 'x-reason': reason }).then(
      () => true,
      (err: ManagementError) => {
        if (err.status === 404) return false;
        throw err;
      },
    );
  }

  setPolicy(vhost: string, name: string, policy: { pattern: string; definition: Record<string, unknown>; 'apply-to'?: string; priority?: number }) {
    return this.request('PUT', `/policies/${enc(vhost)}/${enc(name)}`, { 'apply-to': 'queues', priority: 0, ...policy });
  }

  deletePolicy(vhost: string, name: string) {
    return this.request('DELETE', `/policies/${enc(vhost)}/${enc(name)}`).catch(ignore404);
  }
}

/** One HTTP(S) request with a 5 s limit; resolves with the status and the body as text. */
function send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
  const lib = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) }, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out after 5 s'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

/** The management API client for a broker the runner found. */
export function managementFor(broker: BrokerInfo): ManagementClient {
  return new ManagementClient(broker.managementUrl, broker.username, broker.password);
}

export function enc(segment: string): string {
  return encodeURIComponent(segment);
}

function ignore404(err: ManagementError) {
  if (err.status !== 404) throw err;
  return undefined;
}

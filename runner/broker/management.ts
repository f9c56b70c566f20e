// A small client for the RabbitMQ management HTTP API (https://www.rabbitmq.com/docs/http-api-reference).
// Only the calls the workbook needs; every path segment is URL-encoded ("/" is %2F).
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

  /** Raw request. Returns undefined for 404 on GET so callers can say "does not exist". */
  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T | undefined> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/api${path}`, {
        method,
        headers: { authorization: this.auth, 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new ManagementError(`management API at ${this.base} is unreachable (${cause})`);
    }
    if (res.status === 404 && method === 'GET') return undefined;
    if (res.status === 401) throw new ManagementError(`management API at ${this.base} refused the credentials (401)`, 401);
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new ManagementError(`${method} ${path} failed: ${res.status} ${text}`.trim(), res.status);
    }
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
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

export function enc(segment: string): string {
  return encodeURIComponent(segment);
}

function ignore404(err: ManagementError) {
  if (err.status !== 404) throw err;
  return undefined;
}

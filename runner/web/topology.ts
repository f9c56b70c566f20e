// What a vhost holds, as a graph for the web reader's diagram: exchanges and queues are the
// nodes; bindings, dead-letter routes and alternate exchanges are the edges. Read from the
// management API; the graph itself is built by a pure function, so it can be tested on data.
import { enc, type BindingInfo, type ExchangeInfo, type ManagementClient, type QueueInfo } from '../broker/management.js';

export interface PolicyInfo {
  name: string;
  pattern: string;
  'apply-to': 'queues' | 'exchanges' | 'all' | string;
  priority: number;
  definition: Record<string, unknown>;
}

export interface TopologyNode {
  /** "x:" + an exchange's name, "q:" + a queue's name. */
  id: string;
  kind: 'exchange' | 'queue' | 'missing';
  name: string;
  /** Lines under the name: the type, the depth, consumers, the policy. */
  detail: string[];
}

export interface TopologyEdge {
  from: string;
  to: string;
  kind: 'binding' | 'dead-letter' | 'alternate';
  label: string;
}

export interface QueueRow {
  name: string;
  type: string;
  ready: number;
  unacked: number;
  consumers: number;
  policy?: string;
}

export interface Topology {
  vhost: string;
  nodes: TopologyNode[];
  edges: TopologyEdge[];
  queues: QueueRow[];
}

export interface RawTopology {
  vhost: string;
  exchanges: ExchangeInfo[];
  queues: QueueInfo[];
  bindings: BindingInfo[];
  policies: PolicyInfo[];
}

/** Everything the diagram needs from one vhost: four management API calls, made together. */
export async function readRawTopology(mgmt: ManagementClient, vhost: string): Promise<RawTopology> {
  const [exchanges, queues, bindings, policies] = await Promise.all([
    mgmt.exchanges(vhost),
    mgmt.queues(vhost),
    mgmt.bindings(vhost),
    mgmt.request<PolicyInfo[]>('GET', `/policies/${enc(vhost)}`).then((p) => p ?? []),
  ]);
  return { vhost, exchanges, queues, bindings, policies };
}

const exchangeId = (name: string) => `x:${name}`;
const queueId = (name: string) => `q:${name}`;
const quote = (key: string) => JSON.stringify(key);

/**
 * The graph of a vhost. The default exchange ("") and its implicit binding to every queue are
 * left out (they would connect everything to one box); so are the `amq.*` exchanges nothing uses.
 */
export function buildTopology(raw: RawTopology): Topology {
  const nodes = new Map<string, TopologyNode>();
  const edges: TopologyEdge[] = [];
  const exchanges = new Map(raw.exchanges.map((e) => [e.name, e]));
  const queueNames = new Set(raw.queues.map((q) => q.name));
  const used = new Set<string>();

  const exchangeNode = (name: string, why?: string) => {
    const e = exchanges.get(name);
    if (e) return exchangeId(name);
    // A dead-letter or alternate exchange that was never declared: worth seeing, messages sent there are dropped.
    nodes.set(exchangeId(name), { id: exchangeId(name), kind: 'missing', name, detail: ['does not exist', why ?? ''].filter(Boolean) });
    return exchangeId(name);
  };

  for (const b of raw.bindings) {
    if (b.source === '') continue;
    used.add(b.source);
    if (b.destination_type === 'exchange') used.add(b.destination);
    const to = b.destination_type === 'queue' ? queueId(b.destination) : exchangeId(b.destination);
    edges.push({ from: exchangeId(b.source), to, kind: 'binding', label: bindingLabel(b, exchanges.get(b.source)?.type) });
  }

  for (const e of raw.exchanges) {
    const { value: ae, from } = setting(e.arguments, 'alternate-exchange', policyFor(raw.policies, e.name, 'exchanges'));
    if (typeof ae !== 'string' || !ae) continue;
    used.add(e.name);
    used.add(ae);
    edges.push({ from: exchangeId(e.name), to: exchangeNode(ae, 'unroutable messages are dropped'), kind: 'alternate', label: `unroutable (${from})` });
  }

  const queues: QueueRow[] = [];
  for (const q of raw.queues) {
    const row: QueueRow = {
      name: q.name,
      type: q.type ?? 'classic',
      ready: q.messages_ready ?? 0,
      unacked: q.messages_unacknowledged ?? 0,
      consumers: q.consumers ?? 0,
      ...(q.policy ? { policy: q.policy } : {}),
    };
    queues.push(row);
    const detail = [`${row.type} · ready ${row.ready} · unacked ${row.unacked}`, `consumers ${row.consumers}${row.policy ? ` · policy ${row.policy}` : ''}`];
    nodes.set(queueId(q.name), { id: queueId(q.name), kind: 'queue', name: q.name, detail });

    // Queue arguments win over a policy, key by key (RabbitMQ's rule for dead-lettering).
    const policy = q.effective_policy_definition ?? {};
    const dlx = setting(q.arguments, 'dead-letter-exchange', policy);
    if (typeof dlx.value !== 'string') continue;
    const dlrk = setting(q.arguments, 'dead-letter-routing-key', policy);
    const key = typeof dlrk.value === 'string' ? ` key ${quote(dlrk.value)}` : '';
    const via = dlx.from === 'policy' && q.policy ? `policy ${q.policy}` : dlx.from;
    if (dlx.value === '') {
      // The default exchange delivers to the queue named by the routing key.
      const target = typeof dlrk.value === 'string' && queueNames.has(dlrk.value) ? queueId(dlrk.value) : exchangeNode('(default exchange)');
      edges.push({ from: queueId(q.name), to: target, kind: 'dead-letter', label: `dead letters (${via}) via the default exchange${key}` });
    } else {
      used.add(dlx.value);
      edges.push({ from: queueId(q.name), to: exchangeNode(dlx.value, 'dead letters are dropped'), kind: 'dead-letter', label: `dead letters (${via})${key}` });
    }
  }

  for (const e of raw.exchanges) {
    if (e.name === '' || (e.name.startsWith('amq.') && !used.has(e.name))) continue;
    const detail = [[e.type, e.durable ? '' : 'transient', e.internal ? 'internal' : ''].filter(Boolean).join(' · ')];
    nodes.set(exchangeId(e.name), { id: exchangeId(e.name), kind: 'exchange', name: e.name, detail });
  }
  // A binding from or to an exchange that is not listed (deleted meanwhile) still gets a box.
  for (const edge of edges) {
    for (const id of [edge.from, edge.to]) {
      if (nodes.has(id)) continue;
      if (id.startsWith('q:')) nodes.set(id, { id, kind: 'missing', name: id.slice(2), detail: ['queue gone'] });
      else exchangeNode(id.slice(2));
    }
  }
  return { vhost: raw.vhost, nodes: [...nodes.values()], edges, queues };
}

function bindingLabel(b: BindingInfo, type: string | undefined): string {
  if (type === 'headers') {
    const args = Object.entries(b.arguments ?? {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
    return args.length ? args.join(', ') : 'headers: any message';
  }
  if (type === 'fanout') return ''; // a fanout exchange ignores the key: showing one would mislead
  return quote(b.routing_key);
}

/** A setting from an `x-` argument, or else from a policy definition; and where it came from. */
function setting(args: Record<string, unknown> | undefined, key: string, policy: Record<string, unknown> | undefined): { value: unknown; from: 'argument' | 'policy' } {
  const arg = args?.[`x-${key}`] ?? args?.[key];
  if (arg !== undefined) return { value: arg, from: 'argument' };
  return { value: policy?.[key], from: 'policy' };
}

/** The definition of the policy that applies to an object: RabbitMQ picks the matching policy of highest priority. */
export function policyFor(policies: PolicyInfo[], name: string, kind: 'queues' | 'exchanges'): Record<string, unknown> | undefined {
  const matching = policies.filter((p) => (p['apply-to'] === kind || p['apply-to'] === 'all') && safeMatch(p.pattern, name));
  matching.sort((a, b) => b.priority - a.priority);
  return matching[0]?.definition;
}

function safeMatch(pattern: string, name: string): boolean {
  try {
    return new RegExp(pattern).test(name);
  } catch {
    return false; // an Erlang regex JavaScript cannot read: treated as matching nothing
  }
}

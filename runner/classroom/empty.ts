// Empties a vhost without deleting it: a learner may not create vhosts, so the same ones are
// used again and again. Removes what a check or a demo can leave: connections, queues,
// exchanges (not the default ones every vhost has), bindings between the default exchanges,
// and policies. Operator policies stay: the learner cannot remove them (they are the guard).
import { enc, type BindingInfo, type ManagementClient } from '../broker/management.js';

export interface Leftovers {
  connections: number;
  queues: string[];
  exchanges: string[];
  bindings: number;
  policies: string[];
}

const isDefaultExchange = (name: string) => name === '' || name.startsWith('amq.');

/** What the vhost holds beyond a blank vhost's contents (connections are counted, not listed). */
export async function leftovers(mgmt: ManagementClient, vhost: string): Promise<Leftovers> {
  const [queues, exchanges, bindings, policies, connections] = await Promise.all([
    mgmt.queues(vhost),
    mgmt.exchanges(vhost),
    mgmt.bindings(vhost),
    mgmt.request<{ name: string }[]>('GET', `/policies/${enc(vhost)}`).then((p) => p ?? []),
    mgmt.connections(vhost),
  ]);
  return {
    connections: connections.length,
    queues: queues.map((q) => q.name),
    exchanges: exchanges.map((x) => x.name).filter((n) => !isDefaultExchange(n)),
    // Bindings from the default exchange to a queue come and go with the queue.
    bindings: bindings.filter((b) => b.source !== '').length,
    policies: policies.map((p) => p.name),
  };
}

export function isEmpty(l: Leftovers): boolean {
  return l.queues.length === 0 && l.exchanges.length === 0 && l.bindings === 0 && l.policies.length === 0;
}

/**
 * Removes everything the learner's code or a check left in `vhost`, then reads it again and
 * throws when something is still there. Connections are closed first, so that no consumer
 * declares its queue again meanwhile.
 */
export async function emptyVhost(mgmt: ManagementClient, vhost: string): Promise<void> {
  let l = await leftovers(mgmt, vhost);
  if (l.connections) await closeConnections(mgmt, vhost);
  for (let attempt = 1; !isEmpty(l); attempt++) {
    if (attempt > 3) throw new Error(`vhost "${vhost}" could not be emptied: it still holds ${describe(l)}`);
    const bindings = (await mgmt.bindings(vhost)) as (BindingInfo & { properties_key: string })[];
    await Promise.all([
      ...l.queues.map((q) => mgmt.deleteQueue(vhost, q)),
      ...l.exchanges.map((x) => mgmt.deleteExchange(vhost, x)),
      ...l.policies.map((p) => mgmt.deletePolicy(vhost, p)),
      // Left between two default exchanges (amq.topic -> amq.fanout), which cannot be deleted.
      ...bindings
        .filter((b) => b.destination_type === 'exchange' && isDefaultExchange(b.source) && b.source !== '' && isDefaultExchange(b.destination))
        .map((b) => mgmt.request('DELETE', `/bindings/${enc(vhost)}/e/${enc(b.source)}/e/${enc(b.destination)}/${enc(b.properties_key)}`).catch(() => undefined)),
    ]);
    l = await leftovers(mgmt, vhost);
  }
}

async function closeConnections(mgmt: ManagementClient, vhost: string): Promise<void> {
  const open = await mgmt.connections(vhost);
  await Promise.all(open.map((c) => mgmt.closeConnection(c.name, 'workbook: this sandbox vhost is being emptied for the next check').catch(() => false)));
}

export function describe(l: Leftovers): string {
  const parts = [
    l.queues.length && `${l.queues.length} queue(s) (${l.queues.slice(0, 5).join(', ')})`,
    l.exchanges.length && `${l.exchanges.length} exchange(s) (${l.exchanges.slice(0, 5).join(', ')})`,
    l.bindings && `${l.bindings} binding(s)`,
    l.policies.length && `${l.policies.length} polic${l.policies.length === 1 ? 'y' : 'ies'} (${l.policies.join(', ')})`,
    l.connections && `${l.connections} connection(s)`,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'nothing';
}

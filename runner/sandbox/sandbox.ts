// Every check runs in a vhost of its own, created through the management API and
// deleted afterwards. Deleting a vhost also closes every connection still open in it,
// so a check never leaves broker state or connections behind, and checks can run side
// by side without seeing each other.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { managementFor, type ManagementClient } from '../broker/management.js';
import type { BrokerInfo } from '../broker/types.js';
import { alive } from '../broker/start-lock.js';

const PREFIX = 'wb-';
// The host is part of the name: on a shared broker, another machine's pids mean nothing here.
const HOST = createHash('sha1').update(hostname()).digest('hex').slice(0, 4);
let counter = 0;
/** The sandboxes this process holds, with how to get rid of each (delete it, or give it back to a classroom pool). */
const live = new Set<{ vhost: string; drop: () => Promise<void> }>();

export interface Sandbox {
  vhost: string;
  dispose(): Promise<void>;
}

/** A fresh vhost, with full permissions for the broker user. `label` goes into the name for people reading the UI. */
export async function createSandbox(broker: BrokerInfo, label: string): Promise<Sandbox> {
  const mgmt = managementFor(broker);
  if (broker.classroom) return borrowedSandbox(broker, mgmt);
  const vhost = `${PREFIX}${HOST}-${process.pid}-${++counter}-${label.replace(/[^a-zA-Z0-9.]+/g, '-')}`;
  await mgmt.createVhost(vhost, broker.username);
  const entry = { vhost, drop: () => mgmt.deleteVhost(vhost) };
  live.add(entry);
  return {
    vhost,
    async dispose() {
      live.delete(entry);
      await mgmt.deleteVhost(vhost);
    },
  };
}

/**
 * In a classroom the learner may not create vhosts: the sandbox is a vhost of their pool,
 * emptied before and after the check (runner/classroom/pool.ts).
 */
async function borrowedSandbox(broker: BrokerInfo, mgmt: ManagementClient): Promise<Sandbox> {
  const { borrowVhost } = await import('../classroom/pool.js');
  const borrowed = await borrowVhost(broker.classroom!, mgmt);
  const entry = { vhost: borrowed.vhost, drop: () => borrowed.giveBack() };
  live.add(entry);
  return {
    vhost: borrowed.vhost,
    async dispose() {
      live.delete(entry);
      await borrowed.giveBack();
    },
  };
}

/** Keeps a sandbox (for the learner to inspect in the UI) without deleting it at exit. */
export function forget(sandbox: Sandbox): void {
  for (const e of live) if (e.vhost === sandbox.vhost) live.delete(e);
}

/** Deletes the sandboxes this process still holds (on Ctrl-C). */
export async function disposeAll(): Promise<void> {
  await Promise.all([...live].map((e) => e.drop().catch(() => undefined)));
  live.clear();
}

/** Deletes sandboxes left by runner processes of this host that are gone (killed mid-check). */
export async function sweepStaleSandboxes(broker: BrokerInfo, keep: string[] = []): Promise<number> {
  const mgmt = managementFor(broker);
  const mine = new RegExp(`^${PREFIX}${HOST}-(\\d+)-`);
  let removed = 0;
  for (const { name } of await mgmt.vhosts()) {
    const pid = Number(name.match(mine)?.[1]);
    if (!pid || pid === process.pid || alive(pid) || keep.includes(name)) continue;
    await mgmt.deleteVhost(name).catch(() => undefined);
    removed++;
  }
  return removed;
}

// The runner's side of checks that break the local three-node cluster (chapter 8; the
// manifest marks them `cluster: true`). Such a check runs against the cluster, not the
// single broker: its sandbox vhost is made on the cluster (node 1's management API), the
// cluster is started first when it does not run (a spinner with the elapsed time), and after
// the check every node is running and the cluster formed again before anything else happens.
// Cluster checks run one at a time (they kill and freeze nodes): within a process because
// run.ts gives them one lane, and between processes (a `watch` and a `check`) by a lock file.
// Without a local rabbitmq-server they are skipped, with what to install.
import http from 'node:http';
import path from 'node:path';
import pc from 'picocolors';
import { readFileSync, rmSync } from 'node:fs';
import type { BrokerInfo } from '../broker/types.js';
import type { Finding, Verdict } from './verdict.js';
import { clusterDir, clusterStatus, startCluster, type ClusterStatus } from '../broker/cluster.js';
import { locateServer } from '../broker/private-node.js';
import { alive, withStartLock } from '../broker/start-lock.js';
import { enc, managementFor } from '../broker/management.js';
import { keptVhosts } from './kept.js';

const checkLock = path.join(clusterDir, 'check.lock');
const startLock = path.join(clusterDir, 'start.lock');

export const NO_CLUSTER_SERVER =
  'This check kills and freezes nodes of a three-node RabbitMQ cluster, which the workbook forms from a local rabbitmq-server, and there is none here.';
const NO_CLUSTER_FIX =
  'Install it (apt-get install rabbitmq-server, or brew install rabbitmq; or set RABBITMQ_SERVER_BIN), then check again: the cluster starts by itself (about 10 s). docker compose --profile cluster runs three 4.x nodes you can break by hand (docker compose kill rabbit-2), but the checker cannot drive them.';

/** The cluster's node 1 as the broker a check runs against (its sandbox vhost is made there). */
function brokerOf(status: ClusterStatus): BrokerInfo {
  const node1 = status.nodes[0]!;
  return {
    source: 'private',
    description: `the local three-node cluster (${status.nodes.map((n) => `node ${n.index} on ${n.amqpPort}`).join(', ')})`,
    amqpUrl: node1.amqpUrl, // amqp://guest:guest@localhost:<port>
    managementUrl: node1.managementUrl,
    username: status.username,
    password: status.password,
    version: node1.version ?? '0',
  };
}

let swept = false;

/**
 * The cluster, formed: started when it does not run (a spinner on a terminal), or a finding to
 * skip the check with when there is no rabbitmq-server. `started` says what the runner did, for
 * the verdict's steps.
 */
export async function clusterForCheck(): Promise<{ broker: BrokerInfo; started?: string } | { skip: Finding }> {
  if (!locateServer()) return { skip: { summary: NO_CLUSTER_SERVER, fix: NO_CLUSTER_FIX } };
  // A node left frozen by a run that was killed mid-check (Ctrl-C, a mutation test's time-out) is woken first.
  wake(await clusterStatus());
  let status = await clusterStatus();
  let started: string | undefined;
  const formed = (s: ClusterStatus | undefined) => !!s && s.nodes.every((n) => n.answers) && s.nodes.every((n) => s.members?.some((m) => m.name === n.nodeName && m.running));
  if (!formed(status)) {
    const { default: ora } = await import('ora');
    const spinner = ora({ isEnabled: process.stderr.isTTY === true, stream: process.stderr });
    spinner.start('Starting the local three-node cluster for this check…');
    try {
      const result = await startWithRetry({ onWait: (ms, activity) => (spinner.text = `${activity}… ${secs(ms)}`) });
      spinner.stopAndPersist({ symbol: pc.green('✔'), text: `The local cluster is up: three nodes (${secs(result.ms)})` });
      started = `started the local three-node cluster (node${result.started.length === 1 ? '' : 's'} ${result.started.join(', ')}): three running members after ${secs(result.ms)}`;
    } catch (err) {
      spinner.stopAndPersist({ symbol: pc.red('✖'), text: 'The local cluster did not start.' });
      throw err;
    }
    status = await clusterStatus();
  }
  return { broker: brokerOf(status!), started };
}

/**
 * Deletes a vhost of the cluster, waiting as long as that takes: on RabbitMQ 3.10, deleting a
 * quorum queue that lived through a node's death took about 5 s here, where the management
 * client gives up after 5 s (and the broker then leaves the vhost in place).
 */
function deleteVhostPatiently(broker: BrokerInfo, vhost: string): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request(`${broker.managementUrl}/api/vhosts/${enc(vhost)}`, {
      method: 'DELETE',
      headers: { authorization: 'Basic ' + Buffer.from(`${broker.username}:${broker.password}`).toString('base64') },
      timeout: 60_000,
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve());
    req.end();
  });
}

/** Sandboxes of cluster checks whose runner process is gone (killed mid-check): deleted once per process. */
async function sweepCluster(broker: BrokerInfo): Promise<void> {
  if (swept) return;
  swept = true;
  const mine = /^wb-[0-9a-f]{4}-(\d+)-/;
  const kept = keptVhosts.all();
  for (const { name } of await managementFor(broker).vhosts().catch(() => [])) {
    const pid = Number(mine.exec(name)?.[1]);
    if (!pid || pid === process.pid || kept.includes(name) || alive(pid)) continue;
    await deleteVhostPatiently(broker, name);
  }
}

/**
 * After a cluster check: every node runs again and the cluster is formed. A node the check left
 * frozen (SIGSTOP) is woken (SIGCONT), a killed one started again. Returns the steps to add to
 * the verdict (nothing when the cluster was whole).
 */
export async function restoreCluster(): Promise<string[]> {
  const steps: string[] = [];
  wake(await clusterStatus());
  // A start lock left by this very process belongs to a check worker that was ended while it
  // started a node: nothing of ours holds it any more (one cluster check at a time).
  try {
    if ((JSON.parse(readFileSync(startLock, 'utf8')) as { pid?: number }).pid === process.pid) rmSync(startLock, { force: true });
  } catch {
    /* no lock */
  }
  const began = Date.now();
  const { started } = await startWithRetry();
  if (started.length) {
    steps.push(`${clock()} after the check, the runner started node${started.length === 1 ? '' : 's'} ${started.join(', ')} again: three running members after ${secs(Date.now() - began)}`);
  }
  return steps;
}

/**
 * Runs one cluster check: waits for any other process's cluster check to end, makes sure the
 * cluster is formed, runs `check` against it, then restores the cluster and removes the sandbox
 * (unless it is kept for the learner).
 */
export async function runOnCluster(base: Omit<Verdict, 'status' | 'steps' | 'notes' | 'durationMs'>, check: (broker: BrokerInfo) => Promise<Verdict>): Promise<Verdict> {
  const began = Date.now();
  return withStartLock(
    checkLock,
    async () => {
      const cluster = await clusterForCheck();
      if ('skip' in cluster) return { ...base, status: 'skipped', finding: cluster.skip, steps: [], notes: [], durationMs: 0 };
      const verdict = await check(cluster.broker);
      if (cluster.started) verdict.steps.unshift(`${clock(began)} ${cluster.started}`);
      verdict.steps.push(...(await restoreCluster()));
      // The sandbox is deleted now that every node runs (run.ts leaves it to us), unless it is kept for the learner.
      if (verdict.vhost && !keptVhosts.all().includes(verdict.vhost)) await deleteVhostPatiently(cluster.broker, verdict.vhost);
      await sweepCluster(cluster.broker);
      verdict.durationMs = Date.now() - began;
      return verdict;
    },
    // A check takes at most a few minutes; a lock older than that was left by a killed run.
    { staleMs: 10 * 60_000 },
  );
}

/**
 * startCluster(), once more when a node exits while it boots: a node started again right after a
 * kill sometimes fails its feature-flag sync with a peer (seen with 3.10.8: incompatible_feature_flags,
 * badmap undefined) and then boots fine.
 */
async function startWithRetry(opts: Parameters<typeof startCluster>[0] = {}): ReturnType<typeof startCluster> {
  try {
    return await startCluster(opts);
  } catch (err) {
    if (!/exited \(code/.test((err as Error).message)) throw err;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return startCluster(opts);
  }
}

/** SIGCONT to every node's VM: wakes a node a check froze (SIGSTOP); harmless for the others. */
function wake(status: ClusterStatus | undefined): void {
  for (const n of status?.nodes ?? []) {
    if (!n.pid) continue;
    try {
      process.kill(n.pid, 'SIGCONT');
    } catch {
      /* gone meanwhile */
    }
  }
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function clock(at = Date.now()): string {
  return new Date(at).toISOString().slice(11, 23);
}

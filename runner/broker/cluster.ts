// The local three-node cluster of chapter 8, formed from the local `rabbitmq-server`:
// `npm run broker -- cluster start|stop|status`, and the API the checker (and the tests) use
// to break it: kill a node's Erlang VM abruptly, start it again, find a quorum queue's leader.
//
// It lives under .workbook/cluster/ (node-1/, node-2/, node-3/: config, data, logs) with node
// names and ports of its own, so the workbook's single private node (.workbook/broker/) is never
// touched. The three nodes boot in parallel and find each other through classic_config peer
// discovery; a lock file makes two shells start one cluster, never two.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { STATE_DIR } from '../paths.js';
import { localNodeNames } from './epmd.js';
import { ManagementClient, enc } from './management.js';
import { isListening, pickPort } from './ports.js';
import { locateServer, readNodeState } from './private-node.js';
import { withStartLock } from './start-lock.js';
import { ctl, forgetPid, installedVersion, logSize, logTail, nodeDir, serverLog, spawnNode, vmPid, type ClusterLayout, type ClusterNode } from './cluster-node.js';

export const CLUSTER_SIZE = 3;
export const clusterDir = path.join(STATE_DIR, 'cluster');
const layoutFile = path.join(clusterDir, 'cluster.json');
const lockFile = path.join(clusterDir, 'start.lock');

/** One node, as plain data a check or a test can use. */
export interface ClusterNodeInfo extends ClusterNode {
  amqpUrl: string;
  managementUrl: string;
  /** Its folder: config, data (mnesia/), logs (log/), server.log. */
  dir: string;
}

export interface ClusterInfo {
  dir: string;
  server: string;
  username: string;
  password: string;
  nodes: ClusterNodeInfo[];
}

/** What the checker did to the cluster, and when: for the verdict's "what the checker did". */
export interface ClusterAction {
  action: 'start cluster' | 'stop cluster' | 'kill node' | 'start node';
  /** The node acted on (1, 2, 3); none for the whole cluster. */
  node?: number;
  nodeName?: string;
  /** The Erlang VM killed. */
  pid?: number;
  /** When it began (ISO 8601). */
  at: string;
  /** How long it took: until the node was gone, or until it answered and was a running member. */
  ms: number;
  /** One sentence for a beginner. */
  detail: string;
}

const actions: ClusterAction[] = [];

/** Everything this process did to the cluster, oldest first. */
export function clusterActions(): ClusterAction[] {
  return actions.map((a) => ({ ...a }));
}

function record(a: ClusterAction): ClusterAction {
  actions.push(a);
  return { ...a };
}

/** The node names of a state directory's cluster: the same directory, the same names (the single node's are workbook-<hash>@localhost). */
export function clusterNodeName(index: number, dir = clusterDir): string {
  return `workbook-${createHash('sha1').update(dir).digest('hex').slice(0, 6)}-node${index}@localhost`;
}

function readLayout(): ClusterLayout | undefined {
  try {
    return JSON.parse(readFileSync(layoutFile, 'utf8')) as ClusterLayout;
  } catch {
    return undefined;
  }
}

/** The cluster's nodes and their URLs, once it has been started here; undefined before. */
export function clusterInfo(): ClusterInfo | undefined {
  const layout = readLayout();
  return layout && infoOf(layout);
}

function infoOf(layout: ClusterLayout): ClusterInfo {
  return {
    dir: layout.dir,
    server: layout.server,
    username: 'guest',
    password: 'guest',
    nodes: layout.nodes.map((n) => ({
      ...n,
      amqpUrl: `amqp://guest:guest@localhost:${n.amqpPort}`,
      managementUrl: `http://localhost:${n.managementPort}`,
      dir: nodeDir(layout, n),
    })),
  };
}

function management(node: ClusterNode): ManagementClient {
  return new ManagementClient(`http://localhost:${node.managementPort}`, 'guest', 'guest');
}

function nodeOf(layout: ClusterLayout, index: number): ClusterNode {
  const node = layout.nodes.find((n) => n.index === index);
  if (!node) throw new Error(`The cluster has nodes 1 to ${CLUSTER_SIZE}; there is no node ${index}.`);
  return node;
}

/** The RabbitMQ version of a node when its management API answers as that very node, else undefined. */
async function answers(node: ClusterNode): Promise<string | undefined> {
  if (!(await isListening(node.managementPort))) return undefined;
  const overview = await management(node).overview().catch(() => undefined);
  return overview?.node === node.nodeName ? overview.rabbitmq_version : undefined;
}

/** True when the node's Erlang VM runs (registered with epmd), whether or not RabbitMQ answers yet. */
async function runs(node: ClusterNode, names?: string[]): Promise<boolean> {
  return (names ?? (await localNodeNames())).includes(node.nodeName.split('@')[0]!);
}

export interface Member {
  name: string;
  running: boolean;
}

/** The cluster's members as a node reports them (GET /api/nodes); undefined when that node does not answer. */
async function membersSeenBy(node: ClusterNode): Promise<Member[] | undefined> {
  const nodes = await management(node).request<{ name: string; running: boolean }[]>('GET', '/nodes?columns=name,running').catch(() => undefined);
  return nodes?.map((n) => ({ name: n.name, running: n.running }));
}

function allRunning(layout: ClusterLayout, members: Member[] | undefined): boolean {
  return layout.nodes.every((n) => members?.some((m) => m.name === n.nodeName && m.running));
}

export interface NodeStatus extends ClusterNodeInfo {
  /** Its Erlang VM runs. */
  runs: boolean;
  /** RabbitMQ answers on it (AMQP and management). */
  answers: boolean;
  version?: string;
  /** The pid of its Erlang VM. */
  pid?: number;
}

export interface ClusterStatus extends ClusterInfo {
  nodes: NodeStatus[];
  /** The membership as the first answering node reports it; undefined when no node answers. */
  members?: Member[];
  reportedBy?: string;
}

/** Each node with whether it runs and answers, and the membership the broker reports. Undefined before the first start. */
export async function clusterStatus(): Promise<ClusterStatus | undefined> {
  const layout = readLayout();
  if (!layout) return undefined;
  const names = await localNodeNames();
  const info = infoOf(layout);
  const nodes = await Promise.all(
    info.nodes.map(async (n): Promise<NodeStatus> => {
      const running = await runs(n, names);
      const version = running ? await answers(n) : undefined;
      return { ...n, runs: running, answers: !!version, version, pid: running ? await vmPid(layout, n) : undefined };
    }),
  );
  const reporter = nodes.find((n) => n.answers);
  const members = reporter && (await membersSeenBy(reporter));
  return { ...info, nodes, members, reportedBy: members && reporter?.nodeName };
}

export interface StartOptions {
  /** Called every ~200 ms while waiting, with the elapsed time and what it waits for. */
  onWait?: (elapsedMs: number, activity: string) => void;
  timeoutMs?: number;
}

/**
 * Starts the three nodes in parallel (those not running yet) and waits until every one answers
 * and reports all three as running members. Resolves at once when the cluster is already formed.
 */
export async function startCluster(opts: StartOptions = {}): Promise<{ info: ClusterInfo; started: number[]; ms: number }> {
  const server = locateServer();
  if (!server) throw new Error('rabbitmq-server is not installed: the local cluster is made of three rabbitmq-server nodes (docker compose --profile cluster is the other way).');
  const began = Date.now();
  const tick = (activity: string) => () => opts.onWait?.(Date.now() - began, activity);
  return withStartLock(
    lockFile,
    async () => {
      const previous = readLayout();
      const names = await localNodeNames();
      const layout = await planLayout(server, previous, names);
      const toStart = layout.nodes.filter((n) => !names.includes(n.nodeName.split('@')[0]!));
      if (toStart.length === 0 && (await formed(layout))) return { info: infoOf(layout), started: [], ms: 0 };

      prepareHome();
      writeFileSync(layoutFile, JSON.stringify(layout, null, 2));
      const boots = toStart.map((n) => ({ node: n, logStart: logSize(serverLog(layout, n)), proc: spawnNode(layout, n) }));
      const failed = () => {
        const dead = boots.find((b) => b.proc.exitCode() !== undefined);
        return dead && `Node ${dead.node.index} (${dead.node.nodeName}) exited (code ${dead.proc.exitCode()}) while starting. Its output says:\n${logTail(serverLog(layout, dead.node), dead.logStart)}`;
      };
      const activity = toStart.length === CLUSTER_SIZE ? 'Starting a three-node RabbitMQ cluster' : `Starting node ${toStart.map((n) => n.index).join(', ')} of the cluster`;
      await waitFor(() => formed(layout), failed, tick(activity), opts.timeoutMs ?? 120_000, () => notFormedMessage(layout));
      const ms = Date.now() - began;
      record({
        action: 'start cluster',
        at: new Date(began).toISOString(),
        ms,
        detail: `started node${toStart.length > 1 ? 's' : ''} ${toStart.map((n) => n.index).join(', ')}; the cluster was formed, three running members, after ${secs(ms)}`,
      });
      return { info: infoOf(layout), started: toStart.map((n) => n.index), ms };
    },
    { onWait: tick('Another command is starting the cluster; waiting for it') },
  );
}

/** The nodes' names and ports: the same as last time when those ports are still free (stable URLs), otherwise free ones. */
async function planLayout(server: string, previous: ClusterLayout | undefined, running: string[]): Promise<ClusterLayout> {
  // Never the single private node's ports, even while it is stopped.
  const single = readNodeState();
  const taken = single ? [single.amqpPort, single.managementPort, single.distPort] : [];
  const nodes: ClusterNode[] = [];
  for (let index = 1; index <= CLUSTER_SIZE; index++) {
    const nodeName = clusterNodeName(index);
    const before = previous?.nodes.find((n) => n.index === index);
    // A running node keeps its ports: they are its own.
    if (before && running.includes(nodeName.split('@')[0]!)) {
      nodes.push(before);
      taken.push(before.amqpPort, before.managementPort, before.distPort);
      continue;
    }
    // By default 5673-5675, 15673-15675, 25673-25675: next to the single node's 5672, 15672, 25672.
    const amqpPort = await pickPort(before?.amqpPort ?? 5672 + index, taken);
    taken.push(amqpPort);
    const managementPort = await pickPort(before?.managementPort ?? 15672 + index, taken);
    taken.push(managementPort);
    const distPort = await pickPort(before?.distPort ?? 25672 + index, taken);
    taken.push(distPort);
    nodes.push({ index, nodeName, amqpPort, managementPort, distPort });
  }
  return { dir: clusterDir, server, serverVersion: installedVersion(server), nodes };
}

/** One cookie for the three nodes and the CLI, in the HOME they share. */
function prepareHome() {
  const home = path.join(clusterDir, 'home');
  mkdirSync(home, { recursive: true });
  const cookie = path.join(home, '.erlang.cookie');
  if (!existsSync(cookie)) writeFileSync(cookie, randomBytes(20).toString('hex'), { mode: 0o600 });
}

/** Every node answers, and node 1 reports all three as running members. */
async function formed(layout: ClusterLayout): Promise<boolean> {
  for (const n of layout.nodes) if (!(await answers(n))) return false;
  return allRunning(layout, await membersSeenBy(layout.nodes[0]!));
}

async function notFormedMessage(layout: ClusterLayout): Promise<string> {
  const lines = await Promise.all(
    layout.nodes.map(async (n) => {
      const members = (await answers(n)) ? await membersSeenBy(n) : undefined;
      const seen = members ? `answers, sees ${members.filter((m) => m.running).map((m) => m.name).join(', ')}` : 'does not answer';
      return `  node ${n.index} (${n.nodeName}): ${seen}; its log: ${path.join(nodeDir(layout, n), 'log')}`;
    }),
  );
  return lines.join('\n');
}

/** Polls `done` every 200 ms; stops on `failed` (a reason) or after `timeoutMs`. */
async function waitFor(done: () => Promise<boolean>, failed: () => string | undefined, tick: () => void, timeoutMs: number, why: () => Promise<string>) {
  const started = Date.now();
  for (;;) {
    tick();
    const reason = failed();
    if (reason) throw new Error(reason);
    if (await done()) return;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`The cluster was not formed within ${timeoutMs / 1000} s. Stop it with \`npm run broker -- cluster stop\` and try again.\n${await why()}`);
    }
    await sleep(200);
  }
}

/**
 * Crashes node `index`: SIGKILL of its Erlang VM, as a power cut would, with no goodbye to
 * its peers. Resolves once the VM is gone (epmd no longer lists it).
 */
export async function killNode(index: number): Promise<ClusterAction> {
  const layout = requireLayout();
  const node = nodeOf(layout, index);
  if (!(await runs(node))) throw new Error(`Node ${index} (${node.nodeName}) does not run, so there is nothing to kill.`);
  const pid = await vmPid(layout, node);
  if (!pid) throw new Error(`Node ${index} (${node.nodeName}) runs, but its Erlang VM's pid is unknown (${path.join(nodeDir(layout, node), 'node.pid')}).`);
  const began = Date.now();
  process.kill(pid, 'SIGKILL');
  while (await runs(node)) {
    if (Date.now() - began > 10_000) throw new Error(`Node ${index}'s Erlang VM (pid ${pid}) was sent SIGKILL but is still registered after 10 s.`);
    await sleep(50);
  }
  forgetPid(layout, node);
  return record({
    action: 'kill node',
    node: index,
    nodeName: node.nodeName,
    pid,
    at: new Date(began).toISOString(),
    ms: Date.now() - began,
    detail: `killed node ${index} (${node.nodeName}): SIGKILL to its Erlang VM, pid ${pid}; gone after ${secs(Date.now() - began)}`,
  });
}

/** Starts node `index` again (after killNode) and waits until it answers and is a running member again. */
export async function startNode(index: number, opts: StartOptions = {}): Promise<ClusterAction> {
  const layout = requireLayout();
  const node = nodeOf(layout, index);
  const began = Date.now();
  const tick = (activity: string) => () => opts.onWait?.(Date.now() - began, activity);
  return withStartLock(
    lockFile,
    async () => {
      prepareHome();
      const logStart = logSize(serverLog(layout, node));
      // A node whose VM still runs (booting) is waited for, never started twice.
      const proc = (await runs(node)) ? undefined : spawnNode(layout, node);
      const failed = () => {
        const code = proc?.exitCode();
        return code === undefined ? undefined : `Node ${index} (${node.nodeName}) exited (code ${code}) while starting. Its output says:\n${logTail(serverLog(layout, node), logStart)}`;
      };
      const rejoined = async () => !!(await answers(node)) && (await membersSeenBy(node))?.some((m) => m.name === node.nodeName && m.running) === true;
      await waitFor(rejoined, failed, tick(`Starting node ${index} of the cluster`), opts.timeoutMs ?? 90_000, () => notFormedMessage(layout));
      return record({
        action: 'start node',
        node: index,
        nodeName: node.nodeName,
        at: new Date(began).toISOString(),
        ms: Date.now() - began,
        detail: `started node ${index} (${node.nodeName}) again; it answered as a running member after ${secs(Date.now() - began)}`,
      });
    },
    { onWait: tick('Another command is starting the cluster; waiting for it') },
  );
}

/**
 * Stops every node that runs, gracefully (SIGTERM: RabbitMQ shuts down cleanly, as with
 * `rabbitmqctl stop`, without starting three CLIs). Resolves with the nodes it stopped.
 */
export async function stopCluster(): Promise<number[]> {
  const layout = readLayout();
  if (!layout) return [];
  const names = await localNodeNames();
  const running = layout.nodes.filter((n) => names.includes(n.nodeName.split('@')[0]!));
  const began = Date.now();
  await Promise.all(running.map((n) => stopNode(layout, n)));
  if (running.length) {
    record({ action: 'stop cluster', at: new Date(began).toISOString(), ms: Date.now() - began, detail: `stopped node${running.length > 1 ? 's' : ''} ${running.map((n) => n.index).join(', ')} in ${secs(Date.now() - began)}` });
  }
  return running.map((n) => n.index);
}

async function stopNode(layout: ClusterLayout, node: ClusterNode) {
  const pid = await vmPid(layout, node);
  if (pid) process.kill(pid, 'SIGTERM');
  else await ctl(layout, node, ['stop']).catch(() => undefined); // no pid file yet (still booting): ask it
  const deadline = Date.now() + 60_000;
  while (await runs(node)) {
    if (Date.now() > deadline) {
      // Stuck in its shutdown: end it, so that `cluster stop` always ends with nothing running.
      if (pid && (await vmPid(layout, node)) === pid) process.kill(pid, 'SIGKILL');
      return;
    }
    await sleep(100);
  }
}

export interface QuorumQueueNodes {
  /** The node of its leader; undefined while none is known (an election). */
  leader?: number;
  /** The nodes that hold a member (replica) of it. */
  members: number[];
  /** The members that run and take part in the Raft group. */
  online: number[];
  /** Which node's management API said so. */
  reportedBy: number;
}

/**
 * Where a quorum queue lives, as the management API reports it (its `leader`, `members` and
 * `online` fields), asked of the first node that answers; undefined when no node answers or the
 * queue is not there. The API updates these at its statistics interval (1 s here), so after a
 * kill it may name the old leader for a moment.
 */
export async function quorumQueueNodes(vhost: string, queue: string): Promise<QuorumQueueNodes | undefined> {
  const layout = requireLayout();
  const indexOf = (name: string | undefined) => layout.nodes.find((n) => n.nodeName === name)?.index;
  const indexes = (names: string[] | undefined) => (names ?? []).map(indexOf).filter((i): i is number => i !== undefined).sort();
  for (const node of layout.nodes) {
    if (!(await answers(node))) continue;
    const q = await management(node)
      .request<{ leader?: string; members?: string[]; online?: string[] }>('GET', `/queues/${enc(vhost)}/${enc(queue)}`)
      .catch(() => undefined);
    if (!q) return undefined;
    return { leader: indexOf(q.leader), members: indexes(q.members), online: indexes(q.online), reportedBy: node.index };
  }
  return undefined;
}

/**
 * Removes the replica of a quorum queue on node `index`, as an operator would for a node that is
 * gone (rabbitmq-queues delete_member), through a node that is up. RabbitMQ 3.10.8 deletes a
 * quorum queue with a replica on a dead node without cancelling its consumers (measured: 4 of 4
 * when the queue was declared while the node was dead); with that replica removed first, 3 of 3
 * were cancelled.
 */
export async function removeQueueMember(vhost: string, queue: string, index: number): Promise<string> {
  const layout = requireLayout();
  const target = nodeOf(layout, index);
  for (const via of layout.nodes) {
    if (via.index === index || !(await answers(via))) continue;
    return (await ctl(layout, via, ['delete_member', '--vhost', vhost, queue, target.nodeName], 30_000, 'rabbitmq-queues')).trim();
  }
  throw new Error('no other node of the cluster answers');
}

/** The node that holds a quorum queue's leader (1, 2 or 3), or undefined when none is known. */
export async function quorumLeader(vhost: string, queue: string): Promise<number | undefined> {
  return (await quorumQueueNodes(vhost, queue))?.leader;
}

function requireLayout(): ClusterLayout {
  const layout = readLayout();
  if (!layout) throw new Error('The local cluster was never started here: npm run broker -- cluster start');
  return layout;
}

function secs(ms: number) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

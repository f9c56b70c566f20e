// One node of the local three-node cluster (chapter 8): its folder under
// .workbook/cluster/node-N/, its config file, its environment, and its processes.
// The node runs from the local `rabbitmq-server` like the single private node, with names,
// ports and folders of its own, so the two never meet.
//
// `rabbitmq-server` is a shell script that starts the Erlang VM (beam.smp) as its child:
// killing the script leaves the VM running, so a crash is made by killing the VM itself,
// whose pid the node writes to node.pid.
import { spawn, execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ClusterNode {
  /** 1, 2 or 3. */
  index: number;
  nodeName: string;
  amqpPort: number;
  managementPort: number;
  distPort: number;
}

/** What every node of one cluster shares. */
export interface ClusterLayout {
  /** .workbook/cluster */
  dir: string;
  /** The rabbitmq-server script the nodes run from. */
  server: string;
  /** Its version ("3.10.8"), read from its installation; undefined when not found there. */
  serverVersion?: string;
  nodes: ClusterNode[];
}

export function nodeDir(layout: ClusterLayout, node: ClusterNode): string {
  return path.join(layout.dir, `node-${node.index}`);
}

/** The output of rabbitmq-server (boot errors land here); RabbitMQ's own log is in log/. */
export function serverLog(layout: ClusterLayout, node: ClusterNode): string {
  return path.join(nodeDir(layout, node), 'server.log');
}

/** The node's config: its ports, the peers it forms a cluster with, and laptop-sized quorum queues. */
export function nodeConfig(layout: ClusterLayout, node: ClusterNode): string {
  return [
    `listeners.tcp.default = ${node.amqpPort}`,
    `management.tcp.port = ${node.managementPort}`,
    // Fresher numbers in the management UI while learning (default is 5 s), as on the single node.
    'collect_statistics_interval = 1000',
    // classic_config: the peers are listed here. The full module name works on 3.x and 4.x.
    // One name for the cluster. Unset, each node of a 3.10 cluster reports its own node name as the
    // cluster's (AMQP and the management API alike), and the runner's "same broker" probe would take
    // node 2's AMQP port and node 1's management API for two brokers.
    `cluster_name = ${layout.nodes[0]!.nodeName.replace(/-node\d+@.*$/, '')}`,
    'cluster_formation.peer_discovery_backend = rabbit_peer_discovery_classic_config',
    ...layout.nodes.map((n) => `cluster_formation.classic_config.nodes.${n.index} = ${n.nodeName}`),
    ...discoveryRetries(layout.serverVersion),
    // A node's quorum queues share a write-ahead log of up to 512 MB by default, whose entries
    // are also held in memory: three nodes on a laptop need far less (RabbitMQ's docs example).
    'raft.wal_max_size_bytes = 64000000',
    '',
  ].join('\n');
}

/**
 * Before 3.13, the first blank node to take the peer discovery lock tries to join its peers,
 * which wait for that same lock, 10 times 500 ms by default: 5 s lost before it starts alone
 * and lets the others join it (measured: 20 s to form the cluster instead of about 12 s).
 * Five tries 100 ms apart are enough, since a node only gets the lock once the one before it
 * has its tables. From 3.13 on, peer discovery waits for the peers' VMs first and then
 * joins the oldest one; its defaults (30 tries, 1 s apart) are what that needs.
 */
function discoveryRetries(version: string | undefined): string[] {
  const [major = 0, minor = 0] = (version ?? '').split('.').map(Number);
  const before313 = major === 3 && minor < 13;
  return before313 ? ['cluster_formation.discovery_retry_limit = 5', 'cluster_formation.discovery_retry_interval = 100'] : [];
}

/** The version of a rabbitmq-server installation, from its plugins folder (plugins/rabbit-3.10.8); undefined when not found. */
export function installedVersion(server: string): string | undefined {
  try {
    const root = path.dirname(path.dirname(realpathSync(server))); // …/rabbitmq_server-3.10.8/sbin/rabbitmq-server
    for (const plugins of [path.join(root, 'plugins'), path.join(root, 'libexec', 'plugins')]) {
      if (!existsSync(plugins)) continue;
      const rabbit = readdirSync(plugins).map((f) => /^rabbit-(\d+\.\d+\.\d+)/.exec(f)?.[1]).find(Boolean);
      if (rabbit) return rabbit;
    }
  } catch {
    /* not a layout we know */
  }
  return undefined;
}

/** Environment that points rabbitmq-server at this node's folder, names and ports. */
export function nodeEnv(layout: ClusterLayout, node: ClusterNode): Record<string, string> {
  const dir = nodeDir(layout, node);
  return {
    // Holds .erlang.cookie: one HOME for the three nodes, so they share one cookie.
    HOME: path.join(layout.dir, 'home'),
    RABBITMQ_NODENAME: node.nodeName,
    RABBITMQ_NODE_PORT: String(node.amqpPort),
    RABBITMQ_DIST_PORT: String(node.distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
    RABBITMQ_PID_FILE: path.join(dir, 'node.pid'),
    // Erlang writes erl_crash.dump into the working directory by default: the project's root.
    ERL_CRASH_DUMP: path.join(dir, 'erl_crash.dump'),
  };
}

/** Writes the node's folders and files, then starts rabbitmq-server in the background. */
export function spawnNode(layout: ClusterLayout, node: ClusterNode): { pid?: number; exitCode: () => number | null | undefined } {
  const dir = nodeDir(layout, node);
  for (const sub of ['log', 'mnesia']) mkdirSync(path.join(dir, sub), { recursive: true });
  writeFileSync(path.join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
  writeFileSync(path.join(dir, 'rabbitmq.conf'), nodeConfig(layout, node));
  // A pid file left by a killed VM names a process that is gone, or by now another one:
  // removed, so that a pid file present always belongs to the VM booting now.
  rmSync(nodeEnv(layout, node).RABBITMQ_PID_FILE!, { force: true });
  const out = openSync(serverLog(layout, node), 'a');
  const child = spawn(layout.server, [], {
    cwd: dir,
    env: { ...process.env, ...nodeEnv(layout, node) },
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  return { pid: child.pid, exitCode: () => exited };
}

/**
 * The pid of the node's Erlang VM, from the file the node writes while it boots, once that
 * process is checked to be this node's VM; undefined otherwise (gone, not written yet).
 */
export async function vmPid(layout: ClusterLayout, node: ClusterNode): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number(readFileSync(nodeEnv(layout, node).RABBITMQ_PID_FILE!, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return (await isVmOf(pid, node.nodeName)) ? pid : undefined;
}

/**
 * True when process `pid` is the Erlang VM of `nodeName`: never signal a process on the word of
 * a file alone. Linux shows a process's environment (the node name the VM was started with);
 * elsewhere, the process must at least be an Erlang VM.
 */
async function isVmOf(pid: number, nodeName: string): Promise<boolean> {
  if (existsSync('/proc/self/environ')) {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`RABBITMQ_NODENAME=${nodeName}`);
    } catch {
      return false; // no such process (or another user's)
    }
  }
  const { stdout } = await execFileP('ps', ['-o', 'comm=', '-p', String(pid)]).catch(() => ({ stdout: '' }));
  return /beam/.test(stdout);
}

/** Forgets the pid of a VM that is gone. */
export function forgetPid(layout: ClusterLayout, node: ClusterNode) {
  rmSync(nodeEnv(layout, node).RABBITMQ_PID_FILE!, { force: true });
}

/** Runs rabbitmqctl against one node (with the cluster's cookie). */
export async function ctl(layout: ClusterLayout, node: ClusterNode, args: string[], timeoutMs = 60_000, tool: 'rabbitmqctl' | 'rabbitmq-queues' = 'rabbitmqctl'): Promise<string> {
  const bin = path.join(path.dirname(layout.server), tool);
  const { stdout } = await execFileP(bin, ['-n', node.nodeName, ...args], { env: { ...process.env, ...nodeEnv(layout, node) }, timeout: timeoutMs });
  return stdout;
}

export function logSize(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

/** The end of a log file, from byte `from` on (at most 3000 bytes). */
export function logTail(file: string, from = 0): string {
  try {
    const fd = openSync(file, 'r');
    const size = statSync(file).size;
    const start = Math.max(from, size - 3000);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    closeSync(fd);
    return buf.toString('utf8').trim() || '(empty)';
  } catch {
    return '(no log)';
  }
}

// The vocabulary of checks that break the local three-node cluster (chapter 8; the manifest marks
// them `cluster: true`, and cluster-run.ts runs them there). A check gets:
//   - the URL of each node for its sandbox vhost, to hand to the code under check in any order;
//   - the checker's own connections, on a node it chooses (never counted as the learner's);
//   - the node each learner connection lives on, from its socket, or as the management API lists it;
//   - the ways to break the cluster: kill a node (SIGKILL of its Erlang VM, now or at the very moment
//     the learner writes something), freeze one (SIGSTOP: a node that hangs) and wake it (SIGCONT);
//   - where a quorum queue's leader and members are.
// Each action is logged with its time in the verdict's steps. The runner makes the cluster whole
// again after the check (every node running, none frozen), so a check never starts nodes itself.
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { clusterInfo, clusterStatus, killNode, removeQueueMember, type ClusterInfo } from '../broker/cluster.js';
import { localNodeNames } from '../broker/epmd.js';
import { ManagementClient, enc, type ConnectionInfo } from '../broker/management.js';
import type { CheckContext } from './context.js';
import { connectionsSince, type AmqpConnection } from './frames.js';
import { ignoreSocket } from './socket-tracker.js';

/** A TCP connection attempt of the code under check to a node: made, refused (ECONNREFUSED: a dead node), or neither yet. */
export interface Attempt {
  at: number;
  node: number;
  refused: boolean;
  socket: Socket;
}

/** Every client socket of this worker, from the start of the first cluster check: to see attempts that never got to speak AMQP. */
const sockets: { at: number; socket: Socket; port?: number; refused?: boolean }[] = [];
const checkerSockets = new WeakSet<Socket>();
let watching = false;

function watchSockets(): void {
  if (watching) return;
  watching = true;
  dc.subscribe('net.client.socket', (message) => {
    const socket = (message as { socket: Socket }).socket;
    const entry: (typeof sockets)[number] = { at: Date.now(), socket };
    socket.once('connect', () => (entry.port = socket.remotePort));
    socket.once('error', (err: NodeJS.ErrnoException & { port?: number }) => {
      if (entry.port === undefined && err.code === 'ECONNREFUSED' && err.port) [entry.port, entry.refused] = [err.port, true];
    });
    sockets.push(entry);
  });
}

export interface ClusterNodeView {
  /** 1, 2 or 3. */
  index: number;
  /** The Erlang node name, as the management API names it. */
  name: string;
  amqpPort: number;
  /** amqp URL of the check's sandbox vhost on this node. */
  url: string;
  managementUrl: string;
}

export interface QueuePlacement {
  /** The node of the queue's leader; undefined during an election. */
  leader?: number;
  members: number[];
  online: number[];
}

/** What `crashWhen` armed: `crashed` resolves once the node is gone (or never, when it was not triggered). */
export interface ArmedCrash {
  fired: () => boolean;
  crashed: Promise<void>;
  disarm: () => void;
}

export class CheckCluster {
  readonly nodes: ClusterNodeView[];
  private readonly down = new Set<number>();
  private readonly frozen = new Set<number>();
  private readonly conns = new Map<number, Promise<ChannelModel>>();

  private constructor(
    private readonly t: CheckContext<unknown>,
    info: ClusterInfo,
    private readonly pids: Map<number, number>,
  ) {
    this.nodes = info.nodes.map((n) => ({
      index: n.index,
      name: n.nodeName,
      amqpPort: n.amqpPort,
      url: `${n.amqpUrl}/${enc(t.vhost)}`,
      managementUrl: n.managementUrl,
    }));
  }

  /** The cluster of a check that runs on it; throws when the manifest did not mark the exercise `cluster: true`. */
  static async of(t: CheckContext<unknown>): Promise<CheckCluster> {
    const info = clusterInfo();
    const node1 = info?.nodes[0];
    if (!info || !node1 || new URL(node1.amqpUrl).port !== new URL(t.broker.amqpUrl).port) {
      throw new Error('this check needs the local cluster: mark the exercise `cluster: true` in manifest.yaml');
    }
    watchSockets();
    const status = await clusterStatus();
    const pids = new Map((status?.nodes ?? []).filter((n) => n.pid).map((n) => [n.index, n.pid!] as const));
    return new CheckCluster(t, info, pids);
  }

  node(index: number): ClusterNodeView {
    const n = this.nodes.find((x) => x.index === index);
    if (!n) throw new Error(`no node ${index} in the cluster`);
    return n;
  }

  /** The sandbox vhost's URL on each node, in the order given (node numbers). */
  urls(order: number[]): string[] {
    return order.map((i) => this.node(i).url);
  }

  /** The node whose AMQP port is `port`. */
  nodeOfPort(port: number | undefined): number | undefined {
    return this.nodes.find((n) => n.amqpPort === port)?.index;
  }

  /** The node a connection of the learner went to, from its socket (exact, at once). */
  nodeOf(c: AmqpConnection): number | undefined {
    return this.nodeOfPort(c.socket.remotePort);
  }

  /** The AMQP connections the code under check opened since `mark`, with the node of each. */
  learnerConnections(mark = 0): { connection: AmqpConnection; node: number | undefined }[] {
    return connectionsSince(mark).map((connection) => ({ connection, node: this.nodeOf(connection) }));
  }

  /**
   * Every TCP connection the code under check began to a node since `since` (epoch ms), in order,
   * those a dead node refused (ECONNREFUSED, no AMQP spoken) included; attempts still in progress
   * have no node yet and are left out.
   */
  attempts(since = 0): Attempt[] {
    return sockets
      .filter((s) => s.at >= since && !checkerSockets.has(s.socket))
      .map((s) => ({ at: s.at, node: this.nodeOfPort(s.port), refused: s.refused === true, socket: s.socket }))
      .filter((a): a is Attempt => a.node !== undefined);
  }

  /** Nodes neither killed nor frozen by this check. */
  up(): number[] {
    return this.nodes.map((n) => n.index).filter((i) => !this.down.has(i) && !this.frozen.has(i));
  }

  isUp(index: number): boolean {
    return this.up().includes(index);
  }

  /**
   * The management API of a node that answers (the first one up). Never a frozen node's: it would
   * not answer; and while a node is frozen, requests that gather data from every node (queues,
   * connections) wait for it too, up to 5 s: ask only once it is awake.
   */
  mgmt(): ManagementClient {
    const index = this.up()[0];
    if (index === undefined) throw new Error('no node of the cluster is up');
    return new ManagementClient(this.node(index).managementUrl, 'guest', 'guest');
  }

  /** The checker's own connection to node `index` (the first node up by default): not the learner's, in any count. */
  private connection(index = this.up()[0]!): Promise<ChannelModel> {
    let conn = this.conns.get(index);
    if (!conn) {
      conn = amqp.connect(this.node(index).url, { clientProperties: { connection_name: 'workbook checker' }, noDelay: true }).then((c) => {
        const stream = (c.connection as unknown as { stream?: Socket }).stream;
        ignoreSocket(stream);
        if (stream) checkerSockets.add(stream);
        c.on('error', () => undefined); // a killed node closes it: the check decides what that means
        c.on('close', () => this.conns.delete(index));
        return c;
      });
      conn.catch(() => this.conns.delete(index));
      this.conns.set(index, conn);
    }
    return conn;
  }

  /** A channel of the checker's on node `index` (the first node up by default). */
  async channel(index?: number): Promise<Channel> {
    const ch = await (await this.connection(index)).createChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  async confirmChannel(index?: number): Promise<ConfirmChannel> {
    const ch = await (await this.connection(index)).createConfirmChannel();
    ch.on('error', () => undefined);
    return ch;
  }

  /** Ready messages and consumers of `queue`, counted by the queue itself (over AMQP, through a node that is up). */
  async counts(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await this.channel();
    try {
      return await ch.checkQueue(queue);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Where a quorum queue lives, as a node that is up reports it; undefined when it is not there. */
  async placement(queue: string): Promise<QueuePlacement | undefined> {
    const q = await this.mgmt()
      .request<{ leader?: string; members?: string[]; online?: string[] }>('GET', `/queues/${enc(this.t.vhost)}/${enc(queue)}`)
      .catch(() => undefined);
    if (!q) return undefined;
    const indexOf = (name?: string) => this.nodes.find((n) => n.name === name)?.index;
    const all = (names?: string[]) => (names ?? []).map(indexOf).filter((i): i is number => i !== undefined).sort();
    return { leader: indexOf(q.leader), members: all(q.members), online: all(q.online) };
  }

  /** The connections of the sandbox vhost the management API lists (a statistics tick after they open), with their node; the checker's own left out. */
  async listedConnections(): Promise<(ConnectionInfo & { nodeIndex?: number })[]> {
    const list = await this.mgmt().request<(ConnectionInfo & { node?: string })[]>('GET', `/vhosts/${enc(this.t.vhost)}/connections`);
    return (list ?? [])
      .filter((c) => c.client_properties?.connection_name !== 'workbook checker')
      .map((c) => ({ ...c, nodeIndex: this.nodes.find((n) => n.name === c.node)?.index }));
  }

  /** Crashes node `index` now (SIGKILL of its Erlang VM) and waits until it is gone. `why` opens the step. */
  async kill(index: number, why: string): Promise<void> {
    this.down.add(index);
    const action = await killNode(index);
    this.conns.delete(index);
    this.t.log(`${why}: ${action.detail}`);
  }

  /** Removes the replica of `queue` (in the check's vhost) on node `index`, a dead node: rabbitmq-queues delete_member. `why` opens the step. */
  async removeReplica(queue: string, index: number, why: string): Promise<void> {
    const at = Date.now();
    await removeQueueMember(this.t.vhost, queue, index);
    this.t.log(`${why}: removed the replica of "${queue}" on node ${index} (rabbitmq-queues delete_member, ${Date.now() - at} ms)`);
  }

  /**
   * Arms a crash of node `index` at the very moment `when` says so (called synchronously, e.g.
   * from a frames.ts onSent listener: right after the learner wrote a publish): SIGKILL in the same
   * tick, before the node can read what follows. `crashed` resolves once the node is gone.
   */
  crashWhen(index: number, why: string): ArmedCrash & { fire: () => void } {
    const pid = this.pids.get(index);
    if (!pid) throw new Error(`the pid of node ${index}'s Erlang VM is unknown`);
    let fired = false;
    let resolveCrashed: () => void = () => undefined;
    const crashed = new Promise<void>((resolve) => (resolveCrashed = resolve));
    const fire = () => {
      if (fired) return;
      fired = true;
      const at = Date.now();
      process.kill(pid, 'SIGKILL');
      this.down.add(index);
      this.conns.delete(index);
      void (async () => {
        const short = this.node(index).name.split('@')[0]!;
        while ((await localNodeNames()).includes(short) && Date.now() - at < 10_000) await new Promise((r) => setTimeout(r, 50));
        this.t.log(`${why}: killed node ${index} (${this.node(index).name}): SIGKILL to its Erlang VM, pid ${pid}, at ${new Date(at).toISOString().slice(11, 23)}; gone after ${((Date.now() - at) / 1000).toFixed(1)} s`);
        resolveCrashed();
      })();
    };
    return { fire, fired: () => fired, crashed, disarm: () => (fired = true) };
  }

  /** Freezes node `index` (SIGSTOP: its VM stops, its sockets stay open and silent, as a hung machine's). */
  freeze(index: number, why: string): void {
    const pid = this.pids.get(index);
    if (!pid) throw new Error(`the pid of node ${index}'s Erlang VM is unknown`);
    process.kill(pid, 'SIGSTOP');
    this.frozen.add(index);
    this.t.log(`${why}: froze node ${index} (${this.node(index).name}): SIGSTOP to its Erlang VM, pid ${pid}; it hangs, its connections stay open but silent`);
  }

  /** Wakes a frozen node (SIGCONT). */
  thaw(index: number, why: string): void {
    if (!this.frozen.has(index)) return;
    const pid = this.pids.get(index)!;
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
    this.frozen.delete(index);
    this.t.log(`${why}: woke node ${index} (SIGCONT to pid ${pid})`);
  }

  /** Wakes every node this check froze (in a finally: a failing check must not leave one frozen; the runner does it too). */
  thawAll(): void {
    for (const index of [...this.frozen]) this.thaw(index, 'the check ends');
  }

  async close(): Promise<void> {
    this.thawAll();
    const open = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(open.map((c) => c.then((x) => x.close()).catch(() => undefined)));
  }
}

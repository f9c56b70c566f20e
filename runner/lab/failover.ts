// npm run lab failover: a quorum queue on the local three-node cluster, kept busy through
// repeated crashes of its leader's node. A publisher sends with confirms, keeps every message
// not confirmed yet and sends it again after a lost connection or a nack; a consumer records
// every delivery by message id. Each cycle kills the node of the queue's leader (SIGKILL of its
// Erlang VM), measures how long until a survivor is named leader and until the first confirm of
// a message published after the kill, then starts the node again. failover-report.ts counts.
import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { clusterInfo, killNode, quorumQueueNodes, startNode, type ClusterInfo } from '../broker/cluster.js';
import { ManagementClient, enc } from '../broker/management.js';
import type { Cycle, Delivery, Sent } from './failover-report.js';

export const LAB_VHOST = 'workbook-lab-failover';
export const LAB_QUEUE = 'failover-lab';
const QUEUE_OPTIONS = { durable: true, arguments: { 'x-queue-type': 'quorum' } };
/** One new message every PUBLISH_EVERY_MS, at most WINDOW of them waiting for their confirm. */
const PUBLISH_EVERY_MS = 10;
const WINDOW = 200;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface FailoverOptions {
  cycles: number;
  /** A line of progress (the command shows it beside a spinner). */
  progress: (text: string) => void;
  /** A line that stays (one per finished cycle). */
  say: (line: string) => void;
}

export interface FailoverRun {
  sent: Sent[];
  deliveries: Delivery[];
  cycles: Cycle[];
  version: string;
  durationMs: number;
  /** Messages still unconfirmed, or confirmed and not delivered, when the lab gave up waiting. */
  notSettled: number;
  /** Nacks the publisher got, and the channels it opened anew because the old one only nacked. */
  nacks: number;
  channelRenewals: number;
}

/** The cluster's nodes as URLs into the lab's vhost, in node order. */
function labUrls(info: ClusterInfo): string[] {
  return info.nodes.map((n) => `${n.amqpUrl}/${enc(LAB_VHOST)}`);
}

// ---- the publisher ------------------------------------------------------------------------

/** Connects to the nodes in turn, from `start`, until one accepts; 100 ms, 200 ms, … 1 s between rounds. */
async function connectRotating(urls: string[], start: number, name: string): Promise<{ connection: ChannelModel; index: number }> {
  for (let attempt = 0; ; attempt++) {
    const index = (start + attempt) % urls.length;
    try {
      const connection = await amqp.connect(urls[index]!, { clientProperties: { connection_name: name }, timeout: 2000 });
      return { connection, index };
    } catch {
      if (attempt % urls.length === urls.length - 1) await sleep(Math.min(100 * 2 ** Math.floor(attempt / urls.length), 1000));
    }
  }
}

class Publisher {
  readonly sent = new Map<string, Sent>();
  cycle = 1;
  /** When the publisher had to connect again (its node died), and when it opened a new channel because the old one only nacked. */
  readonly reconnects: number[] = [];
  readonly channelRenewals: number[] = [];
  nacks = 0;
  /** Called with each confirm. */
  onConfirm?: (s: Sent) => void;
  private next = 1;
  /** Sent on the current channel, not confirmed yet. */
  private inFlight = new Set<string>();
  /** Nacked or cut off: to send again, each from its time on. */
  private readonly toResend: { id: string; after: number }[] = [];
  private channel?: ConfirmChannel;
  private connection?: ChannelModel;
  private node: number;
  /** Since when the current channel has answered with nacks only. */
  private nacksSince?: number;
  private publishing = true;
  private closed = false;
  private loop?: Promise<void>;

  constructor(private readonly urls: string[], startNode: number) {
    this.node = startNode;
  }

  async start(): Promise<void> {
    await this.connect();
    this.loop = this.run();
  }

  /** Unconfirmed messages, sent or waiting to be sent again. */
  get unconfirmed(): number {
    return this.inFlight.size + this.toResend.length;
  }

  /** Connects (rotating over the nodes) until a confirm channel is open, or the publisher is closed. */
  private async connect(): Promise<void> {
    while (!this.closed) {
      const { connection, index } = await connectRotating(this.urls, this.node, 'failover lab publisher');
      this.node = index;
      connection.on('error', () => undefined);
      connection.on('close', () => this.lost(connection));
      this.connection = connection;
      if (await this.openChannel(connection)) return;
      await connection.close().catch(() => undefined);
    }
  }

  private async openChannel(connection: ChannelModel): Promise<boolean> {
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      this.channel = channel;
      this.inFlight = new Set();
      this.nacksSince = undefined;
      return true;
    } catch {
      return false;
    }
  }

  /** Whatever the channel had not confirmed is sent again, on the next one. */
  private dropChannel(): void {
    for (const id of this.inFlight) this.toResend.push({ id, after: 0 });
    this.inFlight = new Set();
    this.channel = undefined;
  }

  /** The connection is gone (its node died): connect again, through the next node. */
  private lost(connection: ChannelModel): void {
    if (connection !== this.connection || this.closed) return;
    this.connection = undefined;
    this.dropChannel();
    this.reconnects.push(Date.now());
    this.node = (this.node + 1) % this.urls.length;
    void this.connect();
  }

  /**
   * A new channel on the same connection, when the current one has answered with nacks only for
   * a second. (Seen with RabbitMQ 3.10.8: a channel opened while the queue had no leader nacked
   * every publish for as long as it lived, even after the election; a new channel was fine.)
   */
  private async renewChannel(): Promise<void> {
    const connection = this.connection;
    const old = this.channel;
    if (!connection || !old) return;
    this.dropChannel();
    this.channelRenewals.push(Date.now());
    void old.close().catch(() => undefined);
    if (!(await this.openChannel(connection))) void connection.close().catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const channel = this.channel;
      if (channel && this.nacksSince !== undefined && Date.now() - this.nacksSince > 1000) {
        await this.renewChannel();
        continue;
      }
      let sent = false;
      if (channel && this.inFlight.size < WINDOW) {
        const due = this.toResend.findIndex((r) => r.after <= Date.now());
        const id = due >= 0 ? this.toResend.splice(due, 1)[0]!.id : this.publishing ? `m${String(this.next++).padStart(6, '0')}` : undefined;
        if (id) {
          this.send(channel, id);
          sent = due >= 0;
        }
      }
      // Resends go out at once, new messages one every PUBLISH_EVERY_MS.
      await (sent ? new Promise((r) => setImmediate(r)) : sleep(PUBLISH_EVERY_MS));
    }
  }

  private send(channel: ConfirmChannel, id: string): void {
    let entry = this.sent.get(id);
    if (!entry) this.sent.set(id, (entry = { id, cycle: this.cycle, sends: [] }));
    const s = entry;
    const inFlight = this.inFlight;
    s.sends.push(Date.now());
    inFlight.add(id);
    try {
      channel.sendToQueue(LAB_QUEUE, Buffer.from(id), { persistent: true, messageId: id }, (err) => {
        // Not in this set any more: its channel was dropped, and it is waiting to be sent again.
        if (!inFlight.delete(id)) return;
        if (err) {
          // Nacked (or the channel closed): again in 200 ms, not in a tight loop.
          if (/nack/.test(String(err))) {
            this.nacks++;
            this.nacksSince ??= Date.now();
          }
          this.toResend.push({ id, after: Date.now() + 200 });
          return;
        }
        if (inFlight === this.inFlight) this.nacksSince = undefined;
        s.confirmedAt ??= Date.now();
        this.onConfirm?.(s);
      });
    } catch {
      // The channel closed under us: send it again on the next one.
      inFlight.delete(id);
      this.toResend.push({ id, after: Date.now() + 200 });
    }
  }

  /** Stops publishing new messages; resolves once every message sent is confirmed, or after `ms`. */
  async drain(ms: number): Promise<void> {
    this.publishing = false;
    const deadline = Date.now() + ms;
    while (this.unconfirmed > 0 && Date.now() < deadline) await sleep(100);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loop;
    await this.connection?.close().catch(() => undefined);
  }
}

// ---- the consumer -------------------------------------------------------------------------

class Consumer {
  readonly deliveries: Delivery[] = [];
  reconnects: number[] = [];
  private connection?: ChannelModel;
  private node: number;
  private generation = 0;
  private closed = false;

  constructor(private readonly urls: string[], startNode: number) {
    this.node = startNode;
  }

  async start(): Promise<void> {
    const { connection, index } = await connectRotating(this.urls, this.node, 'failover lab consumer');
    this.node = index;
    connection.on('error', () => undefined);
    const generation = ++this.generation;
    connection.on('close', () => this.lost(generation));
    this.connection = connection;
    const channel: Channel = await connection.createChannel();
    channel.on('error', () => undefined);
    channel.on('close', () => void connection.close().catch(() => undefined));
    await channel.prefetch(100);
    await channel.consume(
      LAB_QUEUE,
      (msg) => {
        if (!msg) return;
        this.deliveries.push({ id: String(msg.properties.messageId ?? msg.content), at: Date.now(), redelivered: msg.fields.redelivered });
        channel.ack(msg);
      },
      { noAck: false },
    );
  }

  private lost(generation: number): void {
    if (generation !== this.generation || this.closed) return;
    this.reconnects.push(Date.now());
    this.node = (this.node + 1) % this.urls.length;
    void this.start().catch(() => {
      // The connection opened but the consumer could not start: close it, and lost() tries the next node.
      void this.connection?.close().catch(() => undefined);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connection?.close().catch(() => undefined);
  }
}

// ---- the lab --------------------------------------------------------------------------------

function management(info: ClusterInfo, index: number): ManagementClient {
  const node = info.nodes.find((n) => n.index === index)!;
  return new ManagementClient(node.managementUrl, info.username, info.password);
}

/** Polls until `probe` returns something, or `ms` pass (then undefined). */
async function until<T>(probe: () => Promise<T | undefined>, ms: number, every = 100): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await sleep(every);
  }
}

/** The queue's leader once its three members are online and a leader is known. */
async function healthyLeader(ms: number): Promise<number | undefined> {
  return until(async () => {
    const q = await quorumQueueNodes(LAB_VHOST, LAB_QUEUE);
    return q?.leader !== undefined && q.online.length === 3 ? q.leader : undefined;
  }, ms);
}

/** Runs the lab on a cluster that is formed (the command starts it). Deletes its vhost at the end. */
export async function runFailoverLab(opts: FailoverOptions): Promise<FailoverRun> {
  const info = clusterInfo();
  if (!info) throw new Error('The local cluster was never started here: npm run broker -- cluster start');
  const began = Date.now();
  const admin = management(info, 1);
  const version = (await admin.overview())?.rabbitmq_version ?? 'unknown';
  await admin.deleteVhost(LAB_VHOST); // what an interrupted run left
  await admin.createVhost(LAB_VHOST, info.username);
  const urls = labUrls(info);

  // Declared through node 1, so that its leader starts there.
  const setup = await amqp.connect(urls[0]!);
  await (await setup.createChannel()).assertQueue(LAB_QUEUE, QUEUE_OPTIONS);
  await setup.close();
  if ((await healthyLeader(30_000)) === undefined) throw new Error(`The quorum queue "${LAB_QUEUE}" did not get three online members and a leader within 30 s.`);

  const consumer = new Consumer(urls, 2); // node 3
  const publisher = new Publisher(urls, 1); // node 2
  await consumer.start();
  await publisher.start();
  const cycles: Cycle[] = [];
  try {
    for (let index = 1; index <= opts.cycles; index++) {
      publisher.cycle = index;
      opts.progress(`cycle ${index}/${opts.cycles}: publishing, waiting for a healthy queue`);
      await sleep(1000);
      const leader = await healthyLeader(60_000);
      if (leader === undefined) throw new Error(`Cycle ${index}: the queue did not get three online members and a leader within 60 s.`);

      // Confirms of copies sent from just before the kill on; the first of a copy sent after the
      // SIGKILL itself (killNode() first asks epmd whether the node runs: that takes a moment).
      const confirms: { sentAt: number; confirmedAt: number }[] = [];
      let watchFrom = Number.POSITIVE_INFINITY;
      let killAt = Number.POSITIVE_INFINITY;
      const firstConfirm = () => confirms.find((c) => c.sentAt >= killAt)?.confirmedAt;
      publisher.onConfirm = (s) => {
        if (s.sends.at(-1)! >= watchFrom) confirms.push({ sentAt: s.sends.at(-1)!, confirmedAt: s.confirmedAt! });
      };
      const reconnectsBefore = { publisher: publisher.reconnects.length, consumer: consumer.reconnects.length, renewals: publisher.channelRenewals.length };
      opts.progress(`cycle ${index}/${opts.cycles}: killing node ${leader}, the queue's leader`);
      watchFrom = Date.now();
      const kill = await killNode(leader);
      killAt = Date.parse(kill.at); // the moment of the SIGKILL
      opts.progress(`cycle ${index}/${opts.cycles}: node ${leader} killed; waiting for a new leader`);
      const elected = await until(async () => {
        const q = await quorumQueueNodes(LAB_VHOST, LAB_QUEUE);
        return q?.leader !== undefined && q.leader !== leader ? { node: q.leader, at: Date.now() } : undefined;
      }, 60_000);
      opts.progress(`cycle ${index}/${opts.cycles}: waiting for the first confirm after the kill`);
      await until(async () => firstConfirm(), 60_000, 20);
      const firstConfirmAt = firstConfirm();

      opts.progress(`cycle ${index}/${opts.cycles}: starting node ${leader} again`);
      const restart = await startNode(leader, { onWait: (ms) => opts.progress(`cycle ${index}/${opts.cycles}: starting node ${leader} again… ${(ms / 1000).toFixed(1)} s`) });
      const cycle: Cycle = {
        index,
        killed: leader,
        killAt,
        newLeader: elected?.node,
        leaderSeenAt: elected?.at,
        firstConfirmAt,
        restartMs: restart.ms,
        publisherReconnects: publisher.reconnects.length - reconnectsBefore.publisher,
        channelRenewals: publisher.channelRenewals.length - reconnectsBefore.renewals,
        consumerReconnects: consumer.reconnects.length - reconnectsBefore.consumer,
      };
      cycles.push(cycle);
      const fmt = (ms?: number) => (ms === undefined ? 'not seen' : `${(ms / 1000).toFixed(2)} s`);
      opts.say(
        `cycle ${String(index).padStart(2)}: killed node ${leader}, new leader node ${elected?.node ?? '?'} after ${fmt(elected && elected.at - killAt)}, first confirm after ${fmt(firstConfirmAt && firstConfirmAt - killAt)}, node back in ${fmt(restart.ms)}`,
      );
    }

    // Every message confirmed (resending what must be), then every confirmed one delivered.
    opts.progress('all cycles done: waiting for the last confirms');
    await publisher.drain(60_000);
    opts.progress('waiting for the consumer to receive every confirmed message');
    const delivered = () => new Set(consumer.deliveries.map((d) => d.id));
    await until(async () => {
      const got = delivered();
      return [...publisher.sent.values()].every((s) => s.confirmedAt === undefined || got.has(s.id)) ? true : undefined;
    }, 30_000, 200);
    await sleep(1000); // late duplicates
  } finally {
    publisher.onConfirm = undefined;
    await publisher.close();
    await consumer.close();
  }
  const got = new Set(consumer.deliveries.map((d) => d.id));
  const sent = [...publisher.sent.values()];
  const notSettled = sent.filter((s) => s.confirmedAt === undefined || !got.has(s.id)).length;
  await admin.deleteVhost(LAB_VHOST).catch(() => undefined);
  return { sent, deliveries: consumer.deliveries, cycles, version, durationMs: Date.now() - began, notSettled, nacks: publisher.nacks, channelRenewals: publisher.channelRenewals.length };
}

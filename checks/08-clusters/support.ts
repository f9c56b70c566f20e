// Helpers shared by the checks of chapter 8.

import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { CheckContext } from '../../runner/check/context.js';
import type { ConsumerInfo } from '../../runner/broker/management.js';
import { closing, connectionsSince, consumes, type AmqpConnection } from '../../runner/check/frames.js';
import type { CheckCluster } from '../../runner/check/cluster.js';

// ---- exercises 8.1 to 8.3: the cluster broken under the learner's code ----------------------

/**
 * Declares a quorum queue through `node`, so that its leader starts there (RabbitMQ 3.10 places it on
 * the declaring connection's node), and waits until it has a leader and three online members.
 */
export async function declareQuorumQueueOn(t: CheckContext<unknown>, cluster: CheckCluster, queue: string, node: number) {
  const setup = await cluster.channel(node);
  await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await setup.close();
  const placed = await t.waitFor(async () => {
    const p = await cluster.placement(queue);
    return p?.leader && p.online.length === 3 ? p : undefined;
  }, 10_000, 200);
  if (!placed) throw new Error(`the quorum queue "${queue}" had no leader on three online members within 10 s`);
  return placed;
}

/** Reads the frames of each consume on these connections: a prefetch of 10 and manual acks, after declaring the queue. */
export function expectConsumeSetup(t: CheckContext<unknown>, conns: AmqpConnection[], o: { queue: string; where: string; line: number; why: string; fix: string }): void {
  const setups = consumes(conns);
  const bad = setups.find((s) => s.prefetch !== 10 || s.consume.noAck || !s.declared);
  if (setups.length === 0 || bad) {
    t.fail({
      summary: setups.length === 0 ? `Your consumer did not consume ${o.where}.` : `Your consumer consumed ${o.where} ${bad!.consume.noAck ? 'with noAck: true' : bad!.prefetch !== 10 ? `with ${bad!.prefetch === undefined ? 'no prefetch' : `a prefetch of ${bad!.prefetch}`}` : `without declaring "${o.queue}" first`}.`,
      expected: `queue.declare "${o.queue}", basic.qos prefetch_count 10, basic.consume with manual acks, on every connection`,
      saw: setups.map((s) => `${s.declared ? 'declared' : 'no declaration'}, ${s.prefetch === undefined ? 'no prefetch' : `prefetch ${s.prefetch}`}, ${s.consume.noAck ? 'noAck' : 'manual acks'}`).join('; ') || 'no basic.consume',
      why: o.why,
      fix: o.fix,
      link: t.ui('queues', o.queue),
    });
  }
  t.observe(o.line, `read the frames your consumer sent ${o.where}: declared "${o.queue}", prefetch 10, consumed with manual acks`);
}

/**
 * Counts the consumer cancels the broker sends to the channels of this worker (basic.cancel, as
 * amqplib emits it to the consumer's callback), whether or not that callback then throws: the sign
 * that the cancel has arrived. stop() puts amqplib back as it was.
 */
export function countCancels(): { count: () => number; stop: () => void } {
  const require = createRequire(import.meta.url);
  // The package's "exports" hide lib/, so go through the file path of the main entry.
  const lib = path.join(path.dirname(require.resolve('amqplib')), 'lib');
  const proto = (require(path.join(lib, 'channel.js')) as { Channel: { prototype: Record<string, unknown> } }).Channel.prototype;
  const own = Object.prototype.hasOwnProperty.call(proto, 'emit');
  const emit = proto.emit as (this: unknown, event: string | symbol, ...args: unknown[]) => boolean;
  let n = 0;
  proto.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
    if (event === 'cancel') n++;
    return emit.call(this, event, ...args);
  };
  return {
    count: () => n,
    stop: () => {
      if (own) proto.emit = emit;
      else delete proto.emit;
    },
  };
}

/** An ECONNRESET, as a network failure (or a node's death) makes the client see it. */
export function econnreset(): Error {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' });
}

/** Destroys the connection's socket (ECONNRESET) on the first frame the code under check writes to it: a connection that breaks before it is ready. */
export function breakOnFirstWrite(conn: ChannelModel): void {
  const socket = (conn.connection as unknown as { stream: Socket }).stream;
  const write = socket.write;
  socket.write = function (this: Socket) {
    socket.write = write;
    socket.destroy(econnreset());
    return false;
  } as Socket['write'];
}

/** The learner's AMQP connections that are open right now. */
export function openLearnerConnections(): AmqpConnection[] {
  return connectionsSince().filter((c) => !closing(c));
}

/** Resets every open connection of the learner (ECONNRESET), the way a network failure does; returns how many. */
export function resetLearnerConnections(t: CheckContext<unknown>, why: string): number {
  const open = openLearnerConnections();
  for (const c of open) c.socket.destroy(econnreset());
  t.log(`reset your connection${open.length === 1 ? '' : 's'} (local port ${open.map((c) => c.socket.localPort).join(', ') || 'none'}, ECONNRESET): ${why}`);
  return open.length;
}

/** Makes every node refuse new connections to the sandbox vhost (its connection limit set to 0: 530 NOT_ALLOWED), or lifts that. */
export async function refuseConnections(t: CheckContext<unknown>, cluster: CheckCluster, refuse: boolean): Promise<void> {
  const path = `/vhost-limits/${encodeURIComponent(t.vhost)}/max-connections`;
  if (refuse) await cluster.mgmt().request('PUT', path, { value: 0 });
  else await cluster.mgmt().request('DELETE', path);
}

/**
 * Publishes messages through the checker's confirm channel on a node that is up, and waits for the
 * confirms; a message the broker refuses (a nack, e.g. during a leader election) is sent again, up
 * to 50 times, 200 ms apart.
 */
export async function publishThrough(cluster: CheckCluster, exchange: string, routingKey: string, messages: { body: string; messageId?: string }[]): Promise<void> {
  const ch = await cluster.confirmChannel();
  try {
    await publishOn(ch, exchange, routingKey, messages);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * The same on a confirm channel the check keeps. After a kill, use one opened (and used) before it:
 * on 3.10.8, a channel that first publishes to a quorum queue right after its leader's node died
 * was seen to get nothing but nacks for 10 s and more, where one that had published before
 * followed the new leader within a second.
 */
export async function publishOn(ch: ConfirmChannel, exchange: string, routingKey: string, messages: { body: string; messageId?: string }[]): Promise<void> {
  const one = (m: { body: string; messageId?: string }) =>
    new Promise<boolean>((resolve) => ch.publish(exchange, routingKey, Buffer.from(m.body), { persistent: true, messageId: m.messageId, contentType: 'text/plain' }, (err) => resolve(!err)));
  await Promise.all(
    messages.map(async (m) => {
      for (let attempt = 1; !(await one(m)); attempt++) {
        if (attempt === 100) throw new Error(`the broker refused "${m.body}" 100 times`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }),
  );
}

/**
 * The handler the checker passes in: records every call (with the time), fails the first call for
 * the keys in `failOnce`, and can run a hook on a given key (to crash a node at that very moment).
 */
export class RecordingHandler {
  readonly calls: { key: string; at: number; ok: boolean; held?: boolean }[] = [];
  private readonly failed = new Set<string>();
  private hooks = new Map<string, () => void>();

  constructor(private readonly failOnce: string[] = []) {}

  private readonly holds = new Map<string, Promise<void>>();

  readonly handle = async (key: string): Promise<void> => {
    this.hooks.get(key)?.();
    this.hooks.delete(key);
    const held = this.holds.get(key);
    if (held) {
      this.holds.delete(key);
      const call = { key, at: Date.now(), ok: false, held: true };
      this.calls.push(call);
      await held;
      Object.assign(call, { ok: true, held: false, at: Date.now() });
      return;
    }
    if (this.failOnce.includes(key) && !this.failed.has(key)) {
      this.failed.add(key);
      this.calls.push({ key, at: Date.now(), ok: false });
      throw new Error(`the checker's handler fails on ${key}, once`);
    }
    this.calls.push({ key, at: Date.now(), ok: true });
  };

  /** The next call for `key` resolves only when the returned function is called. */
  hold(key: string): () => void {
    let release = () => {};
    this.holds.set(key, new Promise<void>((resolve) => (release = resolve)));
    return () => release();
  }

  /** Whether a call for `key` is held right now. */
  holding(key: string): boolean {
    return this.calls.some((c) => c.key === key && c.held);
  }

  /** Runs `hook` synchronously inside the next call for `key`, before it resolves. */
  on(key: string, hook: () => void): void {
    this.hooks.set(key, hook);
  }

  /** How many calls for `key` resolved (the work was done). */
  done(key: string): number {
    return this.calls.filter((c) => c.key === key && c.ok).length;
  }

  count(key: string): number {
    return this.calls.filter((c) => c.key === key).length;
  }
}

/** "node 2", "nodes 2, 3 and 1". */
export function nodesText(nodes: (number | undefined)[]): string {
  const names = nodes.map((n) => (n === undefined ? '?' : String(n)));
  if (names.length === 1) return `node ${names[0]}`;
  return `nodes ${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
}

// ---- exercises 8.4 and 8.5: consumers as the broker sees them ------------------------------

/**
 * The local port of each of these learner connections, which the broker shows as the client's
 * port. Read it while the connection is open: a closed socket forgets it.
 */
export function localPorts(conns: AmqpConnection[]): number[] {
  return conns.map((c) => c.socket.localPort).filter((p): p is number => typeof p === 'number');
}

/** The client port of a consumer's connection: its peer_port, or the one in its name ("127.0.0.1:40312 -> 127.0.0.1:5672"). */
export function clientPort(c: ConsumerInfo): number | undefined {
  const d = c.channel_details as Partial<ConsumerInfo['channel_details']> | undefined;
  if (typeof d?.peer_port === 'number') return d.peer_port;
  const m = /:(\d+) -> /.exec(d?.connection_name ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * The consumers of `queue` that live on these learner connections, as the management API lists
 * them (with their arguments, prefetch and, under single active consumer, `active`). The API
 * lists a new consumer after a statistics tick or two (and a closed one for a while after), so
 * this waits up to `timeoutMs` for `enough` of them. `ports`: from localPorts(), taken while open.
 */
export async function consumersOn(t: CheckContext<unknown>, queue: string, ports: number[], enough = 1, timeoutMs = 6000): Promise<ConsumerInfo[]> {
  const mine = async () => (await t.consumersOf(queue)).filter((c) => ports.includes(clientPort(c) ?? -1));
  return (await t.waitFor(async () => {
    const found = await mine();
    return found.length >= enough ? found : undefined;
  }, timeoutMs, 100)) ?? (await mine());
}

/** The x-stream-offset a learner's consumer of `queue` asked for; `found` is false when the API did not list it in time. */
export async function consumerArgument(t: CheckContext<unknown>, queue: string, ports: number[]): Promise<{ found: boolean; value?: unknown }> {
  const [consumer] = await consumersOn(t, queue, ports);
  if (!consumer) return { found: false };
  return { found: true, value: consumer.arguments?.['x-stream-offset'] };
}

/** An x-stream-offset as a beginner reads it: 12, "first", (none: "next"), a timestamp. */
export function describeOffsetSpec(value: unknown): string {
  if (value === undefined) return '(none, so "next": the end of the stream)';
  if (typeof value === 'string') return `"${value}"`;
  return JSON.stringify(value);
}

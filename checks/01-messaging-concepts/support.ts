// Helpers for chapter 1's checks that the runner does not have (yet).
import amqp, { type ChannelModel } from 'amqplib';
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { CheckContext } from '../../runner/check/context.js';
import { ignoreSocket } from '../../runner/check/socket-tracker.js';

export interface RecordedFetch {
  method: string;
  /** The URL as the code passed it (a literal space or "/" stays visible). */
  url: string;
  status?: number;
  error?: string;
}

/**
 * Records every fetch() made until restore(): what the code under check asked the
 * management API for, and what it answered. Lets a verdict say "you asked for X".
 */
export function recordFetches(opts: { reorderLists?: boolean } = {}): { requests: RecordedFetch[]; restore: () => void } {
  const original = globalThis.fetch;
  const requests: RecordedFetch[] = [];
  globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const entry: RecordedFetch = { method: (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase(), url };
    requests.push(entry);
    try {
      const response = await original(input, init);
      entry.status = response.status;
      return opts.reorderLists ? await reordered(response) : response;
    } catch (err) {
      entry.error = (err as Error).message;
      throw err;
    }
  };
  return { requests, restore: () => void (globalThis.fetch = original) };
}

/**
 * The same answer with a JSON list reordered: its first item moved to the end. The management
 * API happens to answer sorted by name; reordering shows whether the code sorts, or only trusts
 * that order. (Not reversed: a comparator that always answers -1 turns a reversed list of
 * three back into order.)
 */
async function reordered(response: Response): Promise<Response> {
  if (!response.ok || !(response.headers.get('content-type') ?? '').includes('json')) return response;
  const body: unknown = await response.json();
  const text = JSON.stringify(Array.isArray(body) ? [...body.slice(1), ...body.slice(0, 1)] : body);
  return new Response(text, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/** A connection of the checker's own to another vhost than the sandbox (not counted as the learner's). */
export async function checkerConnection(t: CheckContext<unknown>, vhost: string): Promise<ChannelModel> {
  const connection = await amqp.connect(`${t.broker.amqpUrl}/${encodeURIComponent(vhost)}`, {
    clientProperties: { connection_name: 'workbook checker' },
  });
  ignoreSocket((connection.connection as unknown as { stream?: Socket }).stream);
  connection.on('error', () => undefined); // deleting the vhost closes it; that is expected
  return connection;
}

/** A call of one of amqplib's Channel methods, as the code under check made it. */
export interface ChannelCall {
  method: string;
  args: unknown[];
}

/**
 * Records the code under check's calls of the named Channel methods until restore(). The code
 * under check and the checker load the same amqplib in the same thread, so its Channel class
 * is shared: a verdict can then say "you called bindExchange", not guess it from an error.
 */
export async function recordChannelCalls(t: CheckContext<unknown>, methods: string[]): Promise<{ calls: ChannelCall[]; restore: () => void }> {
  // amqplib exports no Channel class: take its prototype from a channel of the checker's.
  const probe = await t.channel();
  const proto = Object.getPrototypeOf(probe) as Record<string, (...args: unknown[]) => unknown>;
  await probe.close();
  const calls: ChannelCall[] = [];
  const originals = methods.map((m) => [m, proto[m]!] as const);
  for (const [method, original] of originals) {
    proto[method] = function (this: unknown, ...args: unknown[]) {
      calls.push({ method, args });
      return original.apply(this, args);
    };
  }
  return { calls, restore: () => originals.forEach(([m, original]) => (proto[m] = original)) };
}

// ---- closed when the function returns, not a moment later --------------------------------

/**
 * Runs the code under check and notes which of the connections it opened during the call
 * were still open the moment it returned. `t.expectConnectionsClosed` allows a short grace
 * for the close handshake; a function that awaits connection.close() needs none, since
 * amqplib ends the socket before close() resolves. A connection still open at the return,
 * but closed a moment later, is a close() nobody awaited.
 */
export class ReturnWatch {
  /** Local ports of the connections that were still open when a wrapped call returned. */
  late: number[] = [];

  constructor(private readonly amqpPort: number) {}

  static for(t: CheckContext<unknown>): ReturnWatch {
    return new ReturnWatch(Number(new URL(t.broker.amqpUrl).port || 5672));
  }

  async run<R>(fn: () => Promise<R>): Promise<R> {
    const opened: Socket[] = [];
    const onSocket = (message: unknown) => void opened.push((message as { socket: Socket }).socket);
    dc.subscribe('net.client.socket', onSocket);
    try {
      return await fn();
    } finally {
      dc.unsubscribe('net.client.socket', onSocket);
      for (const s of opened) if (s.remotePort === this.amqpPort && !s.destroyed && !s.writableEnded) this.late.push(s.localPort ?? 0);
    }
  }

  /**
   * Fails when a wrapped call returned before its connection was closed. Call it after
   * t.expectConnectionsClosed, whose verdict (a connection never closed) comes first.
   */
  expectClosedOnReturn(t: CheckContext<unknown>, name: string): void {
    const late = this.late;
    this.late = [];
    if (late.length === 0) return;
    t.fail({
      summary: `${name} returned while its connection was still open: it called connection.close() without waiting for it.`,
      expected: `${name} returns once its connection is closed (await connection.close())`,
      saw: `the connection from local port ${late.join(', ')} still open when ${name} returned; it closed a moment later`,
      why: 'close() is asynchronous: it asks the broker to close, and its promise resolves when the broker has answered. Without await, the function reports "done" while the connection is still open, and an error on the way (the connection already closed) becomes an unhandled rejection that can end the process.',
      fix: 'await connection.close(), in a finally block: try { … } finally { await connection.close(); }',
      link: t.ui('connections'),
    });
  }
}

// ---- the channel closed before the connection ---------------------------------------------

/** A connection of the code under check that it closed while one of its channels was still open. */
export interface UnclosedChannel {
  /** The channel's number on its connection. */
  channel: number;
}

/**
 * Records, until restore(), the channels the code under check left open when it closed their
 * connection. amqplib's promise and callback APIs share the classes underneath (lib/channel.js,
 * lib/connection.js), whose closeBecause() every client-side close goes through.
 */
export async function recordChannelsLeftOpen(t: CheckContext<unknown>): Promise<{ left: UnclosedChannel[]; restore: () => void }> {
  const probe = (await t.channel()) as unknown as { connection: object };
  const connectionProto = Object.getPrototypeOf(probe.connection) as Record<string, (...args: unknown[]) => unknown>;
  let channelProto = Object.getPrototypeOf(probe) as Record<string, (...args: unknown[]) => unknown> | null;
  while (channelProto && !Object.prototype.hasOwnProperty.call(channelProto, 'closeBecause')) channelProto = Object.getPrototypeOf(channelProto);
  await (probe as unknown as { close: () => Promise<void> }).close();
  if (!channelProto) throw new Error("amqplib's Channel has no closeBecause(): the check needs updating for this amqplib version");
  const closing = new WeakSet<object>();
  const left: UnclosedChannel[] = [];
  const channelClose = channelProto.closeBecause!;
  const connectionClose = connectionProto.closeBecause!;
  channelProto.closeBecause = function (this: object, ...args: unknown[]) {
    closing.add(this);
    return channelClose.apply(this, args);
  };
  connectionProto.closeBecause = function (this: { channels?: ({ channel: object & { ch?: number } } | null)[] }, ...args: unknown[]) {
    for (const entry of (this.channels ?? []).slice(1)) {
      if (entry && !closing.has(entry.channel)) left.push({ channel: entry.channel.ch ?? 0 });
    }
    return connectionClose.apply(this, args);
  };
  return {
    left,
    restore: () => {
      channelProto!.closeBecause = channelClose;
      connectionProto.closeBecause = connectionClose;
    },
  };
}

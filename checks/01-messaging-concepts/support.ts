// Helpers for chapter 1's checks that the runner does not have (yet).
import amqp, { type ChannelModel } from 'amqplib';
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

// Reads the AMQP 0-9-1 method frames the code under check sends to the broker: a consumer's ack
// mode and prefetch, each declaration, each ack, nack and reject with its delivery tag and bits.
// Exact and immediate, where the management API shows consumers and unacked counts only after a
// statistics tick (1 to 5 s, measured), and where the broker itself shows no difference at all:
// RabbitMQ 3.10 treats a requeued basic.nack and a requeued basic.reject alike, 4.3 does not.
// The worker starts the reader before it imports the code under check (worker-main.ts).
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { Finding } from './verdict.js';

/** A method frame the code under check sent, as the broker reads it. */
export interface SentMethod {
  at: number;
  channel: number;
  name:
    | 'connection.close'
    | 'channel.close'
    | 'exchange.declare'
    | 'queue.declare'
    | 'queue.bind'
    | 'confirm.select'
    | 'basic.qos'
    | 'basic.consume'
    | 'basic.cancel'
    | 'basic.publish'
    | 'basic.ack'
    | 'basic.reject'
    | 'basic.nack';
  /** queue.declare, queue.bind, basic.consume: the queue. */
  queue?: string;
  /** exchange.declare, queue.bind: the exchange; exchange.declare: its type; queue.bind: the binding key. */
  exchange?: string;
  exchangeType?: string;
  routingKey?: string;
  noAck?: boolean;
  deliveryTag?: number;
  multiple?: boolean;
  requeue?: boolean;
  prefetchCount?: number;
}

/** One AMQP connection of the code under check: its socket, when it was opened (and closed), and the methods it sent, in order. */
export interface AmqpConnection {
  socket: Socket;
  opened: number;
  /** When its socket closed, if it has. */
  closed?: number;
  sent: SentMethod[];
  /** The checker's own connection (its client properties name it "workbook checker"). */
  checker: boolean;
  /** The locale the client asked for in connection.start-ok (amqplib takes it from the URL's ?locale=). */
  locale?: string;
}

const METHODS: Record<string, SentMethod['name']> = {
  '10.50': 'connection.close',
  '20.40': 'channel.close',
  '40.10': 'exchange.declare',
  '50.10': 'queue.declare',
  '50.20': 'queue.bind',
  '85.10': 'confirm.select',
  '60.10': 'basic.qos',
  '60.20': 'basic.consume',
  '60.30': 'basic.cancel',
  '60.40': 'basic.publish',
  '60.80': 'basic.ack',
  '60.90': 'basic.reject',
  '60.120': 'basic.nack',
};
const connections: AmqpConnection[] = [];
const listeners = new Set<(c: AmqpConnection, m: SentMethod) => void>();

/** Decodes one method frame's payload (class, method, arguments); undefined for a method this reader does not follow. */
function decode(channel: number, p: Buffer, entry: AmqpConnection): SentMethod | undefined {
  const key = `${p.readUInt16BE(0)}.${p.readUInt16BE(2)}`;
  if (key === '10.11') {
    // connection.start-ok: client properties (a table), mechanism, response, locale
    if (p.includes('workbook checker')) entry.checker = true;
    let at = 4 + 4 + p.readUInt32BE(4);
    at += 1 + p[at]!;
    at += 4 + p.readUInt32BE(at);
    entry.locale = p.toString('utf8', at + 1, at + 1 + p[at]!);
    return undefined;
  }
  const name = METHODS[key];
  if (!name) return undefined;
  const m: SentMethod = { at: Date.now(), channel, name };
  const a = p.subarray(4);
  if (name === 'basic.qos') m.prefetchCount = a.readUInt16BE(4);
  if (name === 'basic.consume' || name === 'queue.declare') {
    const queueLength = a[2]!; // after a reserved short
    m.queue = a.toString('utf8', 3, 3 + queueLength);
    if (name === 'basic.consume') {
      const tagAt = 3 + queueLength;
      m.noAck = (a[tagAt + 1 + a[tagAt]!]! & 2) === 2;
    }
  }
  if (name === 'exchange.declare' || name === 'queue.bind') {
    // After a reserved short: shortstr fields, in order.
    const strings: string[] = [];
    for (let at = 2; strings.length < 3 && at < a.length; at += 1 + a[at]!) strings.push(a.toString('utf8', at + 1, at + 1 + a[at]!));
    if (name === 'exchange.declare') [m.exchange, m.exchangeType] = strings;
    else [m.queue, m.exchange, m.routingKey] = strings;
  }
  if (name === 'basic.ack' || name === 'basic.reject' || name === 'basic.nack') {
    m.deliveryTag = Number(a.readBigUInt64BE(0));
    const bits = a[8]!;
    if (name === 'basic.ack') m.multiple = (bits & 1) === 1;
    if (name === 'basic.reject') [m.multiple, m.requeue] = [false, (bits & 1) === 1];
    if (name === 'basic.nack') [m.multiple, m.requeue] = [(bits & 1) === 1, (bits & 2) === 2];
  }
  return m;
}

/** Reads the frames a socket writes (header: type, channel, size; then the payload and 0xCE). */
function tapSocket(socket: Socket): void {
  const opened = Date.now();
  let entry: AmqpConnection | undefined;
  let decided = false;
  let pending: Buffer = Buffer.alloc(0);
  const feed = (chunk: unknown): SentMethod[] => {
    if (decided && (!entry || entry.checker)) return [];
    const buf = Buffer.isBuffer(chunk) ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk) : typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : undefined;
    if (!buf) return [];
    if (!decided) {
      decided = true;
      if (buf.toString('latin1', 0, 4) !== 'AMQP') return []; // another protocol: the management API, say
      const mine: AmqpConnection = { socket, opened, sent: [], checker: false };
      socket.once('close', () => (mine.closed = Date.now()));
      entry = mine;
      connections.push(entry);
      pending = buf.subarray(8); // the protocol header
    } else {
      pending = pending.length ? Buffer.concat([pending, buf]) : buf;
    }
    const found: SentMethod[] = [];
    while (pending.length >= 8) {
      const size = pending.readUInt32BE(3);
      if (pending.length < size + 8) break;
      if (pending[0] === 1) {
        const m = decode(pending.readUInt16BE(1), pending.subarray(7, 7 + size), entry!);
        if (m) found.push(m);
      }
      pending = pending.subarray(size + 8);
    }
    return found;
  };
  // net.Socket.connect() resets an own write(), so wrap it once connected (before amqplib's header goes out).
  socket.once('connect', () => {
    const write = socket.write;
    socket.write = function (this: Socket, ...args: unknown[]) {
      let found: SentMethod[] = [];
      try {
        found = feed(args[0]);
      } catch {
        entry = undefined; // a frame this reader does not understand: stop reading this connection
      }
      const ok = (write as (...a: unknown[]) => boolean).apply(this, args);
      // Recorded once written: a listener may act on the socket (cut it right after a publish, say).
      for (const m of found) {
        entry!.sent.push(m);
        if (!entry!.checker) for (const listener of listeners) listener(entry!, m);
      }
      return ok;
    } as Socket['write'];
  });
}

let reading = false;

/** Starts reading the frames of every connection opened from now on (once per thread). */
export function startReadingFrames(): void {
  if (reading) return;
  reading = true;
  dc.subscribe('net.client.socket', (message) => tapSocket((message as { socket: Socket }).socket));
}

/** Marks the present: connectionsSince(mark) lists the connections the code under check opened after it. */
export function connectionMark(): number {
  return connections.length;
}

/** The AMQP connections the code under check opened since `mark` (all of them by default), in order. */
export function connectionsSince(mark = 0): AmqpConnection[] {
  return connections.slice(mark).filter((c) => !c.checker);
}

/** Calls `listener` with each method the code under check sends from now on, right after it was written; returns the unsubscribe. */
export function onSent(listener: (c: AmqpConnection, m: SentMethod) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Every method these connections sent, in order, optionally only those named. */
export function sentBy(conns: AmqpConnection[], ...names: SentMethod['name'][]): SentMethod[] {
  return conns.flatMap((c) => c.sent).filter((m) => names.length === 0 || names.includes(m.name));
}

/** Each basic.consume of these connections, with the prefetch in force on its channel then and whether its queue was declared before it on that connection. */
export function consumes(conns: AmqpConnection[]): { connection: AmqpConnection; consume: SentMethod; prefetch?: number; declared: boolean }[] {
  return conns.flatMap((connection) =>
    connection.sent.flatMap((consume, i) => {
      if (consume.name !== 'basic.consume') return [];
      const before = connection.sent.slice(0, i);
      const qos = before.filter((m) => m.name === 'basic.qos' && m.channel === consume.channel).at(-1);
      return [{ connection, consume, prefetch: qos?.prefetchCount, declared: before.some((m) => m.name === 'queue.declare' && m.queue === consume.queue) }];
    }),
  );
}

/** A connection whose close has begun (close handshake done, socket ending) or that is gone. */
export function closing(c: AmqpConnection): boolean {
  return c.socket.writableEnded || c.socket.destroyed;
}

/**
 * Deliveries on the connection's consuming channel(s) that were neither acked, nacked nor
 * rejected, given that `delivered` messages reached it (delivery tags 1…delivered on one
 * channel): 0 for a consumer in no-ack mode. Also returns the consume frame, for the verdict.
 */
export function unsettled(c: AmqpConnection, delivered: number): { count: number; consume?: SentMethod; settled: number } {
  const consume = c.sent.find((m) => m.name === 'basic.consume');
  if (!consume || consume.noAck) return { count: 0, consume, settled: delivered };
  const done = new Set<number>();
  for (const m of c.sent) {
    if (m.channel !== consume.channel || m.deliveryTag === undefined) continue;
    if (m.multiple) for (let tag = 1; tag <= m.deliveryTag; tag++) done.add(tag);
    else done.add(m.deliveryTag);
  }
  const settled = Array.from({ length: delivered }, (_, i) => i + 1).filter((tag) => done.has(tag)).length;
  return { count: delivered - settled, consume, settled };
}

/**
 * The retry rule, as the broker will count it: a failed message is answered with basic.reject
 * (requeue to try it again, no requeue to give it up), and basic.nack only for its allUpTo. A
 * finding for the nacks of single messages among `methods`; undefined when there are none. `when`
 * opens the verdict ("When handle() rejected"), or one for each answer, with requeue and without.
 */
export function nackedInsteadOfRejected(methods: SentMethod[], when: string | { retried: string; dropped: string }): Finding | undefined {
  const nacks = methods.filter((m) => m.name === 'basic.nack' && !m.multiple);
  if (nacks.length === 0) return undefined;
  const retried = nacks.filter((m) => m.requeue).length;
  const dropped = nacks.length - retried;
  const calls = [retried && `channel.nack(msg) ${times(retried)} (basic.nack, requeue)`, dropped && `channel.nack(msg, false, false) ${times(dropped)} (basic.nack, no requeue)`].filter(Boolean).join(' and ');
  const wanted = [retried && 'channel.reject(msg, true) to try a message again', dropped && 'channel.reject(msg, false) to give it up'].filter(Boolean).join(', and ');
  return {
    summary: `${typeof when === 'string' ? when : retried ? when.retried : when.dropped}, your code answered with ${retried ? 'channel.nack(msg)' : 'channel.nack(msg, false, false)'} instead of ${retried ? 'channel.reject(msg, true)' : 'channel.reject(msg, false)'}.`,
    expected: `${wanted} (basic.reject)`,
    saw: `${calls}, on delivery tag${nacks.length === 1 ? '' : 's'} ${nacks.map((m) => m.deliveryTag).join(', ')}`,
    why: retried
      ? 'The message did come back here: RabbitMQ 3.10 counts a requeued nack and a requeued reject alike. RabbitMQ 4.3 does not: a quorum queue no longer counts a basic.nack towards its delivery limit (20 by default), so a message that fails every time and is nacked comes back forever, a poison message nothing stops. A basic.reject with requeue counts on every version.'
      : 'The broker treats the two alike here, but nack is the bulk answer: its allUpTo argument answers every earlier unacknowledged message too. For one message the rule is reject, which says exactly that; and a code base that nacks failures will nack with requeue somewhere, which a quorum queue on RabbitMQ 4.3 no longer counts towards its delivery limit.',
    fix: `${retried ? 'channel.reject(msg, true) when the work failed and may succeed later' : ''}${retried && dropped ? '; ' : ''}${dropped ? 'channel.reject(msg, false) for a message to give up' : ''}. Keep channel.nack() for allUpTo.`,
  };
}

function times(n: number): string {
  return n === 1 ? 'once' : `${n} times`;
}

// The message flow of a check, for the web reader's trace of a failed check (/trace/ID): what the
// code under check sent to the broker and what the broker sent back, per connection and channel.
// Kept cheap for a check that passes: while the check runs, each AMQP socket's chunks are only
// copied into a list (both directions, up to a byte budget); they are decoded into events only
// when the flow is asked for (a failed check, or the reference run beside it).
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

/** One method frame, in the order it crossed the socket. */
export interface FlowEvent {
  /** Milliseconds since the check's start. */
  t: number;
  /** The code under check's connection, 1 for the first it opened. */
  conn: number;
  channel: number;
  /** out: the code under check sent it to the broker; in: the broker sent it. */
  dir: 'out' | 'in';
  method: string;
  /** The few arguments that matter for a sequence (delivery tag, exchange, routing key, reply code…). */
  fields?: Record<string, string | number | boolean>;
  /** The message's properties.messageId, for a publish or a delivery. */
  messageId?: string;
  /** The first characters of the message body (raw: the page escapes them). */
  body?: string;
}

export interface Flow {
  events: FlowEvent[];
  /** What the checker did meanwhile (its steps), at times on the same scale: the diagram shows them between the arrows. */
  notes?: { t: number; text: string }[];
  /** Events past the cap, left out; or true when the byte budget ran out first (how many is not known). */
  truncated?: number | true;
}

/** At most this many events per flow: a publishing loop cannot fill the memory or the page. */
export const MAX_EVENTS = 2000;
/** At most this many bytes of socket traffic kept per check (both directions, all connections). */
export const MAX_BYTES = 4 * 1024 * 1024;
export const BODY_PREVIEW = 60;

interface Chunk {
  at: number;
  dir: 'out' | 'in';
  data: Buffer;
}

interface Tapped {
  chunks: Chunk[];
  checker: boolean;
}

const tapped: Tapped[] = [];
let bytes = 0;
let overBudget = false;

function keep(entry: Tapped, dir: 'out' | 'in', chunk: unknown): void {
  if (overBudget || entry.checker) return;
  const data = Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk) : typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : undefined;
  if (!data) return;
  bytes += data.length;
  if (bytes > MAX_BYTES) {
    overBudget = true;
    return;
  }
  // The checker names itself in connection.start-ok, its second chunk out: from then on its traffic is not kept.
  if (dir === 'out' && entry.chunks.length < 4 && data.includes('workbook checker')) {
    entry.checker = true;
    entry.chunks = [];
    return;
  }
  entry.chunks.push({ at: Date.now(), dir, data });
}

function tapSocket(socket: Socket): void {
  socket.once('connect', () => {
    let entry: Tapped | undefined;
    let decided = false;
    const write = socket.write;
    const push = socket.push;
    socket.write = function (this: Socket, ...args: unknown[]) {
      if (!decided) {
        decided = true;
        // amqplib writes its protocol header as a string; everything after as buffers.
        const first = args[0];
        const start = typeof first === 'string' ? first.slice(0, 4) : first instanceof Uint8Array ? Buffer.from(first.buffer, first.byteOffset, Math.min(4, first.byteLength)).toString('latin1') : '';
        if (start === 'AMQP') {
          entry = { chunks: [], checker: false };
          tapped.push(entry);
        }
      }
      if (entry) keep(entry, 'out', args[0]);
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as Socket['write'];
    socket.push = function (this: Socket, chunk: unknown, encoding?: BufferEncoding) {
      if (entry && chunk !== null) keep(entry, 'in', chunk);
      return push.call(this, chunk, encoding);
    } as Socket['push'];
  });
}

let recording = false;

/** Starts keeping the traffic of every connection opened from now on (once per thread, before the code under check is imported). */
export function startRecordingFlow(): void {
  if (recording) return;
  recording = true;
  dc.subscribe('net.client.socket', (message) => tapSocket((message as { socket: Socket }).socket));
}

/** The flow of the code under check's connections so far, decoded; times relative to `since` (epoch ms). */
export function readFlow(since: number, max = MAX_EVENTS): Flow {
  const all: FlowEvent[] = [];
  tapped
    .filter((c) => !c.checker)
    .forEach((c, i) => all.push(...decodeChunks(c.chunks, i + 1, since)));
  return capFlow(all.sort((a, b) => a.t - b.t), max, overBudget);
}

/**
 * The checker's steps ("12:00:01.120 closed your connection", UTC time of day) on the flow's
 * scale: milliseconds since `since`.
 */
export function stepsAsNotes(steps: string[], since: number): { t: number; text: string }[] {
  const day = new Date(since).toISOString().slice(0, 10);
  return steps.flatMap((line) => {
    const m = /^(\d\d:\d\d:\d\d\.\d\d\d) (.*)$/s.exec(line);
    if (!m) return [];
    let at = Date.parse(`${day}T${m[1]}Z`);
    if (at < since - 12 * 3600_000) at += 24 * 3600_000; // the check ran over midnight
    return [{ t: at - since, text: m[2]! }];
  });
}

/** The first `max` events (stable time order), and how many were left out. */
export function capFlow(events: FlowEvent[], max = MAX_EVENTS, overBudget = false): Flow {
  const flow: Flow = { events: events.slice(0, max) };
  if (events.length > max) flow.truncated = events.length - max;
  else if (overBudget) flow.truncated = true;
  return flow;
}

/** Frames: type (1 method, 2 content header, 3 body), channel, size, payload, 0xCE. Both directions of one connection. */
export function decodeChunks(chunks: Chunk[], conn: number, since: number): FlowEvent[] {
  const events: FlowEvent[] = [];
  const pending: Record<'out' | 'in', Buffer> = { out: Buffer.alloc(0), in: Buffer.alloc(0) };
  // A method that carries a message (publish, deliver, get-ok, return) waits for its header and body, per channel.
  const carrying = new Map<string, { event: FlowEvent; size: number; body: Buffer[] }>();
  for (const chunk of chunks) {
    let buf = pending[chunk.dir].length ? Buffer.concat([pending[chunk.dir], chunk.data]) : chunk.data;
    // The protocol header a client sends first.
    if (chunk.dir === 'out' && buf.toString('latin1', 0, 4) === 'AMQP') buf = buf.subarray(8);
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(3);
      if (buf.length < size + 8) break;
      const type = buf[0]!;
      const channel = buf.readUInt16BE(1);
      const payload = buf.subarray(7, 7 + size);
      buf = buf.subarray(size + 8);
      const key = `${chunk.dir}.${channel}`;
      try {
        if (type === 1) {
          const event = decodeMethod(payload, chunk.dir, conn, channel, chunk.at - since);
          if (!event) continue;
          events.push(event);
          if (CARRIES.has(event.method)) carrying.set(key, { event, size: 0, body: [] });
        } else if (type === 2) {
          const c = carrying.get(key);
          if (!c) continue;
          c.size = Number(payload.readBigUInt64BE(4));
          const id = messageId(payload);
          if (id !== undefined) c.event.messageId = id;
          if (c.size === 0) carrying.delete(key);
        } else if (type === 3) {
          const c = carrying.get(key);
          if (!c) continue;
          c.body.push(payload);
          const got = c.body.reduce((n, b) => n + b.length, 0);
          if (got >= c.size || got >= BODY_PREVIEW * 4) {
            c.event.body = preview(Buffer.concat(c.body));
            carrying.delete(key);
          }
        }
      } catch {
        // A frame this reader does not understand: leave it out, keep reading.
      }
    }
    pending[chunk.dir] = buf;
  }
  return events;
}

const CARRIES = new Set(['basic.publish', 'basic.deliver', 'basic.get-ok', 'basic.return']);

/** The first characters of a body, whole characters only. */
function preview(body: Buffer): string {
  const text = Array.from(body.toString('utf8'));
  return text.length > BODY_PREVIEW ? `${text.slice(0, BODY_PREVIEW).join('')}…` : text.join('');
}

/** Reads AMQP's short strings, long strings, octets… from a method's arguments, in order. */
class Args {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  short(): number {
    const v = this.b.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  long(): number {
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  longlong(): number {
    const v = Number(this.b.readBigUInt64BE(this.at));
    this.at += 8;
    return v;
  }
  octet(): number {
    return this.b[this.at++]!;
  }
  shortstr(): string {
    const n = this.b[this.at]!;
    const v = this.b.toString('utf8', this.at + 1, this.at + 1 + n);
    this.at += 1 + n;
    return v;
  }
  skipLong(): void {
    this.at += 4 + this.b.readUInt32BE(this.at);
  }
}

const NAMES: Record<string, string> = {
  '10.50': 'connection.close',
  '20.40': 'channel.close',
  '40.10': 'exchange.declare',
  '40.20': 'exchange.delete',
  '40.30': 'exchange.bind',
  '50.10': 'queue.declare',
  '50.20': 'queue.bind',
  '50.30': 'queue.purge',
  '50.40': 'queue.delete',
  '50.50': 'queue.unbind',
  '60.10': 'basic.qos',
  '60.20': 'basic.consume',
  '60.30': 'basic.cancel',
  '60.40': 'basic.publish',
  '60.50': 'basic.return',
  '60.60': 'basic.deliver',
  '60.70': 'basic.get',
  '60.71': 'basic.get-ok',
  '60.72': 'basic.get-empty',
  '60.80': 'basic.ack',
  '60.90': 'basic.reject',
  '60.110': 'basic.recover',
  '60.120': 'basic.nack',
  '85.10': 'confirm.select',
};

/** The methods that make a sequence, with their arguments that matter; undefined for the rest (handshakes, -ok replies). */
export function decodeMethod(p: Buffer, dir: 'out' | 'in', conn: number, channel: number, t: number): FlowEvent | undefined {
  const method = NAMES[`${p.readUInt16BE(0)}.${p.readUInt16BE(2)}`];
  if (!method) return undefined;
  // Sent by the broker, only these; sent by the client, not these.
  const fromBroker = ['basic.return', 'basic.deliver', 'basic.get-ok', 'basic.get-empty'].includes(method);
  if (dir === 'out' && fromBroker) return undefined;
  if (dir === 'in' && !fromBroker && !['basic.ack', 'basic.nack', 'channel.close', 'connection.close', 'basic.cancel'].includes(method)) return undefined;
  const a = new Args(p.subarray(4));
  const fields: Record<string, string | number | boolean> = {};
  switch (method) {
    case 'connection.close':
    case 'channel.close':
      fields.code = a.short();
      fields.text = a.shortstr();
      break;
    case 'exchange.declare':
      a.short();
      fields.exchange = a.shortstr();
      fields.type = a.shortstr();
      break;
    case 'exchange.delete':
      a.short();
      fields.exchange = a.shortstr();
      break;
    case 'exchange.bind':
      a.short();
      fields.destination = a.shortstr();
      fields.source = a.shortstr();
      fields.routingKey = a.shortstr();
      break;
    case 'queue.declare':
    case 'queue.purge':
    case 'queue.delete':
      a.short();
      fields.queue = a.shortstr();
      break;
    case 'queue.bind':
    case 'queue.unbind':
      a.short();
      fields.queue = a.shortstr();
      fields.exchange = a.shortstr();
      fields.routingKey = a.shortstr();
      break;
    case 'basic.qos':
      a.long();
      fields.prefetch = a.short();
      if (a.octet() & 1) fields.global = true;
      break;
    case 'basic.consume': {
      a.short();
      fields.queue = a.shortstr();
      a.shortstr();
      if (a.octet() & 2) fields.noAck = true;
      break;
    }
    case 'basic.cancel':
      fields.consumerTag = a.shortstr();
      break;
    case 'basic.publish': {
      a.short();
      fields.exchange = a.shortstr();
      fields.routingKey = a.shortstr();
      if (a.octet() & 1) fields.mandatory = true;
      break;
    }
    case 'basic.return':
      fields.code = a.short();
      fields.text = a.shortstr();
      fields.exchange = a.shortstr();
      fields.routingKey = a.shortstr();
      break;
    case 'basic.deliver':
      a.shortstr();
      fields.tag = a.longlong();
      if (a.octet() & 1) fields.redelivered = true;
      fields.exchange = a.shortstr();
      fields.routingKey = a.shortstr();
      break;
    case 'basic.get':
      a.short();
      fields.queue = a.shortstr();
      if (a.octet() & 1) fields.noAck = true;
      break;
    case 'basic.get-ok':
      fields.tag = a.longlong();
      if (a.octet() & 1) fields.redelivered = true;
      fields.exchange = a.shortstr();
      fields.routingKey = a.shortstr();
      break;
    case 'basic.ack':
    case 'basic.nack':
    case 'basic.reject': {
      fields.tag = a.longlong();
      const bits = a.octet();
      if (method !== 'basic.reject' && bits & 1) fields.multiple = true;
      if (method === 'basic.nack' && dir === 'out') fields.requeue = (bits & 2) === 2; // the broker's nack of a publish has no requeue
      if (method === 'basic.reject') fields.requeue = (bits & 1) === 1;
      break;
    }
    case 'basic.recover':
      fields.requeue = (a.octet() & 1) === 1;
      break;
  }
  const event: FlowEvent = { t, conn, channel, dir, method };
  if (Object.keys(fields).length) event.fields = fields;
  return event;
}

/** properties.messageId from a content header (class, weight, body size, flags, then the properties present, in order). */
function messageId(header: Buffer): string | undefined {
  const flags = header.readUInt16BE(12);
  if (!(flags & (1 << 7))) return undefined;
  const a = new Args(header.subarray(14));
  if (flags & (1 << 15)) a.shortstr(); // content-type
  if (flags & (1 << 14)) a.shortstr(); // content-encoding
  if (flags & (1 << 13)) a.skipLong(); // headers
  if (flags & (1 << 12)) a.octet(); // delivery-mode
  if (flags & (1 << 11)) a.octet(); // priority
  if (flags & (1 << 10)) a.shortstr(); // correlation-id
  if (flags & (1 << 9)) a.shortstr(); // reply-to
  if (flags & (1 << 8)) a.shortstr(); // expiration
  return a.shortstr();
}

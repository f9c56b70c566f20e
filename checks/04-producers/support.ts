// What chapter 4's checks share.
//
// 1. Two windows into amqplib, for what only the client sees:
//    - publishBuffers: how many bytes the code lets pile up in amqplib's per-channel write
//      buffers, the memory a publisher that ignores publish()'s `false` keeps growing;
//    - confirmWindows: the channels the code opens, how many messages each one had published
//      and not yet seen confirmed, and how many were still unconfirmed when it closed; whether
//      it published while publish() had said the buffer was full ('drain' not come yet), and
//      whether a 'return' listener was in place when it published. On request, it hands the
//      broker's answers (acks, nacks) to the code one at a time, a few milliseconds apart, as a
//      broker may send them: code that stops at the first nack then shows it.
//
//    Why not the socket? amqplib writes each channel's frames into an in-memory stream (a
//    PassThrough with a high-water mark of 1,024 frames) and a multiplexer copies them to the
//    socket only while socket.write() returns true. The socket's writableLength therefore
//    never exceeds its own high-water mark (~16 KB), however badly the code behaves: the
//    backlog lives in the channel's buffer. And confirms are bookkept per channel
//    (channel.unconfirmed, one slot per message published and not yet acked or nacked).
//
//    Relies on amqplib internals (lib/connection.js: Connection#freshChannel and
//    this.channels[n].buffer; lib/channel.js: pushConfirmCallback, sendMessage, accept and
//    this.unconfirmed), checked against amqplib 2.3.1. When they change, `available` is false and the checks
//    skip what they cannot see.
//
// 2. The broker playing difficult: refusing messages (a max-length policy with overflow
//    reject-publish), refusing a queue's declaration (406), an exchange that does not exist
//    (404), and the checks that the code under check survives each of them.
import { createRequire } from 'node:module';
import path from 'node:path';
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';
import { CheckFailure } from '../../runner/check/verdict.js';
import { openConnectionsTo } from '../../runner/check/socket-tracker.js';

// ---- 1. amqplib's write buffers and confirm bookkeeping -------------------------------------

interface Stream {
  write(chunk: unknown, ...rest: unknown[]): boolean;
  read(...args: unknown[]): unknown;
}
interface Frame {
  id: number;
  channel?: number;
  fields: { deliveryTag: number; multiple: boolean };
}
interface ChannelInternals {
  unconfirmed?: unknown[];
  constructor: { name: string };
  prependListener(event: string, fn: () => void): void;
  listenerCount(event: string): number;
}
interface ConnectionInternals {
  channels: ({ buffer?: Stream } | null)[];
  /** Copies the channels' buffers to the socket (lib/mux.js); _readIncoming does the copying. */
  muxer?: { _readIncoming?: () => void };
}

/** One channel the code under check opened. */
interface Watched {
  channel: ChannelInternals;
  connection: ConnectionInternals;
  confirm: boolean;
  /** Messages published on it (confirm channels only). */
  published: number;
  /** The most messages it had published and not yet seen confirmed. */
  maxUnconfirmed: number;
  /** Messages still unconfirmed when it closed; undefined while it is open. */
  unconfirmedAtClose?: number;
  /** Messages the broker sent back (basic.return), and how many of them nobody but the checker listened for. */
  returns: number;
  returnsUnheard: number;
  /** Messages published (confirm or plain channel), and how many of them while the code had no 'return' listener. */
  sent: number;
  sentUnheard: number;
  /** publish() returned false and the channel has not emitted 'drain' since. */
  full: boolean;
  /** Messages published while `full`, and the number (0-based, on this channel) of the first one. */
  sentWhileFull: number;
  firstWhileFull?: number;
  /** The broker's answers reach this channel one at a time (see confirmWindows.paceAnswers). */
  paced: boolean;
  /** Paced answers not handed over yet, as single-tag frames; every tag up to `pacedUpTo` is queued or handed over. */
  answers: Frame[];
  pacedUpTo: number;
  pacedAbove: Set<number>;
  pump?: NodeJS.Timeout;
}

const size = (chunk: unknown) => (Buffer.isBuffer(chunk) ? chunk.length : 0);
/** Slots of messages not confirmed yet (amqplib marks confirmed slots inside the window with null). */
const pending = (ch: ChannelInternals) => (ch.unconfirmed ?? []).filter((cb) => cb !== null).length;

let buffersAvailable = false;
let confirmsAvailable = false;
let maxBytes = 0;
let watched: Watched[] = [];
let pacing = false;
/** Milliseconds to hold a connection's outgoing data the first time one of its channels' buffers fills (0: never). */
let stallMs = 0;
const stalled = new WeakSet<object>();
/** Milliseconds between two answers handed over one at a time. */
const PACE_MS = 3;
const byChannel = new WeakMap<object, Watched>();

function install(): void {
  const require = createRequire(import.meta.url);
  // The package's "exports" hide lib/, so go through the file path of the main entry.
  const lib = path.join(path.dirname(require.resolve('amqplib')), 'lib');
  const { Connection } = require(path.join(lib, 'connection.js')) as { Connection?: { prototype: Record<string, unknown> } };
  const { BaseChannel } = require(path.join(lib, 'channel.js')) as { BaseChannel?: { prototype: Record<string, unknown> } };
  let defs: { BasicAck?: number; BasicNack?: number } = {};
  try {
    defs = require(path.join(lib, 'defs.js')) as typeof defs;
  } catch {
    // Answers are then never paced.
  }
  const fresh = Connection?.prototype.freshChannel;
  if (typeof fresh !== 'function') return;
  Connection!.prototype.freshChannel = function (this: ConnectionInternals, channel: ChannelInternals, ...args: unknown[]) {
    const id = (fresh as (...a: unknown[]) => number).call(this, channel, ...args);
    watchChannel(channel, this);
    watchBuffer(this.channels[id]?.buffer);
    return id;
  };
  buffersAvailable = true;
  const push = BaseChannel?.prototype.pushConfirmCallback;
  if (typeof push !== 'function') return;
  BaseChannel!.prototype.pushConfirmCallback = function (this: ChannelInternals, ...args: unknown[]) {
    const result = (push as (...a: unknown[]) => unknown).apply(this, args);
    const w = byChannel.get(this);
    if (w) {
      w.published++;
      // The window's length counts the gaps of out-of-order confirms too: close enough for a maximum.
      w.maxUnconfirmed = Math.max(w.maxUnconfirmed, this.unconfirmed?.length ?? 0);
    }
    return result;
  };
  confirmsAvailable = true;
  // Without these two, what they watch stays at zero: unchecked, never a failure.
  const send = BaseChannel!.prototype.sendMessage;
  const accept = BaseChannel!.prototype.accept;
  if (typeof send !== 'function' || typeof accept !== 'function' || typeof defs.BasicAck !== 'number' || typeof defs.BasicNack !== 'number') return;
  // Every publish (confirm channel or not) goes through sendMessage, which returns the write buffer's answer.
  BaseChannel!.prototype.sendMessage = function (this: ChannelInternals, ...args: unknown[]) {
    const w = byChannel.get(this);
    if (w) {
      if (w.full) {
        w.sentWhileFull++;
        w.firstWhileFull ??= w.sent;
      }
      if (this.listenerCount('return') <= 1) w.sentUnheard++;
      w.sent++;
    }
    const result = (send as (...a: unknown[]) => unknown).apply(this, args);
    if (w && result === false) {
      w.full = true;
      if (stallMs > 0) stall(w.connection);
    }
    return result;
  };
  const answerIds = new Set([defs.BasicAck, defs.BasicNack]);
  BaseChannel!.prototype.accept = function (this: ChannelInternals, f: Frame) {
    const w = byChannel.get(this);
    if (!w?.paced || !answerIds.has(f.id)) return (accept as (f: Frame) => unknown).call(this, f);
    queueAnswers(w, f, accept as (f: Frame) => unknown);
    return undefined;
  };
}

/**
 * Holds the connection's outgoing data for stallMs, once: nothing leaves for the socket, so
 * the channel's buffer stays full and 'drain' cannot come, as on a slow network or with a
 * broker that blocks publishers (a memory or disk alarm).
 */
function stall(connection: ConnectionInternals): void {
  const muxer = connection.muxer;
  if (!muxer || typeof muxer._readIncoming !== 'function' || stalled.has(connection)) return;
  stalled.add(connection);
  muxer._readIncoming = () => undefined;
  setTimeout(() => {
    delete muxer._readIncoming; // the prototype's again
    (muxer as { _readIncoming?: () => void })._readIncoming?.();
  }, stallMs);
}

/**
 * Queues an answer of the broker (an ack or a nack, for one message or, with `multiple`, for
 * every one up to its tag) as one frame per message, and hands them to amqplib one at a time.
 */
function queueAnswers(w: Watched, f: Frame, accept: (f: Frame) => unknown): void {
  const single = (tag: number): Frame => ({ id: f.id, channel: f.channel, fields: { ...f.fields, deliveryTag: tag, multiple: false } });
  const tag = f.fields.deliveryTag;
  if (f.fields.multiple) {
    for (let k = w.pacedUpTo + 1; k <= tag; k++) if (!w.pacedAbove.has(k)) w.answers.push(single(k));
    for (const k of w.pacedAbove) if (k <= tag) w.pacedAbove.delete(k);
    w.pacedUpTo = Math.max(w.pacedUpTo, tag);
  } else {
    w.answers.push(single(tag));
    w.pacedAbove.add(tag);
    while (w.pacedAbove.has(w.pacedUpTo + 1)) w.pacedAbove.delete(++w.pacedUpTo);
  }
  const handOver = () => {
    w.pump = undefined;
    const next = w.answers.shift();
    // A channel that is closing or closed has an accept() of its own: its answers are void.
    if (!next || w.unconfirmedAtClose !== undefined || Object.prototype.hasOwnProperty.call(w.channel, 'accept')) return;
    accept.call(w.channel, next);
    if (w.answers.length > 0) w.pump = setTimeout(handOver, PACE_MS);
  };
  w.pump ??= setTimeout(handOver, PACE_MS);
}

function watchChannel(channel: ChannelInternals, connection: ConnectionInternals): void {
  if (!channel || typeof channel.prependListener !== 'function') return;
  const w: Watched = {
    channel,
    connection,
    confirm: /Confirm/.test(channel.constructor.name),
    published: 0,
    maxUnconfirmed: 0,
    returns: 0,
    returnsUnheard: 0,
    sent: 0,
    sentUnheard: 0,
    full: false,
    sentWhileFull: 0,
    paced: pacing,
    answers: [],
    pacedUpTo: 0,
    pacedAbove: new Set(),
  };
  byChannel.set(channel, w);
  watched.push(w);
  // Before amqplib's own 'close' listener, which empties the window.
  channel.prependListener('close', () => {
    w.unconfirmedAtClose = pending(channel);
    if (w.pump) clearTimeout(w.pump);
    w.answers = [];
  });
  // Before the code's own listeners: the buffer has room again.
  channel.prependListener('drain', () => {
    w.full = false;
  });
  // Sees basic.return arrive, and whether the code under check had a listener for it then.
  channel.prependListener('return', () => {
    w.returns++;
    if (channel.listenerCount('return') <= 1) w.returnsUnheard++;
  });
}

function watchBuffer(buffer: Stream | undefined): void {
  if (!buffer || typeof buffer.write !== 'function' || typeof buffer.read !== 'function') return;
  let waiting = 0; // bytes written by the channel, not yet taken by the multiplexer
  const write = buffer.write.bind(buffer);
  const read = buffer.read.bind(buffer);
  buffer.write = (chunk: unknown, ...rest: unknown[]) => {
    waiting += size(chunk);
    if (waiting > maxBytes) maxBytes = waiting;
    return write(chunk, ...rest);
  };
  buffer.read = (...a: unknown[]) => {
    const chunk = read(...a);
    waiting -= size(chunk);
    return chunk;
  };
}

try {
  install();
} catch {
  buffersAvailable = false;
  confirmsAvailable = false;
}

export const publishBuffers = {
  /** False when amqplib's internals are not what this module expects. */
  get available(): boolean {
    return buffersAvailable;
  },
  /** Forget the maximum seen so far (call it right before the code under check runs). */
  reset(): void {
    maxBytes = 0;
  },
  /** The most bytes that ever waited in one channel's write buffer since reset(). */
  get maxBytes(): number {
    return maxBytes;
  },
  /**
   * From now on, the first time a channel's buffer fills (publish() returns false), hold its
   * connection's outgoing data for `ms` milliseconds (0: never): code that does not wait for
   * 'drain' keeps publishing into the full buffer meanwhile.
   */
  stallWhenFull(ms: number): void {
    stallMs = ms;
  },
};

/** What the confirm bookkeeping of the channels opened since reset() shows. */
export interface ConfirmReport {
  /** False when the code opened no channel this module could see (another client library, or amqplib's internals changed). */
  seen: boolean;
  channels: number;
  confirmChannels: number;
  /** Messages published on confirm channels. */
  published: number;
  /** The most messages one confirm channel had published and not yet seen confirmed. */
  maxUnconfirmed: number;
  /** Messages that were never confirmed: still waiting now, or when their channel closed. */
  unconfirmed: number;
  /** Messages the broker sent back (basic.return). */
  returns: number;
  /** Of those, the ones that arrived while the code had no 'return' listener. */
  returnsUnheard: number;
  /** 'return' listeners the code has on its channels now. */
  returnListeners: number;
  /** Messages published (on any channel), and how many of them while the code had no 'return' listener on that channel. */
  sent: number;
  sentUnheard: number;
  /** Messages published while publish() had said the buffer was full and 'drain' had not come yet. */
  sentWhileFull: number;
  /** The first of them: its number among the messages its channel published (0-based). */
  firstWhileFull?: number;
}

export const confirmWindows = {
  /**
   * Forget the channels seen so far. Call it right before the code under check runs, and read
   * report() right after, with no channel of the checker's own in between.
   */
  reset(): void {
    watched = [];
  },
  /**
   * On: the channels opened from now on get the broker's answers (acks, nacks) one at a time,
   * PACE_MS apart, each for one message, as a broker may send them. Answers the broker grouped
   * (multiple: true) are split. Off again before the checker opens channels of its own.
   */
  paceAnswers(on: boolean): void {
    pacing = on;
  },
  report(): ConfirmReport {
    const confirm = watched.filter((w) => w.confirm);
    return {
      seen: confirmsAvailable && watched.length > 0,
      channels: watched.length,
      confirmChannels: confirm.length,
      published: confirm.reduce((n, w) => n + w.published, 0),
      maxUnconfirmed: Math.max(0, ...confirm.map((w) => w.maxUnconfirmed)),
      unconfirmed: confirm.reduce((n, w) => n + (w.unconfirmedAtClose ?? pending(w.channel)), 0),
      returns: watched.reduce((n, w) => n + w.returns, 0),
      returnsUnheard: watched.reduce((n, w) => n + w.returnsUnheard, 0),
      returnListeners: watched.reduce((n, w) => n + w.channel.listenerCount('return') - 1, 0),
      sent: watched.reduce((n, w) => n + w.sent, 0),
      sentUnheard: watched.reduce((n, w) => n + w.sentUnheard, 0),
      sentWhileFull: watched.reduce((n, w) => n + w.sentWhileFull, 0),
      firstWhileFull: watched.find((w) => w.firstWhileFull !== undefined)?.firstWhileFull,
    };
  },
};

// ---- 2. the broker playing difficult --------------------------------------------------------

type Ctx = CheckContext<unknown>;

/**
 * Calls the code under check and catches its rejection: the outcome, with the error. A call
 * that never ends, or a crash, still ends in t.call's verdict.
 */
export async function settle(t: Ctx, label: string, fn: () => Promise<unknown>, timeoutMs?: number): Promise<{ rejected: false; value: unknown } | { rejected: true; err: unknown }> {
  return t.call(
    label,
    async () => {
      try {
        return { rejected: false as const, value: await fn() };
      } catch (err) {
        return { rejected: true as const, err };
      }
    },
    timeoutMs ? { timeoutMs } : {},
  );
}

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Makes the broker refuse new messages on `queue`: a policy with max-length 0 and overflow
 * reject-publish. A quorum queue applies it a moment later, so the checker publishes probes,
 * one per channel, until the broker nacks one. Then:
 * - 'over' leaves the probes it took in the queue: over its limit, the queue refuses every
 *   message of the next publisher;
 * - 'at' takes them out again: exactly at its limit, the queue takes the first message of the
 *   next publisher and refuses the others (on RabbitMQ 3.10 as on 4.x).
 * Returns false when the broker never refused a probe (the check cannot judge then).
 */
export async function refuseNewMessages(t: Ctx, queue: string, mode: 'at' | 'over'): Promise<boolean> {
  await t.mgmt.setPolicy(t.vhost, `${queue}-limit`, { pattern: `^${queue}$`, 'apply-to': 'queues', definition: { 'max-length': 0, overflow: 'reject-publish' } });
  const refused = await t.waitFor(() => t.brokerRefuses(queue), 3000, 5); // nacked: the policy is in force
  if (mode === 'at') await t.takeMessages(queue, 1000);
  return refused === true;
}

/** Whether an error (or an error it wraps, as `cause`) carries the broker's reply `code` (406, 404). */
export function carriesBrokerError(err: unknown, code: number, name: RegExp): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === code || name.test(messageOf(e))) return true;
  }
  return false;
}

/**
 * t.expectConnectionsClosed, after watching the sockets closely: the close handshake ends a
 * few milliseconds after the function returns, and t.expectConnectionsClosed looks again
 * only every 25 ms. Same verdict, a check that runs several calls gets quicker.
 */
export async function expectClosed(t: Ctx, label: string): Promise<void> {
  const port = Number(new URL(t.broker.amqpUrl).port || 5672);
  await t.waitFor(() => openConnectionsTo(port).length === 0, 500, 2);
  await t.expectConnectionsClosed(label);
}

/** expectClosed, with a verdict that says after what. */
export async function expectClosedAfter(t: Ctx, name: string, after: string): Promise<void> {
  try {
    await expectClosed(t, `${name}, ${after},`);
  } catch (err) {
    if (!(err instanceof CheckFailure)) throw err;
    t.fail({
      ...err.finding,
      summary: `${name} rejected ${after}, but left its connection open.`,
      why: 'The code after the failed call never ran, and the connection.close() at the end of the function with it. A service that retries leaks one connection per attempt, until the broker refuses new ones.',
      fix: 'Close the connection in a finally block, so that it also happens when a call rejects: const connection = await amqp.connect(url); try { … } finally { await connection.close(); }',
    });
  }
}

export interface RefusedQueue {
  /** The contract line that promises to close the connection and pass the error on. */
  line: ContractRef;
  /** How the function is named in verdicts, e.g. "publishAll()". */
  name: string;
  /** The queue the checker declares as a classic queue first. */
  queue: string;
  /** Calls the code under check with `queue`. */
  call: () => Promise<unknown>;
}

/**
 * Declares `queue` as a classic queue, so that the code under check gets 406
 * PRECONDITION_FAILED when it declares it as a quorum queue; then expects its function to
 * reject with that error, without crashing on the channel's 'error' event, to leave no
 * connection open, and to leave the queue as it found it.
 */
export async function expectRefusedQueueHandled(t: Ctx, o: RefusedQueue): Promise<void> {
  const ch = await t.channel();
  await ch.assertQueue(o.queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await ch.close().catch(() => undefined);
  t.provoke(o.line, `declared "${o.queue}" as a classic queue first, so that the broker refuses to declare it as a quorum queue (406 PRECONDITION_FAILED)`);
  const outcome = await settle(t, `${o.name.replace('()', '')}(url, "${o.queue}", …) while "${o.queue}" exists as a classic queue`, o.call);
  const declare = `channel.assertQueue('${o.queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`;
  const now = await t.mgmt.queue(t.vhost, o.queue);
  if (!outcome.rejected) {
    if (now?.type === 'quorum') {
      t.fail({
        summary: `${o.name} deleted the existing queue "${o.queue}" and declared it again, instead of failing when the broker refused the declaration.`,
        expected: `${o.name} rejects with the broker's error (406 PRECONDITION_FAILED) and leaves "${o.queue}" as it found it`,
        saw: `${o.name} resolved, and "${o.queue}" is now a new quorum queue`,
        why: 'Deleting a queue deletes every message in it, and the bindings other applications made to it. A queue declared with other arguments is a mistake a person must look at.',
        fix: `Declare it with ${declare} and let a refusal reject the call; never delete a queue to make a declaration pass.`,
        link: t.ui('queues', o.queue),
      });
    }
    t.fail({
      summary: `The broker refused to declare "${o.queue}" (406 PRECONDITION_FAILED: it exists as a classic queue), but ${o.name} resolved as if everything had been published.`,
      expected: `${o.name} rejects with the broker's error`,
      saw: `${o.name} resolved; "${o.queue}" holds ${now?.messages ?? 0} message(s)`,
      why: 'The caller believes its messages are safe, and they were never published. An error swallowed in a catch block (or logged and forgotten) hides the one message that says what is wrong.',
      fix: 'Do not catch the error, or rethrow it after logging: try { … } finally { await connection.close(); } closes the connection and passes the error on.',
      link: t.ui('queues', o.queue),
    });
  }
  const message = messageOf(outcome.err);
  if (!carriesBrokerError(outcome.err, 406, /PRECONDITION[-_]FAILED/)) {
    const closedTwice = /channel (is )?closed|IllegalOperationError/i.test(`${message} ${(outcome.err as Error)?.name ?? ''}`);
    t.fail({
      summary: closedTwice
        ? `When the broker refused to declare "${o.queue}", ${o.name} rejected with "${message}" instead of the broker's error: it closed a channel the broker had already closed.`
        : `When the broker refused to declare "${o.queue}", ${o.name} rejected with an error that no longer says why: "${message}".`,
      expected: `the broker's error: 406 (PRECONDITION-FAILED) … inequivalent arg 'x-queue-type' for queue '${o.queue}'`,
      saw: `"${message}"`,
      why: closedTwice
        ? 'A refused declaration closes the channel. channel.close() in a finally block then throws "Channel closed", which replaces the broker\'s error, and the lines after it (connection.close()) never run.'
        : "The broker's error is the only place that says what was refused, and why. Replaced by another message, it is lost to whoever reads the logs.",
      fix: closedTwice
        ? 'Close only the connection in finally (it closes its channels): try { … } finally { await connection.close(); }'
        : 'Let the error propagate (or rethrow it, or pass it as { cause: err } when you wrap it).',
    });
  }
  await expectClosedAfter(t, o.name, 'when the broker refused a declaration');
  t.observe(o.line, `saw ${o.name} reject with the broker's error (${message.slice(0, 60)}…) and leave no connection open`);
}

export interface MissingExchange {
  /** The contract line that promises to reject, and not to declare the exchange. */
  declareLine: ContractRef;
  /** The contract line that promises to close the connection. */
  closeLine: ContractRef;
  name: string;
  /** An exchange name that does not exist in the vhost. */
  exchange: string;
  call: () => Promise<unknown>;
}

/**
 * Calls the code under check with an exchange that does not exist: the broker closes its
 * channel (404 NOT_FOUND), the confirm never comes, and amqplib fails the wait with "channel
 * closed". Expects a rejection, no crash on the channel's 'error' event, no connection left
 * open, and no exchange declared by the code under check.
 */
export async function expectMissingExchangeHandled(t: Ctx, o: MissingExchange): Promise<void> {
  t.provoke([o.declareLine, o.closeLine], `called ${o.name} with the exchange "${o.exchange}", which does not exist (the broker answers 404 NOT_FOUND and closes the channel)`);
  const outcome = await settle(t, `${o.name.replace('()', '')}(url, "${o.exchange}", …) with an exchange that does not exist`, o.call, 2500);
  const declared = await t.mgmt.exchange(t.vhost, o.exchange);
  if (declared) {
    t.fail({
      summary: `${o.name} declared the exchange "${o.exchange}" it was given, instead of publishing to an existing one.`,
      expected: `no exchange "${o.exchange}": ${o.name} rejects because it does not exist`,
      saw: `a ${declared.type} exchange "${o.exchange}", declared by your code${outcome.rejected ? '' : `, and ${o.name} resolved`}`,
      why: "The exchange, its type and its bindings belong to the consumers' side. A publisher that declares it guesses its type (a mismatch is a 406 that breaks every later declaration), and when a name is misspelt it creates an exchange nobody is bound to: the messages vanish, and the confirms say all is well.",
      fix: 'Do not call assertExchange in a publisher that is handed an existing exchange: publish to it, and let a missing exchange reject the call.',
      link: t.ui('exchanges', o.exchange),
    });
  }
  if (!outcome.rejected) {
    t.fail({
      summary: `${o.name} resolved with ${JSON.stringify(outcome.value)}, but the exchange "${o.exchange}" does not exist: the broker closed the channel (404 NOT_FOUND) and never confirmed the message.`,
      expected: `${o.name} rejects`,
      saw: `${o.name} resolved with ${JSON.stringify(outcome.value)}`,
      why: 'Publishing to a missing exchange is a channel error: the broker closes the channel and drops the message. Only the confirm says a message was taken; a function that resolves without it tells its caller a lie.',
      fix: 'Wait for the confirm (await channel.waitForConfirms(), which rejects with "channel closed" here), and let that rejection reach the caller.',
      link: t.ui('exchanges'),
    });
  }
  await expectClosedAfter(t, o.name, 'when the exchange did not exist');
  t.observe([o.declareLine, o.closeLine], `saw ${o.name} reject ("${messageOf(outcome.err).slice(0, 60)}"), declare no exchange "${o.exchange}", and leave no connection open`);
}

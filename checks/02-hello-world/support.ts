// Helpers for chapter 2's checks: making the broker refuse, seeing what the code under check
// did with the refusal, and keeping a crash of that code from ending the check before it can
// say which mistake caused it.
import type { GetMessage } from 'amqplib';
import { syncBuiltinESMExports } from 'node:module';
import nodeTimers from 'node:timers';
import nodeTimersPromises from 'node:timers/promises';
import { promisify } from 'node:util';
import type { CheckContext } from '../../runner/check/context.js';
import { openConnectionsTo } from '../../runner/check/socket-tracker.js';

type Ctx = CheckContext<unknown>;

/** How a call of the code under check ended: resolved with a value, or rejected with an error. */
export interface Outcome<R> {
  resolved: boolean;
  value?: R;
  error?: unknown;
}

/** Calls the code under check (through t.call: a hang still fails) and returns how it ended, instead of failing on a rejection. */
export async function outcomeOf<R>(t: Ctx, label: string, fn: () => Promise<R>): Promise<Outcome<R>> {
  return t.call(label, async (): Promise<Outcome<R>> => {
    try {
      return { resolved: true, value: await fn() };
    } catch (error) {
      return { resolved: false, error };
    }
  });
}

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** An error and its causes (new Error('…', { cause: err })), outermost first. */
export function errorChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 5 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/** How a call ended while the broker was slow to answer: see outcomeWhileBrokerIsSlow. */
export interface SlowOutcome<R> extends Outcome<R> {
  /** The bodies the code under check published during the call, in order. */
  published: Buffer[];
  /** The call settled after it published and before the broker's answer (ack or nack) was let through. */
  settledBeforeAnswer: boolean;
  /** How long the broker's answers were held back, in ms. */
  heldMs: number;
}

type Emit = (event: string | symbol, ...args: unknown[]) => boolean;
type Timers = { setTimeout: (...args: unknown[]) => unknown };

/**
 * Calls the code under check (through outcomeOf) the way a busy broker answers: late. amqplib
 * keeps the broker's confirms (ack, nack) from its channels until `holdMs` after its first
 * publish, and the timers the code starts during the call run `speed` times faster (setTimeout,
 * from the global or from node:timers and node:timers/promises) until then, as if the broker
 * took minutes. Its channels also get a write buffer of one frame, so that sendToQueue()
 * returns false (the buffer is full) as when a program publishes faster than the network
 * takes. A function that waits for the confirm waits `holdMs` longer; one that raced it against
 * a timer, or waited for 'drain' instead, settles before the answer. Also records every body
 * the code published. Meant for a call that must reject (the broker refuses): a timer that
 * rejects early is still a rejection. The code under check and the checker share amqplib's
 * classes in this thread.
 */
export async function outcomeWhileBrokerIsSlow<R>(t: Ctx, label: string, fn: () => Promise<R>, { holdMs = 60, speed = 2000 } = {}): Promise<SlowOutcome<R>> {
  const probe = await t.channel();
  let base = Object.getPrototypeOf(probe) as object;
  while (base && !Object.prototype.hasOwnProperty.call(base, 'accept')) base = Object.getPrototypeOf(base) as object;
  const connection = (probe as unknown as { connection: object }).connection;
  let connProto = Object.getPrototypeOf(connection) as object;
  while (connProto && !Object.prototype.hasOwnProperty.call(connProto, 'freshChannel')) connProto = Object.getPrototypeOf(connProto) as object;
  void probe.close().catch(() => undefined); // only its classes were needed
  const channels = base as { emit: Emit; sendMessage: (...args: unknown[]) => unknown };
  const connections = connProto as { freshChannel: (channel: unknown, options?: object) => unknown };
  const original = { hadEmit: Object.prototype.hasOwnProperty.call(base, 'emit'), emit: channels.emit, sendMessage: channels.sendMessage, freshChannel: connections.freshChannel };
  const realSetTimeout = globalThis.setTimeout;
  const warp = warpTimers(speed);

  const published: Buffer[] = [];
  const held: { channel: unknown; event: string; args: unknown[] }[] = [];
  let holding = true;
  let heldMs = 0;
  let firstPublish: number | undefined;
  let releaseTimer: NodeJS.Timeout | undefined;
  const release = () => {
    if (!holding) return;
    holding = false;
    heldMs = firstPublish === undefined ? 0 : Date.now() - firstPublish;
    clearTimeout(releaseTimer);
    warp.stop();
    for (const h of held.splice(0)) {
      try {
        original.emit.call(h.channel, h.event, ...h.args);
      } catch {
        // a channel closed meanwhile has nobody left to tell
      }
    }
  };
  channels.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
    if (holding && (event === 'ack' || event === 'nack')) {
      held.push({ channel: this, event, args });
      return true;
    }
    return original.emit.call(this, event, ...args);
  };
  channels.sendMessage = function (this: unknown, ...args: unknown[]) {
    const content = args[2];
    if (Buffer.isBuffer(content)) published.push(Buffer.from(content));
    if (firstPublish === undefined) {
      firstPublish = Date.now();
      releaseTimer = realSetTimeout(release, holdMs);
    }
    return original.sendMessage.apply(this, args);
  };
  connections.freshChannel = function (this: unknown, channel: unknown, options?: object) {
    return original.freshChannel.call(this, channel, { ...options, highWaterMark: 1 });
  };
  let settledWhileHolding = false;
  try {
    const outcome = await outcomeOf(t, label, async () => {
      warp.start(); // only now: t.call's own time bound is already running, at its real speed
      try {
        return await fn();
      } finally {
        settledWhileHolding = holding;
      }
    });
    return { ...outcome, published, settledBeforeAnswer: settledWhileHolding, heldMs: settledWhileHolding && firstPublish !== undefined ? Date.now() - firstPublish : heldMs };
  } finally {
    release();
    warp.stop();
    if (original.hadEmit) channels.emit = original.emit;
    else delete (channels as { emit?: unknown }).emit;
    channels.sendMessage = original.sendMessage;
    connections.freshChannel = original.freshChannel;
  }
}

/**
 * Fails when `fn` (its refused call run by outcomeWhileBrokerIsSlow) published more than once, or
 * resolved before the broker's answer came through.
 */
export function expectOneAwaitedPublish(t: Ctx, refused: SlowOutcome<unknown>, fn: string, duplicate: string): void {
  if (refused.published.length > 1) {
    t.fail({
      summary: `The broker refused the message, and ${fn} published it again: ${refused.published.length} publishes in one call.`,
      expected: `one publish per call of ${fn}, and the nack passed on to the caller as a rejection`,
      saw: `${refused.published.length} publishes: ${refused.published.map((b) => showBody(b).slice(0, 80)).join(', ')}; ${fn} ${refused.resolved ? 'resolved' : `rejected: ${messageOf(refused.error)}`}`,
      why: `A nack is the broker's answer, not a glitch: here the queue is full and refuses every new message, so the second try is refused too. Where a second try does get through, ${duplicate}. Whether to try again is for the caller to decide.`,
      fix: 'Publish once, await channel.waitForConfirms(), and let its rejection reach the caller: no catch around it that publishes again.',
    });
  }
  if (refused.resolved && refused.settledBeforeAnswer) {
    t.fail({
      summary: `${fn} resolved before the broker had answered its message: it did not wait for the confirm.`,
      expected: `${fn} waits for the broker's answer, however long it takes, and rejects when it is a nack (as it was here)`,
      saw:
        refused.published.length === 0
          ? `${fn} resolved before it had even published (the checker ran your timers fast, as if seconds went by)`
          : `${fn} resolved ${refused.heldMs} ms after it published, while the broker's answer was still on its way (the checker held it back and ran your timers fast, as if seconds went by)`,
      why: "A timer raced against waitForConfirms() (or against the whole function), or waiting for 'drain' (which only says the write buffer has room again), turns \"the broker has not answered yet\" into \"sent\". A busy broker (a memory alarm, a slow disk, a quorum queue waiting for a majority of its nodes) can take seconds to confirm, and may then refuse the message: your caller already believes it is safe.",
      fix: 'await channel.waitForConfirms(), with nothing raced against it, on every path after the publish. If you want a bound on the wait, let the timer reject, never resolve.',
    });
  }
}

/** Until stop(), setTimeout (global, node:timers, node:timers/promises) waits `speed` times less. */
function warpTimers(speed: number): { start: () => void; stop: () => void } {
  const timers = nodeTimers as unknown as Timers;
  const promises = nodeTimersPromises as unknown as Timers;
  const global = globalThis as unknown as Timers;
  const saved = { global: global.setTimeout, timers: timers.setTimeout, promises: promises.setTimeout };
  const fast = (ms: unknown) => (typeof ms === 'number' && ms > 0 ? ms / speed : ms);
  let on = false;
  return {
    start() {
      if (on) return;
      on = true;
      const promised = (ms?: unknown, ...rest: unknown[]) => saved.promises(fast(ms), ...rest);
      const callback = Object.assign((handler: unknown, ms?: unknown, ...rest: unknown[]) => saved.global(handler, fast(ms), ...rest), { [promisify.custom]: promised });
      global.setTimeout = callback;
      timers.setTimeout = callback;
      promises.setTimeout = promised;
      syncBuiltinESMExports();
    },
    stop() {
      if (!on) return;
      on = false;
      global.setTimeout = saved.global;
      timers.setTimeout = saved.timers;
      promises.setTimeout = saved.promises;
      syncBuiltinESMExports();
    },
  };
}

/**
 * t.expectConnectionsClosed(label), after giving the sockets of a connection the code under check
 * has just closed a millisecond or two to report it: the runner's helper looks every 25 ms.
 */
export async function expectClosed(t: Ctx, label: string): Promise<void> {
  const port = Number(new URL(t.broker.amqpUrl).port || 5672);
  await t.waitFor(() => openConnectionsTo(port).length === 0, 50, 1);
  await t.expectConnectionsClosed(label);
}

/**
 * A policy on `queue`: no room for any message, and new ones are refused, so the broker nacks
 * every publish. A quorum queue refuses only once it is over its limit, and takes a policy on
 * a moment after it is set: the checker puts one message in, then publishes probes until the
 * broker nacks one. `queue` holds the checker's messages afterwards ("already here", probes).
 */
export async function refuseNewMessages(t: Ctx, queue: string): Promise<void> {
  await t.publish(queue, ['already here']);
  await t.mgmt.setPolicy(t.vhost, 'refuse-new-messages', { pattern: `^${queue}$`, definition: { 'max-length': 0, overflow: 'reject-publish' }, 'apply-to': 'queues' });
  const ch = await t.confirmChannel();
  try {
    const refused = await t.waitFor(async () => {
      ch.sendToQueue(queue, Buffer.from('probe: is the policy on?'));
      return ch.waitForConfirms().then(
        () => false,
        () => true,
      );
    }, 2000, 10);
    if (!refused) throw new Error(`the broker still takes messages on "${queue}" 2 s after the policy max-length 0, reject-publish was set`);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** Declares `queue` as a classic queue first, so that declaring it as a quorum queue fails (406 PRECONDITION_FAILED). */
export async function takeNameAsClassic(t: Ctx, queue: string): Promise<void> {
  const ch = await t.channel();
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await ch.close();
}

/** How a body reads to a person: the text, and its bytes when they are not valid UTF-8. */
export function showBody(content: Buffer): string {
  const text = content.toString('utf8');
  return Buffer.from(text, 'utf8').equals(content) ? JSON.stringify(text) : `${JSON.stringify(text)} (bytes ${content.toString('hex').slice(0, 80)}: not valid UTF-8)`;
}

/** deliveryMode as a beginner reads it. */
export const persistence = (m: GetMessage) => (m.properties.deliveryMode === 2 ? 'persistent (deliveryMode 2)' : `deliveryMode ${m.properties.deliveryMode ?? 'not set'} (transient)`);

/**
 * Fails when `fn` returned while a waitForConfirms() it started (since index `since` of `waits`)
 * had not resolved: the await is missing, and the function closed the connection under it.
 */
export function expectConfirmsAwaited(t: Ctx, waits: ConfirmWait[], since: number, fn: string): void {
  const unsettled = waits.slice(since).find((w) => w !== 'resolved');
  if (!unsettled) return;
  t.fail({
    summary: `${fn} returned before its waitForConfirms() had resolved: the confirm was not awaited.`,
    expected: `${fn} returns once await channel.waitForConfirms() has resolved`,
    saw: `waitForConfirms() ${unsettled === 'pending' ? 'still pending' : 'rejected, because the connection was closed under it,'} when ${fn} returned`,
    why: 'Without await, the function goes straight on and closes the connection: the message may still be on its way, and lost, and the rejection that would say so reaches nobody (Node ends the process over it).',
    fix: 'await channel.waitForConfirms();',
  });
}

/**
 * Records calls of ConfirmChannel#waitForConfirms and how they ended, until restore(). The
 * code under check and the checker load the same amqplib in this thread, so the class is
 * shared: a verdict can then tell "never waited for the confirm" from "waited, got the
 * broker's refusal, and dropped it".
 */
export type ConfirmWait = 'pending' | 'resolved' | 'rejected';

export async function recordConfirmWaits(t: Ctx): Promise<{ waits: ConfirmWait[]; restore: () => void }> {
  const probe = await t.confirmChannel();
  const proto = Object.getPrototypeOf(probe) as { waitForConfirms: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const original = proto.waitForConfirms;
  const waits: ConfirmWait[] = [];
  proto.waitForConfirms = function (this: unknown, ...args: unknown[]) {
    const i = waits.push('pending') - 1;
    // Returns the derived promise, so a rejection nobody handles stays unhandled, as without the record.
    return original.apply(this, args).then(
      (value) => ((waits[i] = 'resolved'), value),
      (err: unknown) => {
        waits[i] = 'rejected';
        throw err;
      },
    );
  };
  return { waits, restore: () => void (proto.waitForConfirms = original) };
}

/**
 * Records, until restore(), each time amqplib hands a consumer the broker's cancel (the consume
 * callback gets null), and what that callback threw. A channel binds its cancel handler when it
 * is created: record before the code under check opens its channel. Should amqplib rename the
 * handler, nothing is recorded and the check falls back on what the broker shows.
 */
export async function recordCancels(t: Ctx): Promise<{ cancels: { threw?: unknown }[]; restore: () => void }> {
  const probe = await t.channel();
  const proto = Object.getPrototypeOf(probe) as { handleCancel?: (...args: unknown[]) => unknown };
  await probe.close();
  const original = proto.handleCancel;
  const cancels: { threw?: unknown }[] = [];
  if (typeof original !== 'function') return { cancels, restore: () => undefined };
  proto.handleCancel = function (this: unknown, ...args: unknown[]) {
    const entry: { threw?: unknown } = {};
    cancels.push(entry);
    try {
      return original.apply(this, args);
    } catch (err) {
      entry.threw = err;
      throw err;
    }
  };
  return { cancels, restore: () => void (proto.handleCancel = original) };
}

/**
 * Records, until restore(), every error a channel reports (the broker closing it: PRECONDITION_FAILED,
 * NOT_FOUND…), whether or not the code under check listens for it. The code under check and the
 * checker share amqplib's Channel class in this thread; the checker's own channels raise none.
 */
export async function recordChannelErrors(t: Ctx): Promise<{ errors: Error[]; restore: () => void }> {
  const probe = await t.channel();
  const proto = Object.getPrototypeOf(probe) as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
  await probe.close();
  const hadOwn = Object.prototype.hasOwnProperty.call(proto, 'emit');
  const original = proto.emit;
  const errors: Error[] = [];
  proto.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
    if (event === 'error' && args[0] instanceof Error) errors.push(args[0]);
    return original.call(this, event, ...args);
  };
  return {
    errors,
    restore: () => {
      if (hadOwn) proto.emit = original;
      else delete (proto as { emit?: unknown }).emit;
    },
  };
}

/** An error the code under check left unhandled: which event reported it, and the error. */
export interface Crash {
  event: 'uncaughtException' | 'unhandledRejection';
  error: unknown;
}

/** An error that amqplib raised: the broker or the network closing a channel or a connection, a confirm refused or cut short. */
export const isAmqpError = (err: unknown) => /Channel closed|Connection clos|ECONNRESET|Heartbeat timeout|Unexpected close|nacked|socket/i.test(messageOf(err));

/**
 * Until restore(), an error the code under check leaves unhandled (an 'error' event with no
 * listener, a rejection nobody catches) that `nameable` accepts is recorded here instead of
 * ending the check at once, so that the check can name the mistake that caused it. Any other
 * crash, and any crash after restore(), ends the check as usual, with a verdict that points
 * into the learner's file (runner/check/worker-main.ts).
 */
export function catchCrashes(nameable: (crash: Crash) => boolean = (c) => isAmqpError(c.error)): { crashes: Crash[]; restore: () => void } {
  const events = ['uncaughtException', 'unhandledRejection'] as const;
  const saved = new Map(events.map((e) => [e, process.listeners(e as 'uncaughtException') as ((err: unknown) => void)[]]));
  const crashes: Crash[] = [];
  const recorders = events.map(
    (event) =>
      [
        event,
        (error: unknown) => {
          const crash = { event, error };
          if (nameable(crash)) crashes.push(crash);
          else for (const l of saved.get(event)!) l(error);
        },
      ] as const,
  );
  for (const [event, record] of recorders) {
    process.removeAllListeners(event);
    process.on(event as 'uncaughtException', record);
  }
  return {
    crashes,
    restore() {
      for (const [event, record] of recorders) process.removeListener(event, record);
      for (const [event, listeners] of saved) for (const l of listeners) process.on(event as 'uncaughtException', l);
    },
  };
}

/** Fails when the code under check crashed `during` something the checker did, naming the likely mistake. */
export function expectNoCrash(t: Ctx, crashes: Crash[], during: string): void {
  const [crash] = crashes;
  if (!crash) return;
  const message = messageOf(crash.error);
  if (crash.event === 'uncaughtException' && isAmqpError(crash.error)) {
    t.fail({
      summary: `Your code crashed the process ${during}: an 'error' event that nobody listens for.`,
      expected: "the error handled by a connection.on('error', …) listener",
      saw: `uncaught: ${message}`,
      why: "When the broker closes a channel or a connection, or the network drops it, amqplib emits 'error' on the connection. In Node, an 'error' event with no listener ends the whole process: a real service would die here, and every message in its hands would be redelivered to someone else.",
      fix: "connection.on('error', (err) => console.error(`connection error: ${err.message}`)) right after amqp.connect(url).",
    });
  }
  t.fail({
    // The error's own words go into the summary: "unknown delivery tag" names a double ack better than any guess.
    summary: `Your code crashed the process ${during}: ${crash.event === 'unhandledRejection' ? 'a promise rejected and nobody handled it' : 'an error was thrown outside of any call'} (${message.split('\n')[0]!.slice(0, 160)}).`,
    expected: 'every error handled, or passed on to the caller',
    saw: `${crash.event === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception'}: ${message}`,
    why: 'In Node, a rejection nobody handles, or an error thrown in a callback, ends the whole process.',
    fix: 'await (or .catch) every promise you start, and give every rejection a handler.',
  });
}

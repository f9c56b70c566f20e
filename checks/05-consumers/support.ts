// Small helpers for chapter 5's checks: the failures they cause (a refused declaration, a reset
// connection, a cut before the confirm) and the handler they pass in (one that holds, fails, hangs).
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';
import { CheckFailure } from '../../runner/check/verdict.js';
import { openConnectionsTo } from '../../runner/check/socket-tracker.js';

type Ctx = CheckContext<unknown>;

export const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/** Wall-clock time for a verdict, e.g. "12:00:01". */
export function clock(date = new Date()): string {
  return date.toISOString().slice(11, 19);
}

/** Waits `ms` (only where the broker itself needs time to pass, e.g. a TTL running out). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Closes the connection of `queue`'s consumer as an operator would ("Force Close" in the UI); fails the check when it cannot. */
export async function closeAsOperator(t: Ctx, queue: string): Promise<void> {
  if (!(await t.closeConnectionOfConsumer(queue, 'closed by the workbook checker, as an operator would'))) {
    t.fail({
      summary: `The checker could not close your connection: the management API did not list the consumer on "${queue}" and its connection within 8 s.`,
      why: 'The checker finds the connection to close through the management API, which lists consumers and connections only after a statistics tick.',
      fix: 'Run the check again; if it keeps failing, look at the broker with npm run doctor.',
    });
  }
}

/** How many connections to the broker the code under check has open right now (seen at the socket, at once). */
export function learnerConnectionsOpen(t: Ctx): number {
  return openConnectionsTo(Number(new URL(t.url).port || 5672)).length;
}

/** Declares `queue` with the checker's own channel (as someone else would have), with `options`. */
export async function declareAsSomeoneElse(t: Ctx, queue: string, options: { durable: boolean; arguments: Record<string, unknown> }): Promise<void> {
  const ch = await t.channel();
  try {
    await ch.assertQueue(queue, options);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * The broker refuses the declaration: `queue` exists already with other arguments (declared
 * here first, as `existing`), so the learner's assertQueue gets 406 PRECONDITION_FAILED and its
 * channel is closed. Expected: `call` rejects with that error (not a made-up one), the process
 * does not crash (an 'error' listener on the channel), and no connection is left open.
 */
export async function expectRefusedDeclaration(
  t: Ctx,
  o: { lines: ContractRef[]; queue: string; existing: { durable: boolean; arguments: Record<string, unknown> }; what: string; label: string; call: () => Promise<unknown> },
): Promise<void> {
  await declareAsSomeoneElse(t, o.queue, o.existing);
  t.provoke(o.lines, `declared "${o.queue}" first as ${o.what}, so that the broker refuses your declaration of it (406 PRECONDITION_FAILED)`);
  const outcome = await t.call(o.label, async () => {
    try {
      await o.call();
      return { resolved: true as const };
    } catch (err) {
      return { resolved: false as const, message: err instanceof Error ? err.message : String(err) };
    }
  });
  if (outcome.resolved) {
    t.fail({
      summary: `${o.label} resolved, although the broker refused to declare "${o.queue}".`,
      expected: 'a rejection with the broker\'s error (406 PRECONDITION_FAILED, inequivalent arg …)',
      saw: `${o.label} resolved`,
      why: 'When the declaration fails, nothing works behind it: there is no consumer, or no message. A caller told "done" goes on as if all was well, and the error is lost.',
      fix: 'Do not catch the error to carry on: let it reach the caller (close the connection first, then throw it again).',
    });
  }
  if (/^Connection closed \(/.test(outcome.message ?? '')) {
    t.fail({
      summary: `${o.label} rejected with "${outcome.message?.slice(0, 120)}…": amqplib had closed your whole connection because of the channel's error, so closing it yourself failed.`,
      expected: "the declaration's own error (Operation failed: QueueDeclare; 406 …), the connection closed by your code",
      saw: JSON.stringify(outcome.message),
      why: "A channel 'error' that nobody listens to does not stay on the channel: amqplib 2 turns it into an error of the whole connection and closes it, with every other channel on it. Here that closed the connection under you; in a running service it takes down everything that shares the connection.",
      fix: "channel.on('error', (err) => console.error(err.message)) right after createChannel().",
    });
  }
  if (!/PRECONDITION|406|inequivalent/i.test(outcome.message ?? '')) {
    t.fail({
      summary: `${o.label} rejected, but not with the broker's error: "${outcome.message}".`,
      expected: "the broker's error: 406 (PRECONDITION-FAILED) … inequivalent arg …",
      saw: JSON.stringify(outcome.message),
      why: 'The broker says exactly what it refused and why. An error of your own (or the "Channel closed" of a later call) hides that, and whoever reads the log has to guess.',
      fix: 'Rethrow the error you caught (throw err), after closing the connection.',
    });
  }
  try {
    await t.expectConnectionsClosed(o.label);
  } catch (err) {
    if (!(err instanceof CheckFailure)) throw err;
    t.fail({
      ...err.finding,
      summary: `${o.label} rejected with the broker's error, but left its connection open.`,
      expected: 'the connection closed before the error reaches the caller',
      why: 'The caller got an error, not an object to stop: nobody will ever close that connection. A service that retries its start leaks one connection per attempt.',
      fix: 'Wrap everything after amqp.connect() in try { … } catch (err) { await connection.close(); throw err; }.',
    });
  }
  t.observe(o.lines, `${o.label} rejected with the broker's error (${outcome.message?.slice(0, 90)}…), without crashing, and closed its connection`);
}

/**
 * Resets the learner's connections (ECONNRESET, like a network failure) and gives the error
 * event a moment to arrive. An 'error' nobody listens to crashes the process, which the
 * worker reports as such; when nothing crashed, the listener was there.
 */
export async function expectSurvivesReset(t: Ctx, lines: ContractRef[], what: string): Promise<void> {
  t.provoke(lines, `reset your connection (ECONNRESET, like a network failure) ${what}`);
  t.cutConnections('a network failure');
  await pause(50); // the socket's 'error' comes on the next turn of the event loop
  t.observe(lines, "your process is still running after the reset: an 'error' listener took it");
}

/**
 * Cuts the learner's connection (ECONNRESET) right after it writes its first basic.publish, so
 * that the broker's confirm can never arrive. Watches only sockets opened after the call.
 */
export function cutAfterFirstPublish(t: Ctx): { cut: () => boolean; dispose: () => void } {
  const port = Number(new URL(t.url).port || 5672);
  let done = false;
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket }).socket;
    // Node sets up the socket's write() after announcing it: wrap it once the socket is connected.
    socket.once('connect', () => {
      if (socket.remotePort !== port) return;
      const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
      socket.write = ((chunk: unknown, ...rest: unknown[]) => {
        const ok = write(chunk, ...rest);
        if (!done && Buffer.isBuffer(chunk) && holdsPublish(chunk)) {
          done = true;
          t.log('your code published: the checker resets its connection before the broker can confirm (ECONNRESET)');
          // At once: a confirm read before the reset would make the learner's close() wait forever (amqplib).
          socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
        }
        return ok;
      }) as Socket['write'];
    });
  };
  dc.subscribe('net.client.socket', onSocket);
  return { cut: () => done, dispose: () => dc.unsubscribe('net.client.socket', onSocket) };
}

/** True when the AMQP frames in `chunk` include a basic.publish (class 60, method 40). */
function holdsPublish(chunk: Buffer): boolean {
  for (let at = 0; at + 11 <= chunk.length; ) {
    const type = chunk[at];
    const size = chunk.readUInt32BE(at + 3);
    if (type === 1 && chunk.readUInt16BE(at + 7) === 60 && chunk.readUInt16BE(at + 9) === 40) return true;
    at += 7 + size + 1;
  }
  return false;
}

/** What the checker's handler does with one message: resolve at once, hold until released, never settle, or reject first. */
export type Plan = { kind: 'ok' } | { kind: 'hold' } | { kind: 'hang' } | { kind: 'fail'; times: number };

/**
 * The handler the checker passes in, scripted per message: each call is recorded (with its
 * argument as given, to see its type), and `plan(key)` decides what the call does.
 */
export class ScriptedHandler<V> {
  /** Every call, in order, with the argument as given. */
  readonly calls: V[] = [];
  private readonly failures = new Map<string, number>();
  private readonly held = new Map<string, (() => void)[]>();
  private readonly done = new Set<string>();

  constructor(
    private readonly key: (value: V) => string,
    private readonly plan: (key: string) => Plan,
  ) {}

  readonly handle = (value: V): Promise<void> => {
    this.calls.push(value);
    const key = this.key(value);
    const plan = this.plan(key);
    if (plan.kind === 'fail') {
      const failed = this.failures.get(key) ?? 0;
      if (failed < plan.times) {
        this.failures.set(key, failed + 1);
        return Promise.reject(new Error(`the checker's handler fails on ${key} (failure ${failed + 1} of ${plan.times})`));
      }
    }
    if (plan.kind === 'hang') return new Promise<void>(() => undefined);
    if (plan.kind === 'hold') return new Promise<void>((resolve) => this.held.set(key, [...(this.held.get(key) ?? []), resolve])).then(() => void this.done.add(key));
    this.done.add(key);
    return Promise.resolve();
  };

  /** How many times the handler got `key`. */
  count(key: string): number {
    return this.calls.filter((v) => this.key(v) === key).length;
  }

  /** How many calls for `key` are held right now. */
  heldCount(key: string): number {
    return this.held.get(key)?.length ?? 0;
  }

  /** Lets every held call for `key` resolve. */
  release(key: string): void {
    for (const resolve of this.held.get(key) ?? []) resolve();
    this.held.delete(key);
  }

  finished(key: string): boolean {
    return this.done.has(key);
  }
}

// Small helpers for chapter 5's checks: the failures they cause (a refused declaration, a reset
// connection, a cut before the confirm), a broker that proposes another heartbeat, and the handler
// they pass in (one that holds, fails, hangs).
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';
import { CheckFailure } from '../../runner/check/verdict.js';
import { openConnectionsTo } from '../../runner/check/socket-tracker.js';
import { onSent } from '../../runner/check/frames.js';

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

/**
 * Deletes `queue` under the learner's consumer: the broker cancels the consumer, and amqplib
 * calls the message callback with null. Fails when the learner's connection closed over it (the
 * callback threw on the null), or was replaced by a new one (a recovering consumer reconnected).
 * `under` names the consumer in the log, e.g. "the second consumer".
 */
export async function expectSurvivesQueueDeletion(t: Ctx, o: { queue: string; lines: ContractRef[]; under: string }): Promise<void> {
  const openedBefore = t.connectionsOpened();
  const ch = await t.channel();
  await ch.deleteQueue(o.queue);
  await ch.close();
  t.provoke(o.lines, `deleted "${o.queue}" under ${o.under}: the broker cancels it, and amqplib calls your callback with null`);
  const closed = () => learnerConnectionsOpen(t) === 0 || t.connectionsOpened() > openedBefore;
  // The cancel reaches your connection a moment later, later still on a busy machine: give a throw time to show.
  await t.waitFor(closed, 400, 10);
  if (closed()) {
    t.fail({
      summary: `When the broker cancelled your consumer (the checker deleted "${o.queue}"), your message callback threw, and amqplib closed your connection.`,
      expected: 'the callback returns at once on a null message; the connection stays open',
      saw: 'your connection closed right after the cancel',
      why: 'When the broker cancels a consumer (its queue was deleted, or a quorum queue lost its leader), amqplib calls the callback once more, with null. msg.content on null throws, inside amqplib: it takes that for a broken connection and closes it, with every other consumer and publisher on it.',
      fix: 'Begin the callback with: if (msg === null) return;',
      link: t.ui('connections'),
    });
  }
  t.observe(o.lines, 'your connection is still open after the null message: the callback skipped it');
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
 * What a running consumer meets, in turn: its queue deleted under it (amqplib passes the callback
 * a null), its connection reset (ECONNRESET), and then a start whose declaration the broker
 * refuses (`<queue>.legacy` exists as a classic queue). It must survive the first two, and reject
 * with the broker's error and close its connection on the third. `start(queue)` starts another
 * consumer of `queue`, and names the call.
 */
export async function expectSurvivesDeletionResetAndRefusal(
  t: Ctx,
  o: { queue: string; under: string; lines: { deletion: ContractRef[]; errors: ContractRef[] }; start: (queue: string) => { label: string; call: () => Promise<unknown> } },
): Promise<void> {
  await expectSurvivesQueueDeletion(t, { queue: o.queue, lines: o.lines.deletion, under: o.under });
  await expectSurvivesReset(t, o.lines.errors, `of ${o.under}`);
  const legacy = `${o.queue}.legacy`;
  await expectRefusedDeclaration(t, { lines: o.lines.errors, queue: legacy, existing: { durable: true, arguments: { 'x-queue-type': 'classic' } }, what: 'a classic queue', ...o.start(legacy) });
}

/**
 * Cuts the learner's connection (ECONNRESET) right after it writes its first basic.publish, so
 * that the broker's confirm can never arrive.
 */
export function cutAfterFirstPublish(t: Ctx): { cut: () => boolean; dispose: () => void } {
  let done = false;
  const dispose = onSent((c, m) => {
    if (done || m.name !== 'basic.publish') return;
    done = true;
    t.log('your code published: the checker resets its connection before the broker can confirm (ECONNRESET)');
    // At once: a confirm read before the reset would make the learner's close() wait forever (amqplib).
    c.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
  });
  return { cut: () => done, dispose };
}

/**
 * Plays a broker whose heartbeat proposal is `seconds` (rabbitmq.conf: heartbeat = …) for the
 * connections the code under check opens from now on: rewrites the heartbeat of the
 * connection.tune they read. A client with no preference accepts it, and tells the broker so
 * in its tune-ok, which the management API then reports. Answers, by local port, whose
 * connection got the proposal.
 */
export function proposeHeartbeat(t: Ctx, seconds: number): { proposedTo: (localPort: number | undefined) => boolean; dispose: () => void } {
  const port = Number(new URL(t.url).port || 5672);
  const proposed = new Set<number>();
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket }).socket;
    socket.once('connect', () => {
      if (socket.remotePort !== port) return;
      const read = socket.read;
      let skip = 0; // bytes of a frame begun in an earlier chunk
      socket.read = function (this: Socket, ...args: unknown[]) {
        const chunk = (read as (...a: unknown[]) => unknown).apply(this, args);
        if (!Buffer.isBuffer(chunk)) return chunk;
        let at = skip;
        // Frames: type, channel (2), size (4), payload, 0xCE. connection.tune: class 10, method 30,
        // channel-max (2), frame-max (4), heartbeat (2).
        for (; at + 7 <= chunk.length; at += 8 + chunk.readUInt32BE(at + 3)) {
          if (chunk[at] === 1 && at + 19 <= chunk.length && chunk.readUInt16BE(at + 7) === 10 && chunk.readUInt16BE(at + 9) === 30) {
            chunk.writeUInt16BE(seconds, at + 17);
            proposed.add(socket.localPort ?? 0);
            socket.read = read; // the handshake is past: read as usual
            return chunk;
          }
        }
        if (at < chunk.length) socket.read = read; // a frame header split across reads: give up
        skip = at - chunk.length;
        return chunk;
      } as Socket['read'];
    });
  };
  dc.subscribe('net.client.socket', onSocket);
  return { proposedTo: (localPort) => localPort !== undefined && proposed.has(localPort), dispose: () => dc.unsubscribe('net.client.socket', onSocket) };
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

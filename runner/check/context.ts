// The vocabulary a check is written in. One CheckContext per check run, inside the
// check worker: it holds the code under check (`target`), the sandbox vhost's URL,
// a management API client, the checker's own AMQP connection, and helpers that turn
// what the broker shows into findings a beginner can act on.
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type GetMessage } from 'amqplib';
import { managementFor, enc, type ConsumerInfo, type ManagementClient, type QueueInfo } from '../broker/management.js';
import { compareVersions, type BrokerInfo } from '../broker/types.js';
import { explainVhostFailure } from '../broker/probe.js';
import { explainError } from './explain-error.js';
import { connectionsOpenedTo, cutConnectionsTo, ignoreSocket, openConnectionsTo } from './socket-tracker.js';
import { CheckFailure, CheckSkipped, type Finding } from './verdict.js';
import { refIds, type ContractCoverage, type ContractRef } from './contract.js';
import { closing, connectionsSince, nackedInsteadOfRejected, sentBy, type AmqpConnection, type SentMethod } from './frames.js';
import { PhaseClock } from './timings.js';

export interface ContextInit<T> {
  target: T;
  targetPath: string;
  vhost: string;
  broker: BrokerInfo;
  /** Asks the runner to restart the broker; resolves false when it may not. */
  requestRestart: () => Promise<{ ok: boolean; reason?: string }>;
  onStep: (step: string) => void;
}

export class CheckContext<T = unknown> {
  readonly target: T;
  readonly vhost: string;
  /** The compiled file of the code under check (what the worker imported): for checks that run it in a process of their own. */
  readonly targetPath: string;
  /** amqp URL of the sandbox vhost: hand this to the code under check. */
  readonly url: string;
  readonly mgmt: ManagementClient;
  readonly broker: BrokerInfo;
  readonly steps: string[] = [];
  readonly notes: string[] = [];
  /** The contract lines this run provoked and observed (see contract.ts). */
  readonly coverage: ContractCoverage = { provoked: [], observed: [] };
  /** Where the check's time goes: the code under check, waiting for the broker, the checker's own steps. */
  readonly clock = new PhaseClock();
  private conn?: Promise<ChannelModel>;
  private readonly amqpPort: number;

  constructor(private readonly init: ContextInit<T>) {
    this.target = init.target;
    this.vhost = init.vhost;
    this.targetPath = init.targetPath;
    this.broker = init.broker;
    this.url = `${init.broker.amqpUrl}/${enc(init.vhost)}`;
    this.mgmt = managementFor(init.broker);
    this.amqpPort = Number(new URL(init.broker.amqpUrl).port || 5672);
  }

  // ---- narration and verdicts ------------------------------------------------

  /** Records what the checker did, with the time, e.g. "closed your connection". */
  log(step: string): void {
    const line = `${new Date().toISOString().slice(11, 23)} ${step}`;
    this.steps.push(line);
    this.init.onStep(step);
  }

  /**
   * A step that causes the situation contract line(s) `lines` are about: the broker refuses,
   * the handler fails, the connection is cut. Logged like any step, with the line numbers.
   */
  provoke(lines: ContractRef | ContractRef[], step: string): void {
    this.cover('provoked', lines, step);
  }

  /** A step that reads, from the broker, the outcome contract line(s) `lines` promise. */
  observe(lines: ContractRef | ContractRef[], step: string): void {
    this.cover('observed', lines, step);
  }

  private cover(kind: keyof ContractCoverage, lines: ContractRef | ContractRef[], step: string): void {
    const ids = refIds(lines);
    for (const id of ids) if (!this.coverage[kind].includes(id)) this.coverage[kind].push(id);
    this.log(`${step} (contract ${ids.length === 1 ? 'line' : 'lines'} ${ids.join(', ')})`);
  }

  /** Extra information shown with the verdict (passed or not). */
  note(text: string): void {
    this.notes.push(text);
  }

  fail(finding: Finding): never {
    throw new CheckFailure(finding);
  }

  skip(reason: string): never {
    throw new CheckSkipped(reason);
  }

  versionAtLeast(min: string): boolean {
    return compareVersions(this.broker.version, min) >= 0;
  }

  // ---- calling the code under check ------------------------------------------

  /**
   * Calls the learner's code. A throw becomes a finding that explains the error;
   * a promise that never settles fails after `timeoutMs` with `label` in the message.
   */
  async call<R>(label: string, fn: () => R | Promise<R>, opts: { timeoutMs?: number } = {}): Promise<Awaited<R>> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    this.log(`called ${label}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CallTimeout()), timeoutMs);
    });
    try {
      return await this.clock.during('learner', () => Promise.race([Promise.resolve().then(fn), timeout]));
    } catch (err) {
      if (err instanceof CallTimeout) {
        this.fail({
          summary: `${label} did not finish within ${timeoutMs / 1000} s.`,
          why: 'The check waits for your function to return (or its promise to resolve). It is stuck: an await on something that never happens, or a missing `return`.',
          fix: 'Make sure every path through the function ends, and that you await confirms or close() rather than a message that never comes.',
        });
      }
      if (err instanceof CheckFailure || err instanceof CheckSkipped) throw err;
      this.fail(explainError(label, err));
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- the broker, as the checker sees it ------------------------------------

  /** The checker's own connection to the sandbox vhost (not counted as the learner's). */
  private connection(): Promise<ChannelModel> {
    // noDelay: without it each handshake step waits out a 40 ms delayed ACK (about 45 ms per connect).
    this.conn ??= amqp.connect(this.url, { clientProperties: { connection_name: 'workbook checker' }, noDelay: true }).then((c) => {
      ignoreSocket((c.connection as unknown as { stream?: import('node:net').Socket }).stream);
      c.on('error', () => undefined); // a restart or a vhost deletion closes it; the check decides what that means
      c.on('close', (err?: Error) => this.recordBrokerError(err));
      return c;
    });
    return this.conn;
  }

  /** A fresh channel on the checker's connection. A broker error on it rejects the next call instead of crashing. */
  async channel(): Promise<Channel> {
    this.clock.channels++;
    const ch = await (await this.connection()).createChannel();
    ch.on('error', (err: Error) => this.recordBrokerError(err));
    return ch;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    this.clock.channels++;
    const ch = await (await this.connection()).createConfirmChannel();
    ch.on('error', (err: Error) => this.recordBrokerError(err));
    return ch;
  }

  /**
   * The last error the broker closed the checker's connection or one of its channels with.
   * amqplib's next call then only says "channel closed"; this says why (classify-error.ts).
   */
  lastBrokerError?: Error;

  private recordBrokerError(err?: Error): void {
    if (err) this.lastBrokerError = err;
  }

  /**
   * Opens the checker's connection to the sandbox vhost, with the very URL the code under
   * check gets, before that code runs. Undefined when it works; otherwise the environment
   * is at fault, and the finding says how (runner/broker/probe.ts).
   */
  async proveUrl(): Promise<Finding | undefined> {
    try {
      await this.connection();
      return undefined;
    } catch (err) {
      this.conn = undefined;
      const problem = await explainVhostFailure(this.broker, this.vhost, err);
      return {
        summary: problem.detail,
        why: 'Before calling your code, the checker connects with the very URL it hands to your code. That failed, so the environment is at fault, not your code.',
        fix: problem.fix,
      };
    }
  }

  /** Forgets the checker's connection (after a broker restart closed it). */
  async reconnect(): Promise<void> {
    const old = this.conn;
    this.conn = undefined;
    this.probeChannel = undefined;
    await old?.then((c) => c.close()).catch(() => undefined);
  }

  /** The queue as the management API reports it; fails with a clear message when it does not exist. */
  async queue(name: string, missing: { why?: string; fix?: string } = {}): Promise<QueueInfo> {
    const q = await this.mgmt.queue(this.vhost, name);
    if (!q) {
      const others = (await this.mgmt.queues(this.vhost)).map((x) => x.name);
      this.fail({
        summary: `There is no queue named "${name}" in the broker.`,
        expected: `a queue "${name}"`,
        saw: others.length ? `queues: ${others.map((n) => `"${n}"`).join(', ')}` : 'no queues at all',
        why: missing.why ?? 'The broker only knows queues someone declared. Nothing declared this one, or under another name.',
        fix: missing.fix ?? `Declare it with channel.assertQueue('${name}', …) before you use it.`,
        link: this.ui('queues'),
      });
    }
    return q;
  }

  /** Ready-message count, straight from the broker over AMQP (the management API lags by a statistics tick). */
  async messageCount(queue: string): Promise<number> {
    return (await this.checkQueue(queue)).messageCount;
  }

  /** A passive declaration of `queue`: its ready messages and consumers, exact at once. */
  private checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    return this.onProbeChannel((ch) => ch.checkQueue(queue));
  }

  /** The channel of messageCount(), consumerCount() and takeMessages(), kept between calls. */
  private probeChannel?: Channel;
  private probes: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` on the checker's probe channel, one call at a time. Checks poll the broker with
   * these: a channel opened and closed for each probe cost the broker several times the probe
   * itself. A refusal (404 for a missing queue) closes the channel, so it is dropped after any
   * error, and the next call opens another.
   */
  private onProbeChannel<R>(fn: (ch: Channel) => Promise<R>): Promise<R> {
    const next = this.probes.then(async () => {
      const ch = (this.probeChannel ??= await this.channel());
      try {
        return await fn(ch);
      } catch (err) {
        if (this.probeChannel === ch) this.probeChannel = undefined;
        await ch.close().catch(() => undefined);
        throw err;
      }
    });
    this.probes = next.catch(() => undefined);
    return next;
  }

  /** Takes up to `max` messages off a queue (acked: they are gone afterwards). */
  async takeMessages(queue: string, max = 100): Promise<GetMessage[]> {
    return this.onProbeChannel(async (ch) => {
      const out: GetMessage[] = [];
      for (let i = 0; i < max; i++) {
        const m = await ch.get(queue, { noAck: true });
        if (!m) break;
        out.push(m);
      }
      return out;
    });
  }

  /** Publishes through a confirm channel and waits until the broker has them. */
  async publish(queue: string, bodies: (string | Buffer | object)[], options: amqp.Options.Publish = {}): Promise<void> {
    const ch = await this.confirmChannel();
    try {
      for (const body of bodies) {
        const content = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const contentType = typeof body === 'object' && !Buffer.isBuffer(body) ? 'application/json' : 'text/plain';
        ch.sendToQueue(queue, content, { persistent: true, contentType, ...options });
      }
      await ch.waitForConfirms();
      this.log(`published ${bodies.length} message(s) to "${queue}"`);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Publishes one probe message to `queue` on a confirm channel: true when the broker refuses it (a nack). */
  async brokerRefuses(queue: string): Promise<boolean> {
    const ch = await this.confirmChannel();
    try {
      ch.sendToQueue(queue, Buffer.from('checker probe'), { persistent: true });
      await ch.waitForConfirms();
      return false;
    } catch {
      return true;
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** Polls `probe` until it returns something truthy, or gives up after `timeoutMs` and returns undefined. */
  async waitFor<R>(probe: () => Promise<R | undefined | false | null> | R | undefined | false | null, timeoutMs: number, everyMs = 25): Promise<R | undefined> {
    return this.clock.during('waiting', async () => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        this.clock.polls++;
        const value = await probe();
        if (value) return value;
        if (Date.now() >= deadline) return undefined;
        await new Promise((r) => setTimeout(r, everyMs));
      }
    });
  }

  /** Waits `ms` (a window in which something must not happen); counted as waiting in the timings. */
  pause(ms: number): Promise<void> {
    return this.clock.during('waiting', () => new Promise<void>((r) => setTimeout(r, ms)));
  }

  /**
   * Consumers on a queue, as the management API lists them: with their ack mode, prefetch and
   * connection. New consumers appear only after a statistics tick (seconds); for a count, use consumerCount().
   */
  async consumersOf(queue: string): Promise<ConsumerInfo[]> {
    return (await this.mgmt.consumers(this.vhost)).filter((c) => c.queue.name === queue);
  }

  /** The first consumer to appear on `queue` within `timeoutMs`, or undefined. Allow a statistics tick or two. */
  async waitForConsumer(queue: string, timeoutMs = 6000): Promise<ConsumerInfo | undefined> {
    return this.waitFor(async () => (await this.consumersOf(queue))[0], timeoutMs, 50);
  }

  /** Consumers on `queue` counted by the queue itself over AMQP (exact at once, unlike the management API). */
  async consumerCount(queue: string): Promise<number> {
    return (await this.checkQueue(queue)).consumerCount;
  }

  /**
   * Cuts every connection the code under check has open, the way a network failure
   * does (the TCP socket just dies). Immediate, unlike closing through the management
   * API, which must first wait for the connection to be listed.
   */
  cutConnections(reason: string): number {
    const ports = cutConnectionsTo(this.amqpPort);
    this.log(`cut your connection${ports.length === 1 ? '' : 's'} (local port ${ports.join(', ') || 'none'}, ECONNRESET): ${reason}`);
    return ports.length;
  }

  /**
   * Closes the connection a consumer of `queue` lives on through the management API, as an
   * operator would (the client sees CONNECTION_FORCED). Waits until the management API lists
   * both the consumer and its connection (a statistics tick or two). Returns the connection's
   * name, or undefined when it never appeared or was already gone.
   */
  async closeConnectionOfConsumer(queue: string, reason: string, timeoutMs = 8000): Promise<string | undefined> {
    const name = await this.waitFor(
      async () => {
        const candidate = (await this.consumersOf(queue)).find((c) => c.channel_details?.connection_name)?.channel_details.connection_name;
        if (!candidate) return undefined;
        return (await this.mgmt.connections(this.vhost)).some((c) => c.name === candidate) ? candidate : undefined;
      },
      timeoutMs,
      100,
    );
    if (!name) return undefined;
    if (!(await this.mgmt.closeConnection(name, reason))) return undefined; // closed meanwhile
    this.log(`closed your connection "${name}" through the management API (${reason})`);
    return name;
  }

  // ---- connections the learner left behind -----------------------------------

  /** How many connections the code under check has opened so far. */
  connectionsOpened(): number {
    return connectionsOpenedTo(this.amqpPort);
  }

  /** How many connections of the code under check are open right now (exact, unlike the management API). */
  connectionsOpen(): number {
    return openConnectionsTo(this.amqpPort).length;
  }

  /** Fails when the code under check left a connection to the broker open (after a short grace for the close handshake). */
  async expectConnectionsClosed(label: string): Promise<void> {
    const open = await this.waitFor(() => openConnectionsTo(this.amqpPort).length === 0, 500).then((ok) =>
      ok ? [] : openConnectionsTo(this.amqpPort),
    );
    if (open.length === 0) return;
    this.fail({
      summary: `${label} returned but left ${open.length === 1 ? 'a connection' : `${open.length} connections`} to the broker open.`,
      expected: 'every connection closed before the function returns',
      saw: `open connection${open.length === 1 ? '' : 's'} from local port ${open.join(', ')} (the broker names it "127.0.0.1:${open[0]} -> …")`,
      why: 'An open connection keeps a socket, a broker process and memory alive. A program that forgets to close them leaks one per call, and does not exit when it is done.',
      fix: 'await connection.close() when you are done (in a finally block, so it also happens after an error).',
      link: this.ui('connections'),
    });
  }

  /**
   * The learner's function, called while the broker refuses what it declares (the check set that
   * up), must reject with the broker's error and still close every connection it opened.
   * `refused` says what the broker refused and why, e.g. `to declare "jobs" (it exists as a classic queue)`.
   */
  async expectRefusalPassedOn(label: string, fn: () => Promise<unknown>, refused: { what: string; error: string; link?: string }): Promise<void> {
    const outcome = await this.call(`${label} while the broker refuses`, async () => {
      try {
        await fn();
        return 'resolved';
      } catch {
        return 'rejected';
      }
    });
    if (outcome === 'resolved') {
      this.fail({
        summary: `The broker refused ${refused.what}, but ${label} resolved as if all was well.`,
        expected: `${label} rejects with the broker's error (${refused.error})`,
        saw: `${label} resolved`,
        why: 'A caller that is told "done" goes on as if it were. An error you catch and drop is a failure nobody hears of.',
        fix: 'Do not catch the error, or rethrow it: try { … } finally { await connection.close(); } closes the connection and lets the error through.',
        link: refused.link,
      });
    }
    await this.expectConnectionsClosed(`${label}, after the broker refused,`);
  }

  // ---- what the learner's code told the broker (frames.ts) --------------------

  /** Every method frame the code under check has sent so far, in order, optionally only those named. */
  sent(...names: SentMethod['name'][]): SentMethod[] {
    return sentBy(connectionsSince(), ...names);
  }

  /**
   * The retry rule: fails when the code under check answered a single message with basic.nack
   * (channel.nack(msg)) where the contract says reject. RabbitMQ 3.10 cannot tell them apart; 4.3
   * does not count a requeued nack towards a quorum queue's delivery limit. `when` opens the
   * verdict, e.g. "When handle() rejected" (or one for a nack with requeue, one for a nack without).
   */
  expectRejectsNotNacks(lines: ContractRef | ContractRef[], when: string | { retried: string; dropped: string }): void {
    const finding = nackedInsteadOfRejected(this.sent('basic.nack'), when);
    if (finding) this.fail(finding);
    const rejects = this.sent('basic.reject');
    const requeued = rejects.filter((m) => m.requeue).length;
    this.observe(lines, `read the frames your code sent: ${rejects.length} basic.reject (${requeued} with requeue, ${rejects.length - requeued} without), no basic.nack of a single message`);
  }

  /**
   * Calls `fn` (a stop() or close()) through call() and fails when it returned before the
   * connections it must close had even begun to close (an un-awaited `closer`), once they turn
   * out to close a moment later. A connection that stays open is left to the caller's own verdict.
   */
  async expectClosedOnReturn(label: string, mine: AmqpConnection[], fn: () => Promise<unknown> | unknown, opts: { closer?: string; timeoutMs?: number } = {}): Promise<void> {
    const closer = opts.closer ?? 'connection.close()';
    const open = mine.filter((c) => !closing(c));
    await this.call(label, fn, { timeoutMs: opts.timeoutMs });
    const early = open.filter((c) => !closing(c));
    if (early.length === 0) return;
    const started = Date.now();
    if (!(await this.waitFor(() => early.every(closing), 500, 5))) return;
    this.fail({
      summary: `${label} returned before ${early.length === 1 ? 'its connection was' : `its ${early.length} connections were`} closed: it did not wait for ${closer}.`,
      expected: `${label} resolves once the connection is closed: await ${closer}`,
      saw: `when ${label} returned, the close handshake with the broker had not happened yet; the connection closed about ${Date.now() - started} ms later`,
      why: 'Whoever awaits stop() counts on everything being closed when it returns: it exits the process, or starts again. Closing is a round trip to the broker; without await, stop() returns first, and a process.exit() right after it cuts the connection before the broker hears the close.',
      fix: closer === 'connection.close()' ? 'await connection.close() in stop(), after await channel.cancel(consumerTag).' : `await ${closer} in stop().`,
      link: this.ui('connections'),
    });
  }

  // ---- the broker restarting under the learner's feet ------------------------

  /** Restarts the broker when the workbook owns it; otherwise notes why not and returns false. */
  async restartBroker(): Promise<boolean> {
    this.log('asked the runner to restart the broker (rabbitmqctl stop_app, start_app)');
    const result = await this.init.requestRestart();
    if (!result.ok) {
      this.note(`The restart part of this check was skipped: ${result.reason}`);
      return false;
    }
    this.log('the broker is back after the restart');
    await this.reconnect();
    return true;
  }

  // ---- links -----------------------------------------------------------------

  /** Management UI page, e.g. ui('queues', 'hello') or ui('connections'). */
  ui(kind: 'queues' | 'exchanges' | 'connections' | 'channels', name?: string): string {
    const base = this.broker.managementUrl.replace(/\/+$/, '');
    if (!name) return `${base}/#/${kind}`;
    return `${base}/#/${kind}/${enc(this.vhost)}/${enc(name)}`;
  }

  async close(): Promise<void> {
    await this.conn?.then((c) => c.close()).catch(() => undefined);
  }
}

class CallTimeout extends Error {}

/** A check: a function of the context. The type parameter is the module under check. */
export type Check<T> = (t: CheckContext<T>) => Promise<void>;

/** Declares a check. `T` is the exercise module's type, so `t.target` is typed. */
export function defineCheck<T>(check: Check<T>): Check<T> {
  return check;
}

// Helpers shared by the checks of chapter 6: simulated workers, what the learner's start
// functions return, the broker taking things away (a queue deleted under a consumer, a
// connection cut), settling a promise within a time limit, publishing to an exchange, and the
// two halves of RPC (a reference server for checking the learner's client, a reference client
// for checking the learner's server), all on the checker's own connection.

import { randomUUID } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib';
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

// ---- simulated workers -------------------------------------------------------------

/** What the simulated work does with particular tasks, shared by every worker of a check. */
export interface TaskScript {
  /** Tasks whose work() rejects at once the first N times it gets them, then succeeds at once. */
  failFirst?: Map<string, number>;
  /** Tasks whose work() never settles. */
  hang?: Set<string>;
  /**
   * Tasks whose work() rejects (after 10 ms) every time on the worker that took them first, and
   * succeeds at once on any other: only a task nacked back to the queue reaches another worker.
   */
  failWhereFirstTaken?: Set<string>;
  /** For failWhereFirstTaken: which worker took each of those tasks first. */
  firstTakenBy?: Map<string, string>;
}

/**
 * A work() function for the learner's worker that behaves like a process with one CPU:
 * tasks run one after the other, `ms` each, however many the worker starts at once.
 * `handed` counts every call (tasks the worker took), `done` the finished ones,
 * `maxAtOnce` the most tasks it held at the same time; `notText` is set when work() got
 * something else than a string (a Buffer, say).
 */
export function simulatedWorker(ms: number, script: TaskScript = {}, name = 'worker') {
  const state = { handed: [] as string[], done: [] as string[], maxAtOnce: 0, frozen: false, notText: undefined as string | undefined };
  let chain: Promise<void> = Promise.resolve();
  let active = 0;
  const work = async (task: string): Promise<void> => {
    if (typeof task !== 'string') state.notText ??= describeValue(task);
    const text = String(task);
    state.handed.push(text);
    if (script.failWhereFirstTaken?.has(text)) {
      script.firstTakenBy ??= new Map();
      if (!script.firstTakenBy.has(text)) script.firstTakenBy.set(text, name);
      if (script.firstTakenBy.get(text) !== name) return void state.done.push(text);
      await sleep(10);
      throw new Error(`work("${text}") failed on purpose: it always fails on the ${name}`);
    }
    const failures = script.failFirst?.get(text);
    if (failures !== undefined) {
      script.failFirst!.set(text, failures - 1);
      if (failures > 0) throw new Error(`work("${text}") failed on purpose`);
      state.done.push(text);
      return;
    }
    active++;
    state.maxAtOnce = Math.max(state.maxAtOnce, active);
    if (script.hang?.has(text)) await never;
    const mine = chain.then(() => sleep(ms));
    chain = mine;
    await mine;
    if (state.frozen) await never; // after a verdict: the learner's code must not ack on a cut connection
    active--;
    state.done.push(text);
  };
  const count = (list: string[], task: string) => list.filter((x) => x === task).length;
  return {
    name,
    work,
    state,
    get busy() {
      return active > 0;
    },
    /** How many times work() got this task, and how many times it finished it. */
    handedCount: (task: string) => count(state.handed, task),
    doneCount: (task: string) => count(state.done, task),
    /** Tasks in progress never finish from now on. */
    freeze() {
      state.frozen = true;
    },
  };
}

/** How a value looks to a beginner: a string in quotes, <Buffer …>, or its type. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Buffer.isBuffer(value)) return `a Buffer (<Buffer ${value.subarray(0, 8).toString('hex').replace(/(..)/g, '$1 ').trim()}${value.length > 8 ? ' …' : ''}>)`;
  if (value === null) return 'null';
  return `${typeof value === 'object' ? `an object (${value.constructor?.name ?? 'Object'})` : `a ${typeof value}`}`;
}

// ---- what the code under check returns -----------------------------------------------

/** Fails unless `value` is an object with these methods (a start function that returned nothing, say). */
export function expectMethods(t: CheckContext<unknown>, label: string, value: unknown, methods: string[]): void {
  const missing = methods.filter((m) => typeof (value as Record<string, unknown> | undefined)?.[m] !== 'function');
  if (missing.length === 0) return;
  const wanted = methods.map((m) => `${m}()`).join(' and ');
  const isObject = typeof value === 'object' && value !== null;
  t.fail({
    summary: isObject
      ? `${label} returned an object without ${missing.map((m) => `${m}()`).join(' and ')}.`
      : `${label} returned ${value === undefined ? 'nothing' : describeValue(value)}, not an object with ${wanted}.`,

    expected: `{ ${methods.map((m) => `${m}() { … }`).join(', ')} }`,
    saw: value === undefined ? 'undefined' : `${describeValue(value)}${missing.length < methods.length ? `, without ${missing.join(', ')}` : ''}`,
    why: 'The caller needs these functions to use what you started, and to stop it again.',
    fix: `End the function with return { ${methods.map((m) => `${m}`).join(', ')} }.`,
  });
}

// ---- what the code under check keeps alive ---------------------------------------------------

/** Timers that keep the event loop alive (unref()'d ones do not count). */
export function pendingTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

let gc: (() => void) | null | undefined;

/**
 * Whether `ref`'s target is still reachable after a full garbage collection; undefined when this
 * Node cannot collect on demand (the observation is then skipped).
 */
export async function stillReachable(ref: WeakRef<object>): Promise<boolean | undefined> {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = (vm.runInNewContext('gc') as (() => void) | undefined) ?? null;
    } catch {
      gc = null;
    }
  }
  if (!gc) return undefined;
  await new Promise((r) => setImmediate(r)); // a WeakRef keeps its target alive until the end of the job that made or read it
  gc();
  gc();
  return ref.deref() !== undefined;
}

// ---- the broker taking things away ------------------------------------------------------

/**
 * Deletes `queue` under the learner's consumer (the broker then cancels the consumer, and
 * amqplib calls its callback with null), and fails when that closed the learner's connection.
 */
export async function deleteQueueUnderConsumer(t: CheckContext<unknown>, queue: string, lines: ContractRef | ContractRef[]): Promise<void> {
  const before = t.connectionsOpen();
  const ch = await t.channel();
  try {
    await ch.deleteQueue(queue);
  } finally {
    await ch.close().catch(() => undefined);
  }
  t.provoke(lines, `deleted the queue "${queue}" under your consumer: the broker cancels it, and amqplib calls the callback with null`);
  await sleep(150);
  const after = t.connectionsOpen();
  if (after < before) {
    t.fail({
      summary: `When the broker cancelled your consumer (the checker deleted the queue "${queue}"), your connection closed: the consumer callback threw on the null message.`,
      expected: 'the callback returns on null, and the connection stays open',
      saw: `${before} connection(s) open before the deletion, ${after} after`,
      why: 'When its queue is deleted (by an operator, a policy, a failover), the broker cancels the consumer, and amqplib calls your callback one last time with null. Reading msg.content or msg.properties on null throws inside amqplib, which then closes the whole connection.',
      fix: 'Start the consumer callback with: if (msg === null) return;',
    });
  }
  t.observe(lines, `your connection was still open after the consumer was cancelled (${after} open)`);
}

/**
 * Cuts the learner's connections (ECONNRESET) and gives an 'error' event nobody listens to the
 * moment it needs to crash the process: the runner then fails the check with that crash.
 */
export async function cutConnectionsAndSurvive(t: CheckContext<unknown>, lines: ContractRef | ContractRef[], reason: string): Promise<void> {
  const cut = t.cutConnections(reason);
  if (cut === 0) {
    t.fail({
      summary: 'Your code had no connection open to cut: it closed its connection while it was still supposed to be running.',
      expected: 'the connection open until stop() or close()',
      saw: 'no open connection',
      fix: 'Keep the connection open while the consumer runs; close it in stop() (or close()) only.',
    });
  }
  t.provoke(lines, `cut ${cut} connection(s): amqplib emits 'error' on each`);
  await sleep(50); // the 'error' event comes on the next tick; unheard, it crashes the process now
  t.observe(lines, "your process survived the connection errors (an 'error' listener heard them)");
}

// ---- promises under a time limit -----------------------------------------------------

export type Settled<T> =
  | { status: 'resolved'; value: T; ms: number }
  | { status: 'rejected'; error: Error; ms: number; /** What it was rejected with, when not an Error. */ notError?: string }
  | { status: 'pending'; ms: number };

/** How `promise` settles within `limitMs` (it keeps running after a 'pending'). */
export async function settleWithin<T>(promise: Promise<T>, limitMs: number): Promise<Settled<T>> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ status: 'resolved' as const, value }),
      (err: unknown) =>
        err instanceof Error
          ? { status: 'rejected' as const, error: err }
          : { status: 'rejected' as const, error: new Error(String(err)), notError: err === undefined ? 'undefined' : describeValue(err) },
    ),

    new Promise<{ status: 'pending' }>((r) => (timer = setTimeout(() => r({ status: 'pending' }), limitMs))),
  ]);
  clearTimeout(timer);
  return { ...outcome, ms: Date.now() - started } as Settled<T>;
}

// ---- publishing ------------------------------------------------------------------------

/** Publishes [routingKey, body] pairs to an exchange through a confirm channel, and waits for the confirms. */
export async function publishToExchange(t: CheckContext<unknown>, exchange: string, messages: [key: string, body: string][]): Promise<void> {
  const ch = await t.confirmChannel();
  try {
    for (const [key, body] of messages) ch.publish(exchange, key, Buffer.from(body), { persistent: true, contentType: 'text/plain' });
    await ch.waitForConfirms();
  } finally {
    await ch.close().catch(() => undefined);
  }
}

// ---- RPC: a reference server, to check the learner's client ----------------------------

export interface ServerPlan {
  /** Milliseconds before the reply is sent (default 0). */
  delayMs?: number;
  /** Never reply. */
  silent?: boolean;
  /** Start the delay only once the reply to this other request has been sent. */
  afterReplyTo?: string;
  /** Before the real reply, send two replies nobody asked for: one without a correlationId, one with an unknown one. */
  strays?: boolean;
}

export interface SeenRequest {
  body: string;
  properties: MessageProperties;
  at: number;
}

/**
 * Answers requests on `queue` with "re: <request>", after the delay the plan gives for that
 * request text. Records every request (with its properties) and every reply it sent.
 */
export async function startReferenceServer(t: CheckContext<unknown>, queue: string, plan: (request: string) => ServerPlan) {
  const ch: Channel = await t.channel();
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const requests: SeenRequest[] = [];
  const replied: { request: string; correlationId?: string; at: number }[] = [];
  await ch.consume(
    queue,
    (msg: ConsumeMessage | null) => {
      if (!msg) return;
      const body = msg.content.toString();
      requests.push({ body, properties: msg.properties, at: Date.now() });
      const { delayMs = 0, silent = false, afterReplyTo, strays = false } = plan(body);
      const { replyTo, correlationId } = msg.properties;
      ch.ack(msg);
      if (silent || !replyTo) return;
      const reply = () => {
        try {
          if (strays) {
            ch.sendToQueue(replyTo, Buffer.from('a stray reply without a correlationId'));
            ch.sendToQueue(replyTo, Buffer.from('a stray reply for nobody'), { correlationId: randomUUID() });
          }
          ch.sendToQueue(replyTo, Buffer.from(`re: ${body}`), { correlationId });
          replied.push
({ request: body, correlationId, at: Date.now() });
        } catch {
          // the checker's channel is closing: the check is over
        }
      };
      const start = () => setTimeout(reply, delayMs);
      if (!afterReplyTo) return void start();
      const poll = setInterval(() => {
        if (!replied.some((r) => r.request === afterReplyTo)) return;
        clearInterval(poll);
        start();
      }, 10);
      setTimeout(() => clearInterval(poll), 5000).unref();
    },
    { noAck: false },
  );
  return { requests, replied };
}

// ---- RPC: a reference client, to check the learner's server ----------------------------

export interface SeenReply {
  body: string;
  properties: MessageProperties;
}

/** Sends requests with Direct Reply-to and records every reply exactly as it arrives. */
export async function referenceClient(t: CheckContext<unknown>) {
  const ch: Channel = await t.channel();
  const replies: SeenReply[] = [];
  await ch.consume(
    'amq.rabbitmq.reply-to',
    (msg) => {
      if (msg) replies.push({ body: msg.content.toString(), properties: msg.properties });
    },
    { noAck: true },
  );
  return {
    replies,
    /** Publishes a request; returns its correlation id. `replyTo: false` sends it without a replyTo. */
    send(queue: string, body: string, opts: { replyTo?: boolean } = {}): string {
      const correlationId = randomUUID();
      ch.sendToQueue(queue, Buffer.from(body), opts.replyTo === false ? { correlationId } : { correlationId, replyTo: 'amq.rabbitmq.reply-to' });
      return correlationId;
    },
  };
}

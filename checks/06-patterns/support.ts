// Helpers shared by the checks of chapter 6: simulated workers, settling a promise within a
// time limit, publishing to an exchange, and the two halves of RPC (a reference server for
// checking the learner's client, a reference client for checking the learner's server),
// all on the checker's own connection.
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib';
import type { CheckContext } from '../../runner/check/context.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

// ---- simulated workers -------------------------------------------------------------

/**
 * A work() function for the learner's worker that behaves like a process with one CPU:
 * tasks run one after the other, `ms` each, however many the worker starts at once.
 * `handed` counts every call (tasks the worker took), `done` the finished ones.
 */
export function simulatedWorker(ms: number) {
  const state = { handed: [] as string[], done: [] as string[], maxAtOnce: 0, frozen: false };
  let chain: Promise<void> = Promise.resolve();
  let active = 0;
  const work = async (task: string): Promise<void> => {
    state.handed.push(task);
    active++;
    state.maxAtOnce = Math.max(state.maxAtOnce, active);
    const mine = chain.then(() => sleep(ms));
    chain = mine;
    await mine;
    if (state.frozen) await never; // after a verdict: the learner's code must not ack on a cut connection
    active--;
    state.done.push(task);
  };
  return {
    work,
    state,
    get busy() {
      return active > 0;
    },
    /** Tasks in progress never finish from now on. */
    freeze() {
      state.frozen = true;
    },
  };
}

// ---- promises under a time limit -----------------------------------------------------

export type Settled<T> =
  | { status: 'resolved'; value: T; ms: number }
  | { status: 'rejected'; error: Error; ms: number }
  | { status: 'pending'; ms: number };

/** How `promise` settles within `limitMs` (it keeps running after a 'pending'). */
export async function settleWithin<T>(promise: Promise<T>, limitMs: number): Promise<Settled<T>> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ status: 'resolved' as const, value }),
      (err: unknown) => ({ status: 'rejected' as const, error: err instanceof Error ? err : new Error(String(err)) }),
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
      const { delayMs = 0, silent = false, afterReplyTo } = plan(body);
      const { replyTo, correlationId } = msg.properties;
      ch.ack(msg);
      if (silent || !replyTo) return;
      const reply = () => {
        try {
          ch.sendToQueue(replyTo, Buffer.from(`re: ${body}`), { correlationId });
          replied.push({ request: body, correlationId, at: Date.now() });
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

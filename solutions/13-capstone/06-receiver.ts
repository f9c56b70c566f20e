// Exercise 13.6: the receiver: batches to Odoo, and every message ends acked, retried later, or dead-lettered with a reason
// Text: chapters/13-capstone/README.md   Check: npm run check 13.6   Hint: npm run hint 13.6
//
// The original project's receiver.py acked on HTTP 200 and, while Odoo was down, held the
// message and tried again every 5 s, blocking the queue. startReceiver(options) must:
//   1. consume QUEUE with manual acks, on a confirm channel with `prefetch`, collect what comes
//      within `batchWaitMs` of the first message, and hand it to upsertCustomers() in batches
//      of at most `batchSize` (an idle receiver calls nobody),
//   2. per Outcome: 'written' and 'stale' -> ack; 'rejected' -> copy to DEAD_LETTER_QUEUE
//      with the reason in header 'x-bridge-reason', then ack; a message that is not JSON
//      is dead-lettered the same way,
//   3. when the client throws a 'retry' OdooError (Odoo down, 5xx, a serialization failure...), or
//      anything that is not an OdooError: copy each message to retryQueueFor(attempt) with
//      headers 'x-bridge-attempt' = attempt (1 the first time, then +1) and
//      'x-bridge-last-error' = the error's message, then ack: the delay queue brings it back
//      later and the main queue keeps flowing; past `maxAttempts`, dead-letter it instead,
//   4. a 'reject' OdooError dead-letters the whole batch with its message; a 'fatal' one
//      (AccessDenied): stop consuming and give the messages back to the queue (closing the
//      connection does both), log an error that says so, and resolve `halted` with its message,
//   5. a copy keeps the body and the properties (persistent, messageId, contentType, type,
//      timestamp, headers); ack the original only once the broker confirmed its copy, and
//      give it back (nack with requeue) when the broker refused it or the channel closed,
//   6. reconnect by itself, after 0.5 s and then twice as long each time (at most 10 s), when
//      the broker goes away or closes its channel (a declaration it refused), as
//      'bridge receiver'; consume again when the queue was deleted; stats() counts the
//      messages written, stale, retried and dead-lettered, and the batches,
//   7. startReceiver() rejects, closing what it opened, when it cannot connect or declare the
//      topology; stop(): let the batch in hand finish (acked), close the connection; nothing
//      reconnects afterwards,
//   8. log through options.log: a warning with the error's message for every error, lost
//      connection and batch sent to a delay queue, a warning with the reason for every
//      dead-lettered message, an error when its consumer was cancelled, when it cannot consume
//      again and when it stops; an info line once consuming; no line without a message.
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { pathToFileURL } from 'node:url';
import { createLogger, type Logger } from '../../capstone/log.js';
import { DEAD_LETTER_QUEUE, QUEUE, RETRY_DELAYS_MS, assertTopology, connect, retryQueueFor, type CustomerEvent } from './02-topology.js';
import { OdooError, createOdooClient, type OdooConfig } from './04-odoo-client.js';
import { prepareOdoo, upsertCustomers } from './05-upsert.js';

export interface ReceiverOptions {
  amqpUrl: string;
  odoo: OdooConfig;
  prefetch?: number;
  batchSize?: number;
  batchWaitMs?: number;
  retryDelaysMs?: number[];
  maxAttempts?: number;
  log?: Logger;
}

export interface ReceiverStats {
  written: number;
  stale: number;
  retried: number;
  deadLettered: number;
  batches: number;
}

export interface Receiver {
  stats(): ReceiverStats;
  /** Resolves (with the reason) if the receiver stops consuming by itself: Odoo refused the credentials. */
  halted: Promise<string>;
  stop(): Promise<void>;
}

/** A delivery and the channel it came on: only that channel can ack it. */
interface Held {
  ch: ConfirmChannel;
  msg: ConsumeMessage;
}

export async function startReceiver(options: ReceiverOptions): Promise<Receiver> {
  const {
    amqpUrl,
    prefetch = 1000,
    batchSize = 500,
    batchWaitMs = 20,
    retryDelaysMs = RETRY_DELAYS_MS,
    maxAttempts = 50,
    log = createLogger('receiver'),
  } = options;
  const odoo = createOdooClient(options.odoo);
  const stats: ReceiverStats = { written: 0, stale: 0, retried: 0, deadLettered: 0, batches: 0 };
  let stopping = false;
  let halted = false;
  let connection: ChannelModel | undefined;
  let buffer: Held[] = [];
  let timer: NodeJS.Timeout | undefined;
  let working: Promise<void> = Promise.resolve();
  let onHalt: (reason: string) => void = () => undefined;
  const haltedPromise = new Promise<string>((resolve) => (onHalt = resolve));

  // ---- consuming ---------------------------------------------------------------------
  async function setup() {
    const conn = await connect(amqpUrl, 'bridge receiver', log);
    try {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err: Error) => log.warn('channel error', { error: err.message }));
      // A channel the broker closed (a declaration it refused) is of no use: start over.
      ch.on('close', () => void conn.close().catch(() => undefined));
      await assertTopology(ch, retryDelaysMs);
      await ch.prefetch(prefetch); // how many unacked messages we hold at most: our batches come from these
      conn.on('close', () => {
        // Unacked deliveries of a dead connection go back to the queue by themselves.
        if (!stopping && !halted) {
          log.warn('lost the broker; reconnecting');
          void reconnect();
        }
      });
      connection = conn;
      await consume(ch);
      log.info(`consuming "${QUEUE}" (prefetch ${prefetch}, batches of up to ${batchSize})`);
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  async function consume(ch: ConfirmChannel) {
    await ch.consume(
      QUEUE,
      (msg) => {
        if (msg === null) {
          // The broker cancelled us: someone deleted the queue. Declare it again, resume.
          log.error(`the broker cancelled our consumer: was "${QUEUE}" deleted? Declaring it again and resuming`);
          void assertTopology(ch, retryDelaysMs)
            .then(() => consume(ch))
            .catch((err) => log.error('could not resume consuming', { error: (err as Error).message }));
          return;
        }
        buffer.push({ ch, msg });
        timer ??= setTimeout(flush, batchWaitMs);
      },
      { noAck: false },
    );
  }

  async function reconnect() {
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      await sleep(delay);
      if (stopping || halted) return; // stop() was called, or Odoo refused us, while we waited
      try {
        await setup();
        return;
      } catch (err) {
        log.warn('broker unreachable', { error: (err as Error).message });
      }
    }
  }

  /** Batches of at most batchSize, handled one after the other; messages keep arriving meanwhile. */
  function flush() {
    timer = undefined;
    working = working.then(async () => {
      while (buffer.length > 0 && !halted && !stopping) {
        const batch = buffer.splice(0, batchSize);
        // handleBatch() settles every message itself; this only guards against a bug in it.
        await handleBatch(batch).catch((err) => {
          log.error('could not handle a batch; its messages go back to the queue', { error: (err as Error).message });
          batch.forEach(giveBack);
        });
      }
    });
  }

  // ---- one batch -------------------------------------------------------------------------
  async function handleBatch(batch: Held[]) {
    stats.batches++;
    const events: CustomerEvent[] = [];
    const held: Held[] = [];
    const done: Held[] = []; // written or stale: acked together at the end
    const settled: Promise<void>[] = [];
    for (const h of batch) {
      try {
        events.push(JSON.parse(h.msg.content.toString('utf8')) as CustomerEvent);
        held.push(h);
      } catch (err) {
        settled.push(deadLetter(h, `malformed message: ${(err as Error).message}`));
      }
    }

    // #region outcomes
    try {
      await prepareOdoo(odoo); // one call when the field is there; creates it when it is not
      const outcomes = await upsertCustomers(odoo, events);
      outcomes.forEach((outcome, i) => {
        const h = held[i]!;
        if (outcome.status === 'rejected') {
          settled.push(deadLetter(h, outcome.reason));
        } else {
          stats[outcome.status === 'written' ? 'written' : 'stale']++;
          done.push(h);
        }
      });
    } catch (err) {
      const message = (err as Error).message;
      if (err instanceof OdooError && err.kind === 'fatal') return halt(message);
      if (err instanceof OdooError && err.kind === 'reject') held.forEach((h) => settled.push(deadLetter(h, message)));
      else settled.push(retryLater(held, message)); // 'retry', and anything unexpected: try again later
    }
    // #endregion
    await Promise.all(settled);
    ackAll(done);
  }

  /**
   * Acks a whole batch with one frame per channel: `multiple` acks every delivery up to
   * that tag. Safe here because batches are handled one after the other and every
   * earlier message of this batch is settled (acked, or copied and acked) by now.
   */
  function ackAll(done: Held[]) {
    const last = new Map<ConfirmChannel, ConsumeMessage>();
    for (const h of done) last.set(h.ch, h.msg); // in delivery order: the last one has the highest tag
    for (const [ch, msg] of last) {
      try {
        ch.ack(msg, true);
      } catch {
        /* channel closed: the broker redelivers, the upsert makes that harmless */
      }
    }
  }

  /** Copies the message to `queue`; resolves true once the broker confirmed the copy. */
  function forward({ ch, msg }: Held, queue: string, headers: Record<string, unknown>): Promise<boolean> {
    return new Promise((resolve) => {
      try {
        ch.sendToQueue(
          queue,
          msg.content,
          {
            persistent: true,
            contentType: msg.properties.contentType,
            messageId: msg.properties.messageId,
            type: msg.properties.type,
            timestamp: msg.properties.timestamp,
            headers: { ...msg.properties.headers, ...headers },
          },
          (err) => resolve(!err),
        );
      } catch {
        resolve(false); // channel closed: the original was not acked, the broker redelivers it
      }
    });
  }

  function ack({ ch, msg }: Held) {
    try {
      ch.ack(msg);
    } catch {
      /* channel closed: the broker redelivers, the upsert makes that harmless */
    }
  }

  function giveBack({ ch, msg }: Held) {
    try {
      ch.nack(msg, false, true);
    } catch {
      /* channel closed: it is back in the queue anyway */
    }
  }

  async function deadLetter(h: Held, reason: string) {
    const ok = await forward(h, DEAD_LETTER_QUEUE, { 'x-bridge-reason': reason });
    if (!ok) return giveBack(h);
    ack(h);
    stats.deadLettered++;
    log.warn('dead-lettered', { reason, messageId: h.msg.properties.messageId });
  }

  async function retryLater(held: Held[], error: string) {
    log.warn(`Odoo unavailable: ${held.length} event(s) wait in a delay queue`, { error });
    await Promise.all(
      held.map(async (h) => {
        const attempt = Number(h.msg.properties.headers?.['x-bridge-attempt'] ?? 0) + 1;
        if (attempt > maxAttempts) return deadLetter(h, `gave up after ${maxAttempts} attempts: ${error}`);
        if (!(await forward(h, retryQueueFor(attempt, retryDelaysMs), { 'x-bridge-attempt': attempt, 'x-bridge-last-error': error }))) return giveBack(h);
        ack(h);
        stats.retried++;
      }),
    );
  }

  /** Odoo refused our credentials: closing the connection stops consuming and gives back every message we hold. */
  async function halt(reason: string) {
    halted = true;
    log.error(
      `STOPPED CONSUMING: Odoo refused our credentials (${reason}). Nothing is lost: every event stays in "${QUEUE}". Fix ODOO_USER / ODOO_API_KEY and start the receiver again.`,
    );
    await connection?.close().catch(() => undefined);
    onHalt(reason);
  }

  await setup();

  return {
    stats: () => ({ ...stats }),
    halted: haltedPromise,
    async stop() {
      stopping = true;
      clearTimeout(timer);
      await working; // the batch in hand is finished, and acked
      await connection?.close().catch(() => undefined); // what is still buffered goes back to the queue
    },
  };
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

// On its own: RABBITMQ_URL=… ODOO_URL=… ODOO_DB=… ODOO_USER=… ODOO_API_KEY=… npx tsx solutions/13-capstone/06-receiver.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const receiver = await startReceiver({
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
    odoo: {
      url: process.env.ODOO_URL ?? 'http://localhost:8069',
      db: process.env.ODOO_DB ?? 'workbook',
      user: process.env.ODOO_USER ?? 'admin',
      apiKey: process.env.ODOO_API_KEY ?? 'admin',
    },
  });
  void receiver.halted.then(() => (process.exitCode = 2));
  const bye = () => void receiver.stop();
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
}

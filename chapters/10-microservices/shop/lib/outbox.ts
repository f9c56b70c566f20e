// The outbox: a service writes the events it emits into its own schema, in the same transaction
// as the state change that caused them. The relay publishes them afterwards, so a state change
// is never kept without its events, and an event never leaves for a change that rolled back.
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { SHOP_EXCHANGE, publishArgs, type ShopEvent } from './envelope.js';
import { quoteIdent } from './schema.js';

/** Adds events to the schema's outbox, on the caller's client (inside the caller's transaction). */
export async function addToOutbox(client: pg.ClientBase, schema: string, events: ShopEvent<unknown>[]): Promise<void> {
  for (const ev of events) {
    await client.query(
      `INSERT INTO ${quoteIdent(schema)}.outbox (message_id, type, correlation_id, causation_id, producer, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [ev.messageId, ev.type, ev.correlationId, ev.causationId ?? null, ev.producer, JSON.stringify(ev.data), ev.at ?? new Date()],
    );
  }
}

export interface Relay {
  /** Publish what is waiting now rather than at the next poll (after a commit that added events). */
  nudge(): void;
  stop(): Promise<void>;
}

export interface RelayOptions {
  pool: pg.Pool;
  schema: string;
  amqpUrl: string;
  /** The broker connection's name in the management UI. */
  name?: string;
  /** Look for unsent events this often even when nobody nudges (default 250 ms). */
  pollMs?: number;
  batchSize?: number;
  /** A broker that takes messages and never confirms them must not keep rows locked (default 10 s). */
  confirmTimeoutMs?: number;
  log?: (line: string) => void;
}

interface OutboxRow {
  id: string;
  message_id: string;
  type: string;
  correlation_id: string;
  causation_id: string | null;
  producer: string;
  data: Record<string, unknown>;
  created_at: Date;
}

/**
 * Publishes the outbox's unsent rows, oldest first, on a confirm channel of its own connection,
 * and marks them sent only once the broker confirmed them. A crash between the publish and the
 * mark publishes them again with the same messageId: consumers de-duplicate (at least once).
 * FOR UPDATE SKIP LOCKED lets two relays of one service run without taking the same rows.
 * It reconnects by itself; startRelay() rejects when the first connection fails.
 */
export async function startRelay(opts: RelayOptions): Promise<Relay> {
  const { pool, schema, amqpUrl } = opts;
  const pollMs = opts.pollMs ?? 250;
  const batchSize = opts.batchSize ?? 100;
  const log = opts.log ?? ((line: string) => console.error(line));
  let connection: ChannelModel | undefined;
  let channel: ConfirmChannel | undefined;
  let stopped = false;
  let wake: (() => void) | undefined;
  let nudged = false;

  const connect = async () => {
    const c = await amqp.connect(amqpUrl, { clientProperties: { connection_name: opts.name ?? `shop ${schema} relay` } });
    c.on('error', (err: Error) => log(`${schema} relay: connection error: ${err.message}`));
    c.on('close', () => {
      if (connection === c) [connection, channel] = [undefined, undefined];
    });
    try {
      const ch = await c.createConfirmChannel();
      ch.on('error', (err: Error) => log(`${schema} relay: channel error: ${err.message}`));
      await ch.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
      [connection, channel] = [c, ch];
    } catch (err) {
      await c.close().catch(() => undefined);
      throw err;
    }
  };

  const dropConnection = () => {
    const c = connection;
    [connection, channel] = [undefined, undefined];
    // Without waiting for close-ok: a broker that stopped answering would never send it.
    if (c) void c.close().catch(() => undefined);
  };

  /** One batch: publish, wait for the confirms, mark sent, commit. Returns how many rows it sent. */
  const sendBatch = async (ch: ConfirmChannel): Promise<number> => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<OutboxRow>(
        `SELECT * FROM ${quoteIdent(schema)}.outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [batchSize],
      );
      for (const r of rows) {
        const ev: ShopEvent = { type: r.type, data: r.data, messageId: r.message_id, correlationId: r.correlation_id, causationId: r.causation_id ?? undefined, producer: r.producer, at: r.created_at };
        const { routingKey, content, options } = publishArgs(ev);
        ch.publish(SHOP_EXCHANGE, routingKey, content, options);
      }
      if (rows.length > 0) {
        await withTimeout(ch.waitForConfirms(), opts.confirmTimeoutMs ?? 10_000, 'the broker did not confirm the batch in time');
        await client.query(`UPDATE ${quoteIdent(schema)}.outbox SET sent_at = now() WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
      }
      await client.query('COMMIT');
      return rows.length;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined); // the rows stay unsent for the next pass
      throw err;
    } finally {
      client.release();
    }
  };

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      if (nudged || stopped) return resolve();
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      wake = done;
    });

  const loop = async () => {
    let failures = 0;
    while (!stopped) {
      nudged = false;
      try {
        if (!channel) await connect();
        while (!stopped && channel && (await sendBatch(channel)) === batchSize);
        failures = 0;
      } catch (err) {
        failures++;
        if (!stopped) log(`${schema} relay: ${(err as Error).message}; trying again`);
        dropConnection();
      }
      // After a failure wait longer each time (at most 5 s): a broker that is down is not hammered.
      await pause(failures === 0 ? pollMs : Math.min(5000, pollMs * 2 ** failures));
    }
  };

  await connect(); // a wrong URL fails here, to the caller
  const running = loop();
  return {
    nudge() {
      nudged = true;
      wake?.();
    },
    async stop() {
      stopped = true;
      wake?.();
      await running;
      const c = connection;
      [connection, channel] = [undefined, undefined];
      await c?.close().catch(() => undefined);
    },
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

// Known-wrong 13.3: drains only when a notification arrives: nothing at start, after a reconnect, or on a timer.
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { createLogger, type Logger } from '../../../capstone/log.js';
import { EXCHANGE, ROUTING_KEY, assertTopology, connect, type CustomerEvent } from '../../../solutions/13-capstone/02-topology.js';

export const NOTIFY_CHANNEL = 'outbox';

export interface RelayOptions {
  databaseUrl: string;
  amqpUrl: string;
  batchSize?: number;
  /** Drain this often even without a notification. */
  fallbackMs?: number;
  log?: Logger;
}

export interface Relay {
  /** Rows published and marked so far. */
  published(): number;
  stop(): Promise<void>;
}

interface OutboxRow {
  id: string;
  event_id: string;
  entity: string;
  entity_key: string;
  version: number;
  payload: Record<string, unknown>;
  created_at: Date;
}

export async function startRelay(options: RelayOptions): Promise<Relay> {
  const { databaseUrl, amqpUrl, batchSize = 1000, fallbackMs = 2000, log = createLogger('relay') } = options;
  let stopping = false;
  let published = 0;
  let channel: ConfirmChannel | undefined; // undefined while the broker is away
  let connection: ChannelModel | undefined;
  let listener: pg.Client | undefined;

  // The drain connection. A pool of one reconnects by itself after Postgres restarts.
  const db = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  db.on('error', (err) => log.warn('Postgres connection error (drain)', { error: err.message }));

  // ---- draining: at most one at a time; a wake-up during a drain asks for one more ----
  let draining: Promise<void> | undefined;
  let again = false;
  function wake(reason: string) {
    if (stopping) return;
    if (draining) {
      again = true;
      return;
    }
    draining = (async () => {
      do {
        again = false;
        await drainAll(reason);
      } while (again && !stopping);
    })()
      .catch((err) => log.warn('drain failed; the rows stay in the outbox for the next one', { error: (err as Error).message }))
      .finally(() => (draining = undefined));
  }

  async function drainAll(reason: string) {
    let total = 0;
    while (!stopping && channel) {
      const { taken, confirmed } = await drainBatch(channel);
      total += confirmed;
      if (taken < batchSize || confirmed < taken) break; // empty, or the broker refused some: try again later
    }
    // Catching up is news; the steady flow is summed up every few seconds instead.
    if (total > 0 && reason !== 'notification') log.info(`published ${total} event(s)`, { reason, total: published });
    else unreported += total;
  }
  let unreported = 0;

  async function drainBatch(ch: ConfirmChannel): Promise<{ taken: number; confirmed: number }> {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<OutboxRow>(
        `SELECT id, event_id, entity, entity_key, version, payload, created_at
           FROM outbox
          WHERE published_at IS NULL
          ORDER BY id
          LIMIT $1
            FOR UPDATE SKIP LOCKED`,
        [batchSize],
      );
      if (rows.length === 0) {
        await client.query('COMMIT');
        return { taken: 0, confirmed: 0 };
      }
      const confirmed = await publishAll(ch, rows);
      if (confirmed.length > 0) {
        await client.query('UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])', [confirmed]);
      }
      await client.query('COMMIT'); // rows not confirmed stay unpublished: the next drain takes them again
      published += confirmed.length;
      if (confirmed.length < rows.length) {
        log.warn(`the broker did not take ${rows.length - confirmed.length} of ${rows.length} event(s); they stay in the outbox`);
      }
      return { taken: rows.length, confirmed: confirmed.length };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Publishes the rows and resolves with the ids of those the broker confirmed (and did not return). */
  async function publishAll(ch: ConfirmChannel, rows: OutboxRow[]): Promise<string[]> {
    const returned = new Set<string>();
    const onReturn = (msg: { properties: { messageId?: string } }) => {
      if (msg.properties.messageId) returned.add(msg.properties.messageId);
    };
    ch.on('return', onReturn);
    try {
      const results = await Promise.all(
        rows.map(
          (row) =>
            new Promise<boolean>((resolve) => {
              const event: CustomerEvent = {
                eventId: row.event_id,
                entity: row.entity,
                key: row.entity_key,
                version: row.version,
                data: row.payload,
                committedAt: row.created_at.toISOString(),
              };
              try {
                ch.publish(
                  EXCHANGE,
                  ROUTING_KEY,
                  Buffer.from(JSON.stringify(event)),
                  {
                    persistent: true, // written to disk by the broker
                    mandatory: true, // no queue bound? the broker returns it instead of dropping it
                    messageId: row.event_id, // lets anyone downstream spot a duplicate
                    contentType: 'application/json',
                    type: `${row.entity}.changed`,
                    timestamp: Math.floor(row.created_at.getTime() / 1000),
                  },
                  // The broker's answer: null = confirmed (ack), an error = nacked or channel closed.
                  (err) => resolve(!err && !returned.has(row.event_id)),
                );
              } catch {
                resolve(false); // the channel closed under us
              }
            }),
        ),
      );
      if (returned.size > 0) {
        log.error(`${returned.size} event(s) came back unroutable: is the queue gone? Declaring the topology again`, { exchange: EXCHANGE });
        await assertTopology(ch).catch((err) => log.warn('could not declare the topology', { error: (err as Error).message }));
      }
      return rows.filter((_, i) => results[i]).map((r) => r.id);
    } finally {
      ch.off('return', onReturn);
    }
  }

  // ---- the broker: connect, and reconnect whenever the connection goes ----
  async function connectBroker() {
    const conn = await connect(amqpUrl, 'bridge relay', log);
    try {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err: Error) => log.warn('channel error', { error: err.message }));
      await assertTopology(ch);
      conn.on('close', () => {
        channel = undefined;
        connection = undefined;
        if (!stopping) {
          log.warn('lost the broker; reconnecting');
          void reconnectBroker();
        }
      });
      connection = conn;
      channel = ch;
      log.info('connected to the broker');
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  async function reconnectBroker() {
    for (let delay = 500; !stopping; delay = Math.min(delay * 2, 10_000)) {
      await sleep(delay);
      try {
        await connectBroker();
        return;
      } catch (err) {
        log.warn(`broker unreachable, next try in ${Math.min(delay * 2, 10_000) / 1000} s`, { error: (err as Error).message });
      }
    }
  }

  // ---- Postgres LISTEN: a dedicated connection, re-established when it drops ----
  async function listen(): Promise<void> {
    const client = new pg.Client({ connectionString: databaseUrl });
    client.on('error', (err) => log.warn('Postgres connection error (LISTEN)', { error: err.message }));
    await client.connect();
    client.on('notification', () => wake('notification'));
    client.once('end', () => {
      listener = undefined;
      if (!stopping) {
        log.warn('lost the LISTEN connection; reconnecting');
        void relisten();
      }
    });
    await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    listener = client;
  }

  async function relisten() {
    for (let delay = 500; !stopping; delay = Math.min(delay * 2, 10_000)) {
      await sleep(delay);
      try {
        await listen();
        log.info('listening again');
        return;
      } catch (err) {
        log.warn('Postgres unreachable', { error: (err as Error).message });
      }
    }
  }

  // Fail fast on a wrong URL at start; afterwards, heal by reconnecting.
  await connectBroker();
  try {
    await listen();
  } catch (err) {
    stopping = true;
    await connection?.close().catch(() => undefined);
    await db.end().catch(() => undefined);
    throw err;
  }
  const fallback = setInterval(() => undefined, fallbackMs); // notifications are enough (they are not)
  const summary = setInterval(() => {
    if (unreported > 0) log.info(`published ${unreported} event(s)`, { total: published });
    unreported = 0;
  }, 5000);
  log.info('relay started', { batchSize, fallbackMs });

  return {
    published: () => published,
    async stop() {
      stopping = true;
      clearInterval(fallback);
      clearInterval(summary);
      await draining;
      await listener?.end().catch(() => undefined);
      await db.end().catch(() => undefined);
      await connection?.close().catch(() => undefined);
    },
  };
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

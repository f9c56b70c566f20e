// Exercise 13.3: the relay: outbox rows -> RabbitMQ, marked published only once the broker has them
// Text: chapters/13-capstone/README.md   Check: npm run check 13.3   Hint: npm run hint 13.3
//
// The original project's listen.py turned each NOTIFY into a message, and lost every change
// made while it was not listening. The relay reads the outbox instead; NOTIFY only wakes it up.
// startRelay(options) must:
//   1. LISTEN on channel 'outbox' on a connection of its own, and drain on every notification
//      (one that arrives during a drain makes one more drain when it ends),
//   2. also drain at start, after every reconnect (Postgres or broker), and every `fallbackMs`:
//      notifications get lost, unpublished rows do not,
//   3. drain = repeat { BEGIN; take up to `batchSize` unpublished rows, oldest first,
//      FOR UPDATE SKIP LOCKED (two relays never take the same row; never "id > last id seen":
//      ids are handed out before commit, so a row with a smaller id can commit later); publish
//      each; wait for the broker's confirms; mark published ONLY the rows the broker confirmed
//      and did not return; COMMIT } until a batch comes back short or not all taken; a drain
//      that fails rolls back and leaves its rows to the next one; published() counts the rows
//      marked so far,
//   4. publish to EXCHANGE with ROUTING_KEY on a confirm channel: persistent, mandatory
//      (an unroutable message comes back instead of vanishing), messageId = the event id,
//      contentType 'application/json', type '<entity>.changed', timestamp = created_at in
//      seconds, body = the row's CustomerEvent as JSON; a message that comes back makes the
//      relay declare the topology again,
//   5. reconnect by itself, after 0.5 s and then twice as long each time (at most 10 s), when
//      the broker or Postgres goes away or the broker closes its channel (a deleted exchange):
//      the LISTEN connection, the drain's (a pg.Pool replaces it) and the broker's ('bridge relay'),
//   6. log through options.log: a warning with the error's message for every error and lost
//      connection, a warning for a batch the broker did not fully take, an error for messages
//      that came back, an info line once connected again; no warning nor error on a good day,
//   7. startRelay() rejects, closing what it opened, when it cannot connect, LISTEN or declare
//      the topology; stop() stops cleanly, even while connections are down: no drain left
//      running, every connection closed, nothing reconnecting afterwards,
//   8. wait for a batch's confirms at most `confirmTimeoutMs`: a broker that takes the messages
//      and never confirms them (a memory or disk alarm, a connection that died without a word)
//      must not keep the drain's transaction open and its rows locked. On time-out, fail the
//      drain with an error that says so (logged as in 6), roll back (the rows stay unpublished,
//      their locks are released), close the broker connection without waiting for its answer,
//      and reconnect as in 5: the next drain takes them again; stop() leaves no timer running.
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { pathToFileURL } from 'node:url';
import { createLogger, type Logger } from '../../capstone/log.js';
import { EXCHANGE, ROUTING_KEY, assertTopology, connect, type CustomerEvent } from './02-topology.js';

export const NOTIFY_CHANNEL = 'outbox';

export interface RelayOptions {
  databaseUrl: string;
  amqpUrl: string;
  batchSize?: number;
  /** Drain this often even without a notification. */
  fallbackMs?: number;
  /** How long a drain waits for the broker's confirms before it rolls back (default 30 s). */
  confirmTimeoutMs?: number;
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
  const { databaseUrl, amqpUrl, batchSize = 1000, fallbackMs = 2000, confirmTimeoutMs = 30_000, log = createLogger('relay') } = options;
  let stopping = false;
  let published = 0;
  let channel: ConfirmChannel | undefined; // undefined while the broker is away
  let connection: ChannelModel | undefined;
  let listener: pg.Client | undefined;

  // The drain's connection. A pool (of one) replaces a connection Postgres dropped.
  const db = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  db.on('error', (err) => log.warn('Postgres connection error (drain)', { error: err.message }));

  // ---- draining: at most one at a time; a wake-up during a drain asks for one more ----
  let draining: Promise<void> | undefined;
  let again = false;
  function wake() {
    if (draining) {
      again = true;
      return;
    }
    draining = (async () => {
      do {
        again = false;
        await drainAll();
      } while (again && !stopping);
    })()
      .catch((err) => log.warn('drain failed; the rows stay in the outbox for the next one', { error: (err as Error).message }))
      .finally(() => (draining = undefined));
  }

  async function drainAll() {
    while (!stopping && channel) {
      const { taken, confirmed } = await drainBatch(channel);
      if (taken < batchSize || confirmed < taken) break; // empty, or the broker refused some: try again later
    }
  }

  async function drainBatch(ch: ConfirmChannel): Promise<{ taken: number; confirmed: number }> {
    // TODO 1: in a transaction on a client of the pool (const client = await db.connect()):
    //         BEGIN, then take up to batchSize unpublished rows, oldest first, locked:
    //           SELECT id, event_id, entity, entity_key, version, payload, created_at FROM outbox
    //            WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    //         (never "WHERE id > the last id I saw": ids are handed out before commit, so a
    //         smaller id can commit after a bigger one).
    // TODO 2: const confirmed = await publishAll(ch, rows): the ids the broker confirmed.
    // TODO 3: UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) with ONLY the
    //         confirmed ids, then COMMIT; add them to `published`. When the broker did not take them
    //         all, log.warn(…) that they stay in the outbox. ROLLBACK on error (and rethrow), release
    //         the client in finally. Return { taken: rows.length, confirmed: confirmed.length }.
    void ch;
    throw new Error('TODO: drain the outbox in exercises/13-capstone/03-relay.ts');
  }

  /** Publishes the rows and resolves with the ids of those the broker confirmed (and did not return). */
  async function publishAll(ch: ConfirmChannel, rows: OutboxRow[]): Promise<string[]> {
    const returned = new Set<string | undefined>();
    const onReturn = (msg: { properties: { messageId?: string } }) => returned.add(msg.properties.messageId);
    ch.on('return', onReturn);
    try {
      const confirms = Promise.all(
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
                // TODO 4: ch.publish(EXCHANGE, ROUTING_KEY, Buffer.from(JSON.stringify(event)), options, callback)
                //         options: persistent, mandatory, messageId = row.event_id, contentType 'application/json',
                //         type `${row.entity}.changed`, timestamp (seconds) from row.created_at.
                //         callback (err) => resolve(true) only if err is null AND the message was not returned.
                void event;
                resolve(false);
              } catch {
                resolve(false); // the channel closed under us
              }
            }),
        ),
      );
      // TODO 5: wait for `confirms` at most confirmTimeoutMs: Promise.race() with a promise that a
      //         setTimeout() rejects with an Error saying what happened (clear the timer in a finally
      //         block). On time-out, call dropBroker() and throw, so that drainBatch() rolls back:
      //         the rows stay unpublished and their locks are released, and wake()'s catch logs the
      //         error. (A broker under an alarm takes the messages and confirms nothing.)
      const results = await confirms;
      if (returned.size > 0) {
        log.error(`${returned.size} event(s) came back unroutable: is the queue gone? Declaring the topology again`);
        await assertTopology(ch);
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
      // A channel the broker closed (an exchange deleted under us) is of no use: start over.
      ch.on('close', () => void conn.close().catch(() => undefined));
      await assertTopology(ch);
      conn.on('close', () => {
        if (connection !== conn) return; // one we gave up on (dropBroker) closing at last
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
      wake();
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Gives up on a connection whose broker stopped confirming: forgets it, closes it without
   * waiting (a broker that confirms nothing may not answer the close either; amqplib's
   * heartbeat ends it if nothing comes back), and connects anew. The failed drain logs why.
   */
  function dropBroker() {
    const conn = connection!; // still there: a connection that closes settles every confirm first
    channel = undefined;
    connection = undefined;
    void conn.close().catch(() => undefined);
    void reconnectBroker();
  }

  async function reconnectBroker() {
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      await sleep(delay);
      if (stopping) return; // stop() was called while we waited
      try {
        await connectBroker();
        return;
      } catch (err) {
        log.warn('broker unreachable', { error: (err as Error).message });
      }
    }
  }

  // ---- Postgres LISTEN: a dedicated connection, re-established when it drops ----
  async function listen(): Promise<void> {
    const client = new pg.Client({ connectionString: databaseUrl });
    client.on('error', (err) => log.warn('Postgres connection error (LISTEN)', { error: err.message }));
    await client.connect();
    client.on('notification', wake);
    client.once('end', () => {
      listener = undefined;
      if (!stopping) {
        log.warn('lost the LISTEN connection; reconnecting');
        void relisten();
      }
    });
    await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    listener = client;
    // Whatever was committed while nobody listened is still in the outbox: catch up now.
    wake();
  }

  async function relisten() {
    for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
      await sleep(delay);
      if (stopping) return; // stop() was called while we waited
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
  const fallback = setInterval(wake, fallbackMs);

  return {
    published: () => published,
    async stop() {
      stopping = true;
      clearInterval(fallback);
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

// On its own: DATABASE_URL=… RABBITMQ_URL=… npx tsx exercises/13-capstone/03-relay.ts   (Ctrl-C to stop)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const relay = await startRelay({
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres:workbook@127.0.0.1:54329/postgres',
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
  });
  const bye = () => void relay.stop();
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
}

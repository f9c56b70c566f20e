// The outbox relay of exercise 9.2, as a module for exercise 9.3 (which is about something
// else): a transaction helper, and a relay that publishes the outbox rows not sent yet, on a
// confirm channel, and marks a row sent only after its confirm. A row the broker refused stays
// unsent for the next pass; a crash between the confirm and the mark sends the row again after
// the restart (same messageId). The tables are those of exercise 9.2: outbox (id, message_id,
// payload, sent_at).
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';

/** Runs `work` between BEGIN and COMMIT on one connection of the pool; ROLLBACK when anything fails. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A connection that dies while checked out emits 'error' on the client (the pool listens only to idle ones).
  const onError = (err: Error) => console.error(`database connection lost: ${err.message}`);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    client.off('error', onError);
    client.release();
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // fails too when the connection is gone
    client.off('error', onError);
    client.release(err as Error); // a broken connection must not go back to the pool
    throw err;
  }
}

export interface Relay {
  /** Stops the loop; resolves once the pass in progress (if any) has ended. */
  stop(): Promise<void>;
}

/** Publishes the unsent outbox rows to `queue` every `everyMs` (a pass at once, then one after each pause). */
export function startRelay(opts: { pool: pg.Pool; channel: ConfirmChannel; queue: string; everyMs?: number; batch?: number }): Relay {
  const { pool, channel, queue, everyMs = 500, batch = 100 } = opts;

  const publishConfirmed = (payload: unknown, messageId: string) =>
    new Promise<void>((resolve, reject) => {
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(payload)), { persistent: true, messageId, contentType: 'application/json' }, (err) =>
        err ? reject(err) : resolve(),
      );
    });

  const pass = () =>
    inTransaction(pool, async (client) => {
      const { rows } = await client.query<{ id: string; message_id: string; payload: unknown }>(
        'SELECT id, message_id, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED',
        [batch],
      );
      const outcomes = await Promise.allSettled(rows.map((row) => publishConfirmed(row.payload, row.message_id)));
      const confirmed = rows.filter((_, i) => outcomes[i]!.status === 'fulfilled').map((row) => row.id);
      if (confirmed.length) await client.query('UPDATE outbox SET sent_at = now() WHERE id = ANY($1)', [confirmed]);
      if (confirmed.length < rows.length) console.error(`relay: the broker refused ${rows.length - confirmed.length} message(s); trying again shortly`);
    });

  let stopped = false;
  let wake: () => void = () => undefined;
  const done = (async () => {
    while (!stopped) {
      await pass().catch((err: Error) => console.error(`relay: ${err.message}`));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, everyMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();
  return {
    async stop() {
      stopped = true;
      wake();
      await done;
    },
  };
}

// The idempotent consumer: a message's id and the work it caused commit together, or neither does.
import type pg from 'pg';
import { quoteIdent } from './schema.js';

/**
 * Runs `work` in one transaction with the recording of `messageId` in the schema's inbox.
 * A messageId the inbox holds already (a redelivery, a duplicate publish) does nothing:
 * 'duplicate'. A second transaction inserting the same id waits for the first and then
 * finds it, so two deliveries handled at the same moment still do the work once.
 * When `work` throws, everything rolls back (the id too) and the error is rethrown.
 */
export async function processOnce(pool: pg.Pool, schema: string, messageId: string, type: string, work: (client: pg.PoolClient) => Promise<void>): Promise<'done' | 'duplicate'> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const fresh = await client.query(`INSERT INTO ${quoteIdent(schema)}.inbox (message_id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [messageId, type]);
    if (fresh.rowCount === 1) await work(client);
    // A statement that failed inside `work` (its error caught there) has aborted the transaction:
    // Postgres then answers COMMIT with ROLLBACK, without an error. Do not ack what was lost.
    const end = await client.query('COMMIT');
    if (end.command === 'ROLLBACK') throw new Error('the transaction had failed and was rolled back');
    return fresh.rowCount === 1 ? 'done' : 'duplicate';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // a dead connection has rolled back already
    throw err;
  } finally {
    client.release();
  }
}

// Each service owns one Postgres schema: its business tables, plus an outbox (events it has
// decided to emit, published by its relay) and an inbox (the messageIds it has handled).
import type pg from 'pg';

/** Creates the schema, its outbox and its inbox, when they do not exist yet. */
export async function ensureServiceTables(pool: pg.Pool, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Two instances of one service starting at once would race on CREATE … IF NOT EXISTS.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`shop schema ${schema}`]);
    await client.query(`
      CREATE SCHEMA IF NOT EXISTS ${s};
      CREATE TABLE IF NOT EXISTS ${s}.outbox (
        id bigserial PRIMARY KEY,
        message_id uuid NOT NULL UNIQUE,
        type text NOT NULL,
        correlation_id text NOT NULL,
        causation_id text,
        producer text NOT NULL,
        data jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
      );
      CREATE INDEX IF NOT EXISTS outbox_unsent ON ${s}.outbox (id) WHERE sent_at IS NULL;
      CREATE TABLE IF NOT EXISTS ${s}.inbox (
        message_id text PRIMARY KEY,
        type text NOT NULL,
        handled_at timestamptz NOT NULL DEFAULT now()
      );`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** A schema name as an SQL identifier (service names are ours, but quoting costs nothing). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

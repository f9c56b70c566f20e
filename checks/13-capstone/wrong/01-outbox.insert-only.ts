// Known-wrong 13.1: fires the outbox trigger on INSERT only, so updates never leave an event.
// The SQL is inline here (a wrong/ folder holds .ts files only); the solution keeps it in 01-outbox.sql.
import { readFile } from 'node:fs/promises';
import pg from 'pg';

const TRIGGERS = String.raw`-- Exercise 13.1: the outbox trigger (see 01-outbox.ts and chapters/13-capstone/README.md)
-- The tables are in capstone/sql/schema.sql: customers (the application's) and outbox.

-- Every update makes a new version of the row, so the receiving side can tell
-- an older change from a newer one, whatever order they arrive in.
CREATE OR REPLACE FUNCTION customers_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  NEW.updated_at := now();
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS customers_version ON customers;
CREATE TRIGGER customers_version BEFORE UPDATE ON customers
  FOR EACH ROW EXECUTE FUNCTION customers_next_version();

-- The change and its event are written in ONE transaction: both are committed, or neither.
-- NOTIFY only says "there is something new": it carries the outbox id, a few bytes,
-- never the row (NOTIFY payloads must stay under 8000 bytes, and a notification
-- nobody listens to is gone). The relay reads the row from the outbox.
CREATE OR REPLACE FUNCTION customers_to_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  new_id bigint;
BEGIN
  INSERT INTO outbox (entity, entity_key, version, payload)
  VALUES ('customer', NEW.id::text, NEW.version, to_jsonb(NEW))
  RETURNING id INTO new_id;
  PERFORM pg_notify('outbox', new_id::text);
  RETURN NULL; -- AFTER trigger: the return value is ignored
END $$;

DROP TRIGGER IF EXISTS customers_outbox ON customers;
CREATE TRIGGER customers_outbox AFTER INSERT ON customers
  FOR EACH ROW EXECUTE FUNCTION customers_to_outbox();
`;

/** The tables (given) and then the triggers. */
export async function installOutbox(db: pg.ClientBase): Promise<void> {
  const schema = await readFile(new URL('../../../capstone/sql/schema.sql', import.meta.url), 'utf8');
  await db.query(schema);
  await db.query(TRIGGERS);
}

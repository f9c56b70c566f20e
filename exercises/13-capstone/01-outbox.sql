-- Exercise 13.1: the outbox trigger (see 01-outbox.ts and chapters/13-capstone/README.md)
-- The tables are in capstone/sql/schema.sql: customers (the application's) and outbox.

-- Every update makes a new version of the row, so the receiving side can tell
-- an older change from a newer one, whatever order they arrive in. (Given.)
CREATE OR REPLACE FUNCTION customers_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  NEW.updated_at := now();
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS customers_version ON customers;
CREATE TRIGGER customers_version BEFORE UPDATE ON customers
  FOR EACH ROW EXECUTE FUNCTION customers_next_version();

-- TODO 1: CREATE OR REPLACE FUNCTION customers_to_outbox() RETURNS trigger (plpgsql) that
--         inserts one outbox row: entity 'customer', entity_key NEW.id::text,
--         version NEW.version, payload to_jsonb(NEW). Keep the new outbox id (RETURNING id INTO …).
-- TODO 2: in the same function, PERFORM pg_notify('outbox', <the outbox id>::text):
--         only the id, never the row (payloads must stay under 8000 bytes).
-- TODO 3: CREATE TRIGGER customers_outbox AFTER INSERT OR UPDATE ON customers
--         FOR EACH ROW EXECUTE FUNCTION customers_to_outbox();  (DROP TRIGGER IF EXISTS first)
-- Then delete these TODO lines: 01-outbox.ts refuses a file that still has them.

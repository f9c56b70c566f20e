-- The original project's design: a trigger sends the whole row as JSON with NOTIFY, and a
-- listener turns each notification into a message. No outbox: a notification nobody is
-- listening for is gone, and a payload of 8000 bytes or more fails the application's write.
CREATE OR REPLACE FUNCTION customers_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    NEW.version := OLD.version + 1;
  END IF;
  PERFORM pg_notify('customers', json_build_object('op', TG_OP, 'row', row_to_json(NEW))::text);
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS customers_notify ON customers;
CREATE TRIGGER customers_notify BEFORE INSERT OR UPDATE ON customers
  FOR EACH ROW EXECUTE FUNCTION customers_notify();

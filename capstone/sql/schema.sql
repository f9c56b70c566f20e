-- The source application's table, and the bridge's outbox. Given: the exercises write
-- the triggers (solutions/13-capstone/01-outbox.sql), not the tables.

-- The application writes customers. It knows nothing about RabbitMQ or Odoo.
CREATE TABLE IF NOT EXISTS customers (
  id         bigserial PRIMARY KEY,
  name       text,                                -- Odoo requires one; a row without is "poison"
  email      text,
  phone      text,
  city       text,
  country    text,                                -- a country name Odoo must know (Belgium, Brazil, ...)
  notes      text,                                -- free text, may be long (NOTIFY's 8000-byte limit does not apply here)
  version    integer NOT NULL DEFAULT 1,          -- bumped by a trigger on every update: the order of changes per row
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per change, written by a trigger in the SAME transaction as the change:
-- committed together, or not at all. The relay publishes the rows and marks them.
CREATE TABLE IF NOT EXISTS outbox (
  id           bigserial PRIMARY KEY,
  event_id     uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,  -- becomes the message's messageId
  entity       text NOT NULL,                                  -- 'customer'
  entity_key   text NOT NULL,                                  -- the customer's id
  version      integer NOT NULL,                               -- customers.version at the time of the change
  payload      jsonb NOT NULL,                                 -- the whole row, as JSON
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at timestamptz                                     -- set by the relay once the broker confirmed
);

-- The relay only ever looks for unpublished rows: keep that cheap however large the table grows.
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

// One shop service = a pool on its own schema, a relay for its outbox and a consumer of its
// queue. startService() wires them, so that each service's file holds only its business.
import pg from 'pg';
import { consumeEvents, type Handler, type Running } from './consumer.js';
import { startRelay } from './outbox.js';
import { ensureServiceTables } from './schema.js';

export interface ServiceDeps {
  amqpUrl: string;
  databaseUrl: string;
  /** Prefix of the connection names (broker and Postgres), e.g. to tell two runs apart. */
  name?: string;
  /** Where the service logs (default: console.error). */
  log?: (line: string) => void;
}

export interface Service extends Running {
  /** The service's pool (its schema's tables are schema-qualified: inventory.stock, …). */
  pool: pg.Pool;
  /** Publish the outbox now (after a commit outside a handler, e.g. placeOrder()). */
  publishSoon(): void;
}

export interface ServiceOptions {
  /** Its name: schema <service>, queue shop.<service>. */
  service: string;
  deps: ServiceDeps;
  /** SQL that creates the service's own tables when they do not exist (run once at start). */
  tables: string;
  /** The event types it consumes (none: a service that only emits). */
  keys: string[];
  handle: Handler;
}

export async function startService(opts: ServiceOptions): Promise<Service> {
  const { service, deps } = opts;
  const name = deps.name ? `${deps.name} ${service}` : `shop ${service}`;
  const log = deps.log ?? ((line: string) => console.error(line));
  const pool = new pg.Pool({ connectionString: deps.databaseUrl, max: 5, application_name: name });
  pool.on('error', (err) => log(`${service}: postgres: ${err.message}`)); // an idle client lost its server
  const opened: Running[] = [];
  try {
    await ensureServiceTables(pool, service);
    await pool.query(opts.tables);
    const relay = await startRelay({ pool, schema: service, amqpUrl: deps.amqpUrl, name: `${name} relay`, log });
    opened.push(relay);
    const consumer = await consumeEvents({ service, amqpUrl: deps.amqpUrl, pool, keys: opts.keys, handle: opts.handle, onEmitted: () => relay.nudge(), name, log });
    opened.push(consumer);
    return {
      pool,
      publishSoon: () => relay.nudge(),
      async stop() {
        await consumer.stop(); // first: handlers in flight commit and add to the outbox
        await relay.stop();
        await pool.end();
      },
    };
  } catch (err) {
    for (const r of opened.reverse()) await r.stop().catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  }
}

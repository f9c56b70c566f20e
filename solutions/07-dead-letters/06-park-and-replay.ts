// Exercise 7.6: park and replay: failed messages wait in a table, an operator fixes and replays them
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.6   Hint: npm run hint 7.6
//
// A message that fails is parked with its reason instead of being retried for ever or thrown away;
// an operator looks at it, corrects it, and sends it again, or cancels it. The tables are given
// (SCHEMA). startWorker(options) must:
//   1. declare EXCHANGE (direct, durable) and QUEUE (a durable quorum queue) bound with ROUTING_KEY,
//      and consume QUEUE with manual acks and a prefetch of 10: JSON.parse the body, await
//      handle(order), then ack,
//   2. park a message whose body is not JSON or whose handle() rejects: insert into
//      parked_messages its exchange and routing key (where it was sent), its properties, its body
//      and the reason (the error's message), and only once that committed, ack it (never requeue
//      it: it would fail again at once),
// openParking(options), the operator's side, returns { list, edit, replay, cancel, close }:
//   3. list(): every parked message, oldest first, as ParkedMessage,
//   4. edit(id, body, operator): refuse (reject, change nothing) a body that is not valid JSON;
//      otherwise replace the body and record the action in parking_audit, in one transaction,
//   5. replay(id, operator): publish the parked message to its exchange and routing key, with its
//      properties, on a confirm channel with mandatory; once the broker confirmed it (and did not
//      return it), delete it from parked_messages and record the action, in the transaction that
//      locked its row (SELECT … FOR UPDATE: two operators never replay it twice),
//   6. when the broker refuses the replay (a nack, an unroutable message, a missing exchange),
//      roll back and reject: the message stays parked, unchanged, and the next replay works,
//   7. cancel(id, operator): delete it and record the action, in one transaction; edit, replay and
//      cancel reject an id that is not parked (replayed or cancelled meanwhile),
//   8. every action recorded in parking_audit: parked_id, action ('edit', 'replay' or 'cancel'),
//      operator, detail (what changed: the old and the new body, the destination, the cancelled
//      body), at; 'error' listeners everywhere; stop() and close() close what they opened.
import amqp from 'amqplib';
import pg from 'pg';
import { pathToFileURL } from 'node:url';

export const EXCHANGE = 'shop';
export const QUEUE = 'orders';
export const ROUTING_KEY = 'order.placed';

/** The tables (given). */
export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS parked_messages (
    id bigserial PRIMARY KEY,
    exchange text NOT NULL,
    routing_key text NOT NULL,
    properties jsonb NOT NULL,
    body text NOT NULL,
    reason text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS parking_audit (
    id bigserial PRIMARY KEY,
    parked_id bigint NOT NULL,
    action text NOT NULL,
    operator text NOT NULL,
    detail jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
  );`;

export interface ParkedMessage {
  id: string;
  exchange: string;
  routingKey: string;
  body: string;
  reason: string;
  parkedAt: Date;
}

export interface WorkerOptions {
  amqpUrl: string;
  databaseUrl: string;
  handle: (order: unknown) => Promise<void>;
}

export interface Parking {
  list(): Promise<ParkedMessage[]>;
  edit(id: string, body: string, operator: string): Promise<void>;
  replay(id: string, operator: string): Promise<void>;
  cancel(id: string, operator: string): Promise<void>;
  close(): Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<{ stop(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 2 });
  pool.on('error', (err) => console.error(`postgres: ${err.message}`));
  await pool.query(SCHEMA);
  const connection = await amqp.connect(options.amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
  await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(QUEUE, EXCHANGE, ROUTING_KEY);
  await channel.prefetch(10);

  const work = async (msg: amqp.ConsumeMessage): Promise<void> => {
    try {
      await options.handle(JSON.parse(msg.content.toString()));
    } catch (err) {
      const reason = (err as Error).message;
      console.error(`parked: ${reason}`);
      await pool.query('INSERT INTO parked_messages (exchange, routing_key, properties, body, reason) VALUES ($1, $2, $3, $4, $5)', [
        msg.fields.exchange,
        msg.fields.routingKey,
        msg.properties,
        msg.content.toString(),
        reason,
      ]);
    }
  };
  const { consumerTag } = await channel.consume(
    QUEUE,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer
      work(msg)
        .then(() => channel.ack(msg)) // handled, or parked (committed)
        .catch((err: Error) => console.error(`message left unacked (it comes back when the connection closes): ${err.message}`));
    },
    { noAck: false },
  );
  return {
    async stop() {
      await channel.cancel(consumerTag);
      await connection.close();
      await pool.end();
    },
  };
}

export async function openParking(options: { amqpUrl: string; databaseUrl: string }): Promise<Parking> {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 4 });
  pool.on('error', (err) => console.error(`postgres: ${err.message}`));
  await pool.query(SCHEMA);
  const connection = await amqp.connect(options.amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));

  /** Runs `work` in a transaction on the parked row `id`, locked; rejects when it is not parked. */
  const withRow = async <T>(id: string, work: (db: pg.PoolClient, row: ParkedRow) => Promise<T>): Promise<T> => {
    const db = await pool.connect();
    try {
      await db.query('BEGIN');
      const { rows } = await db.query<ParkedRow>('SELECT * FROM parked_messages WHERE id = $1 FOR UPDATE', [id]);
      if (rows.length === 0) throw new Error(`message ${id} is not parked (replayed or cancelled already?)`);
      const result = await work(db, rows[0]!);
      await db.query('COMMIT');
      return result;
    } catch (err) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      db.release();
    }
  };
  const audit = (db: pg.PoolClient, id: string, action: string, operator: string, detail: object) =>
    db.query('INSERT INTO parking_audit (parked_id, action, operator, detail) VALUES ($1, $2, $3, $4)', [id, action, operator, detail]);

  /** Publishes on a confirm channel of its own: a missing exchange closes the channel it is sent on. */
  const publish = async (row: ParkedRow): Promise<void> => {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => console.error(`replay refused: ${err.message}`));
    let returned = false;
    channel.on('return', () => (returned = true)); // comes before the confirm
    try {
      channel.publish(row.exchange, row.routing_key, Buffer.from(row.body), { ...row.properties, mandatory: true });
      await channel.waitForConfirms(); // rejects on a nack, or when the broker closed the channel
    } catch (err) {
      throw new Error(`the broker refused the replay: ${(err as Error).message}`);
    } finally {
      await channel.close().catch(() => undefined); // closed already when the broker closed it
    }
    if (returned) throw new Error(`the replay could not be routed: nothing is bound to "${row.exchange}" with "${row.routing_key}"`);
  };

  return {
    async list() {
      const { rows } = await pool.query<ParkedRow>('SELECT * FROM parked_messages ORDER BY id');
      return rows.map((r) => ({ id: r.id, exchange: r.exchange, routingKey: r.routing_key, body: r.body, reason: r.reason, parkedAt: r.parked_at }));
    },
    async edit(id, body, operator) {
      JSON.parse(body); // not JSON: throws, before anything changes
      await withRow(id, async (db, row) => {
        await db.query('UPDATE parked_messages SET body = $2 WHERE id = $1', [id, body]);
        await audit(db, id, 'edit', operator, { before: row.body, after: body });
      });
    },
    async replay(id, operator) {
      await withRow(id, async (db, row) => {
        await publish(row); // throws when refused: the transaction rolls back, the row stays
        await db.query('DELETE FROM parked_messages WHERE id = $1', [id]);
        await audit(db, id, 'replay', operator, { exchange: row.exchange, routingKey: row.routing_key, body: row.body });
      });
    },
    async cancel(id, operator) {
      await withRow(id, async (db, row) => {
        await db.query('DELETE FROM parked_messages WHERE id = $1', [id]);
        await audit(db, id, 'cancel', operator, { body: row.body, reason: row.reason });
      });
    },
    async close() {
      await connection.close();
      await pool.end();
    },
  };
}

interface ParkedRow {
  id: string;
  exchange: string;
  routing_key: string;
  properties: amqp.MessageProperties;
  body: string;
  reason: string;
  parked_at: Date;
}

// On its own: DATABASE_URL=postgres://… npx tsx solutions/07-dead-letters/06-park-and-replay.ts   (Ctrl-C to stop)
// Publish {"sku":"X","qty":0} to exchange "shop" with key "order.placed": it is parked; the parked messages are printed every 5 s.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const urls = { amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres:workbook@127.0.0.1:54329/postgres' };
  const worker = await startWorker({
    ...urls,
    handle: async (order) => {
      if (!((order as { qty?: number }).qty! > 0)) throw new Error('qty must be a positive number');
      console.log('order handled:', order);
    },
  });
  const parking = await openParking(urls);
  const timer = setInterval(() => void parking.list().then((list) => console.log('parked:', list)), 5000);
  process.once('SIGINT', () => {
    clearInterval(timer);
    void worker.stop().then(() => parking.close());
  });
}

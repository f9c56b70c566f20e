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
  // TODO 1: a pg.Pool (with pool.on('error', …)), await pool.query(SCHEMA); connect ('error' listeners),
  //         assertExchange(EXCHANGE, 'direct', durable), assertQueue(QUEUE, durable quorum),
  //         bindQueue(QUEUE, EXCHANGE, ROUTING_KEY), prefetch(10), consume with { noAck: false }.
  // TODO 2: per message: try { await options.handle(JSON.parse(body)) } catch (err) { INSERT INTO parked_messages
  //         (exchange, routing_key, properties, body, reason) … }, then ack.
  throw new Error('TODO: write startWorker() in exercises/07-dead-letters/06-park-and-replay.ts');

  return {
    async stop() {
      // TODO 8: cancel the consumer, close the connection, end the pool
    },
  };
}

export async function openParking(options: { amqpUrl: string; databaseUrl: string }): Promise<Parking> {
  // TODO 3-8: a pg.Pool and an AMQP connection (with 'error' listeners), then the operator's five functions.
  //   A helper that runs a transaction on one locked row helps edit, replay and cancel:
  //   BEGIN; SELECT * FROM parked_messages WHERE id = $1 FOR UPDATE; no row: throw; …; COMMIT (ROLLBACK on an error).
  throw new Error('TODO: write openParking() in exercises/07-dead-letters/06-park-and-replay.ts');

  return {
    async list() {
      // TODO 3: SELECT * FROM parked_messages ORDER BY id, as ParkedMessage objects
      return [];
    },
    async edit(id, body, operator) {
      // TODO 4: JSON.parse(body) first; then UPDATE the body and INSERT an audit row 'edit', in one transaction
    },
    async replay(id, operator) {
      // TODO 5, 6: lock the row; publish on a new confirm channel with { ...properties, mandatory: true },
      //            a 'return' listener and an 'error' listener; await waitForConfirms(); returned: throw.
      //            Then DELETE the row and INSERT an audit row 'replay'; COMMIT.
    },
    async cancel(id, operator) {
      // TODO 7: lock the row; DELETE it and INSERT an audit row 'cancel'; COMMIT
    },
    async close() {
      // TODO 8: close the connection, end the pool
    },
  };
}

// On its own: DATABASE_URL=postgres://… npx tsx exercises/07-dead-letters/06-park-and-replay.ts   (Ctrl-C to stop)
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

// Exercise 9.2: the outbox: the job and its message, written in one transaction
// Text: chapters/09-express-api/README.md   Check: npm run check 9.2   Hint: npm run hint 9.2
//
// createApp({ amqpUrl, databaseUrl, queue }) creates the tables (SCHEMA, given), starts the
// relay and resolves with { app, close }:
//   1. POST /jobs with a JSON object inserts the job (status "queued") and its outbox row
//      (message_id = the job's id, the same payload) in ONE Postgres transaction, and answers 202
//      with Location: /jobs/<id> and Retry-After: 1 after the COMMIT; the request itself
//      publishes nothing,
//   2. when the transaction fails, answer 503 with Retry-After: neither row exists then,
//   3. the relay takes the outbox rows not sent yet, oldest first, publishes each to `queue` (a
//      durable quorum queue) on a confirm channel, as a persistent JSON message with messageId =
//      message_id, and marks a row sent (sent_at) only after the broker confirmed its message,
//   4. a row whose message the broker refused (a nack) stays unsent and is tried again a moment
//      later: no job is ever lost; a message may go out twice (a crash between the confirm and
//      the mark), and its messageId lets a consumer drop the copy,
//   5. the relay runs in the same process, at least every second, so that it also sends the rows
//      an earlier process left unsent,
//   6. GET /jobs/:id answers 200 { id, status } from the jobs table, 404 for an unknown id,
//   7. every error answer is JSON, { error: "<what went wrong>" }, with a Retry-After header only
//      on a 503,
//   8. listen for 'error' on the pool, the connection and the channel: a lost connection must not
//      end the process,
//   9. close() stops the relay (waiting for a pass in progress), then closes the pool, the
//      channel and the connection.
import amqp from 'amqplib';
import express, { type NextFunction, type Request, type Response } from 'express';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface AppDeps {
  amqpUrl: string;
  databaseUrl: string;
  queue: string;
}

export interface ServedApp {
  app: express.Express;
  close(): Promise<void>;
}

// #region schema
export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS jobs (
    id         uuid PRIMARY KEY,
    payload    jsonb NOT NULL,
    status     text NOT NULL DEFAULT 'queued',
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial PRIMARY KEY,
    message_id uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
  );
  CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;`;
// #endregion schema

const RELAY_EVERY_MS = 500;
const BATCH = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An error that says which HTTP status to answer with; the error handler at the end sends it. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** Runs `work` between BEGIN and COMMIT on one connection of the pool; ROLLBACK when anything fails. */
async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
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

/** Calls `pass` every `everyMs`, one pass at a time; stop() waits for the pass in progress. */
function repeat(pass: () => Promise<unknown>, everyMs: number) {
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

export async function createApp({ amqpUrl, databaseUrl, queue }: AppDeps): Promise<ServedApp> {
  const pool = new pg.Pool({ connectionString: databaseUrl });
  pool.on('error', (err) => console.error(`idle database connection: ${err.message}`));
  await pool.query(SCHEMA);

  // The relay's connection: the only one that publishes.
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

  function publishConfirmed(payload: unknown, messageId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(payload)), { persistent: true, messageId, contentType: 'application/json' }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  // #region relay
  /** One pass: publish the unsent rows (locked, so that two relays never send the same row at once) and mark those the broker confirmed. */
  async function relayOnce(): Promise<void> {
    await inTransaction(pool, async (client) => {
      const { rows } = await client.query<{ id: string; message_id: string; payload: unknown }>(
        'SELECT id, message_id, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED',
        [BATCH],
      );
      const outcomes = await Promise.allSettled(rows.map((row) => publishConfirmed(row.payload, row.message_id)));
      const confirmed = rows.filter((_, i) => outcomes[i]!.status === 'fulfilled').map((row) => row.id);
      // A crash right here publishes these rows again after the restart: at least once, never lost.
      if (confirmed.length) await client.query('UPDATE outbox SET sent_at = now() WHERE id = ANY($1)', [confirmed]);
      if (confirmed.length < rows.length) console.error(`relay: the broker refused ${rows.length - confirmed.length} message(s); trying again shortly`);
    });
  }
  const relay = repeat(relayOnce, RELAY_EVERY_MS);
  // #endregion relay

  const app = express();
  app.use(express.json());

  // #region post
  app.post('/jobs', async (req: Request, res: Response) => {
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'send a JSON object with Content-Type: application/json');
    }
    const id = randomUUID();
    try {
      await inTransaction(pool, async (client) => {
        await client.query('INSERT INTO jobs (id, payload) VALUES ($1, $2)', [id, body]);
        await client.query('INSERT INTO outbox (message_id, payload) VALUES ($1, $2)', [id, body]);
      });
    } catch (err) {
      throw new HttpError(503, `the job was not stored: ${(err as Error).message}`, 5);
    }
    res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' });
  });
  // #endregion post

  app.get('/jobs/:id', async (req, res) => {
    const { id } = req.params;
    const { rows } = UUID.test(id) ? await pool.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [id]) : { rows: [] };
    if (!rows[0]) throw new HttpError(404, 'no such job');
    res.json({ id, status: rows[0].status });
  });

  app.use((err: Error & { status?: number }, req: Request, res: Response, _next: NextFunction) => {
    const status = err.status ?? 500;
    if (err instanceof HttpError && err.retryAfter) res.set('Retry-After', String(err.retryAfter));
    if (status >= 500) console.error(`${req.method} ${req.path}: ${status} ${err.message}`);
    res.status(status).json({ error: err.message });
  });

  return {
    app,
    async close() {
      await relay.stop();
      await pool.end();
      await channel.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

// On its own: DATABASE_URL=postgres://… npx tsx solutions/09-express-api/02-outbox.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -d '{"task":"resize"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@localhost/postgres',
    queue: 'jobs',
  });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on http://localhost:${process.env.PORT ?? 3000}`));
  process.once('SIGINT', () => server.close(() => void close()));
}

// Exercise 9.3: an Idempotency-Key, so that a client's retry never makes a second job
// Text: chapters/09-express-api/README.md   Check: npm run check 9.3   Hint: npm run hint 9.3
//
// createApp({ amqpUrl, databaseUrl, queue }) works as in exercise 9.2 (the same tables, plus the
// job's idempotency key; the relay comes from the chapter's outbox.ts) and resolves with { app, close }:
//   1. POST /jobs needs an Idempotency-Key header (the client makes one per job, a UUID say, and
//      sends it again with every retry of that job; its whole value is the key): without one, or
//      an empty one, answer 400 and store nothing,
//   2. the first request with a key stores the job (with its key) and its outbox row in one
//      transaction, and answers 202 with Location: /jobs/<id>, Retry-After: 1 and { id, status },
//   3. every later request with the same key and the same body (the same JSON value, whatever
//      the order of its keys), even one sent at the very same moment, stores nothing and gets the
//      same 202, with the first request's job id: the database decides which request was first
//      (a UNIQUE constraint on idempotency_key, and INSERT … ON CONFLICT DO NOTHING),
//   4. the same key with a different body answers 422 and stores nothing,
//   5. the keys live in the database: a retry that reaches another process, or this one after a
//      restart, gets the same answer,
//   6. when the transaction fails, answer 503 with Retry-After,
//   7. every error answer is JSON, { error: "<what went wrong>" }, with a Retry-After header only
//      on a 503,
//   8. listen for 'error' on the pool, the connection and the channel: a lost connection must not
//      end the process,
//   9. close() stops the relay, then closes the pool, the channel and the connection.
import amqp from 'amqplib';
import express, { type NextFunction, type Request, type Response } from 'express';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { inTransaction, startRelay } from '../../chapters/09-express-api/outbox.js';

export interface AppDeps {
  amqpUrl: string;
  databaseUrl: string;
  queue: string;
}

export interface ServedApp {
  app: express.Express;
  close(): Promise<void>;
}

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS jobs (
    id              uuid PRIMARY KEY,
    idempotency_key text NOT NULL, -- TODO 1: one job per key, enforced by the database
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'queued',
    created_at      timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial PRIMARY KEY,
    message_id uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
  );
  CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (id) WHERE sent_at IS NULL;`;

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

export async function createApp({ amqpUrl, databaseUrl, queue }: AppDeps): Promise<ServedApp> {
  const pool = new pg.Pool({ connectionString: databaseUrl });
  pool.on('error', (err) => console.error(`idle database connection: ${err.message}`));
  await pool.query(SCHEMA);

  const connection = await amqp.connect(amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const relay = startRelay({ pool, channel, queue });

  const app = express();
  app.use(express.json());

  app.post('/jobs', async (req: Request, res: Response) => {
    const key = req.get('Idempotency-Key'); // the whole value, quotes and all (the IETF draft writes it quoted)
    if (!key) throw new HttpError(400, 'send an Idempotency-Key header: one value per job, the same on every retry');
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'send a JSON object with Content-Type: application/json');
    }
    // TODO 2: in one transaction (inTransaction(pool, async (client) => { … })), with id = randomUUID():
    //         INSERT INTO jobs (id, idempotency_key, payload) VALUES ($1, $2, $3)
    //         ON CONFLICT (idempotency_key) DO NOTHING. result.rowCount 1: this request is the first,
    //         so also INSERT INTO outbox (message_id, payload) VALUES ($1, $2). rowCount 0: another request
    //         came first: SELECT id, payload = $2::jsonb AS same_body FROM jobs WHERE idempotency_key = $1
    //         (with JSON.stringify(body)) and use that job's id.
    // TODO 3: the transaction threw? throw new HttpError(503, …, 5). Another body under this key?
    //         throw new HttpError(422, …). Otherwise answer
    //         res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' }).
    throw new HttpError(501, 'TODO: POST /jobs in exercises/09-express-api/03-idempotency-key.ts');
  });

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

// On its own: DATABASE_URL=postgres://… npx tsx exercises/09-express-api/03-idempotency-key.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -H 'Idempotency-Key: 7f1c…' -d '{"task":"resize"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@localhost/postgres',
    queue: 'jobs',
  });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on http://localhost:${process.env.PORT ?? 3000}`));
  process.once('SIGINT', () => server.close(() => void close()));
}

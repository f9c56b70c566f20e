// Exercise 9.1: accept jobs over HTTP, and answer 202 only once the broker has them
// Text: chapters/09-express-api/README.md   Check: npm run check 9.1   Hint: npm run hint 9.1
//
// createApp({ amqpUrl, queue }) opens what the app needs and resolves with { app, close }. The
// checker serves `app` on a port of its own (the block at the bottom does it when run alone):
//   1. open one connection and one confirm channel for the whole process, in createApp() and
//      never per request, with an 'error' listener on each, and declare `queue` as a durable
//      quorum queue,
//   2. POST /jobs with a JSON object: publish it to `queue` as a persistent JSON message whose
//      messageId is a fresh job id, wait for the broker's confirm, and only then answer 202 with
//      Location: /jobs/<id>, Retry-After: 1 and the body { id, status: "queued" },
//   3. answer 503 with a Retry-After header, never 202, when the job is not safe: the broker
//      refused the message (a nack), or the channel is closed,
//   4. while the connection is blocked (the broker's 'blocked' event, until 'unblocked'), answer
//      503 with Retry-After at once, without publishing,
//   5. a body that is not a JSON object (malformed JSON, another Content-Type, no body) gets
//      400, and nothing is published,
//   6. GET /jobs/:id answers 200 with { id, status: "queued" } for a job this process accepted,
//      and 404 for any other id,
//   7. every error answer is JSON, { error: "<what went wrong>" } (the error handler at the end
//      sends what the handlers throw), with a Retry-After header only on a 503,
//   8. close() closes the channel, then the connection.
import amqp from 'amqplib';
import express, { type NextFunction, type Request, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface AppDeps {
  amqpUrl: string;
  queue: string;
}

export interface ServedApp {
  app: express.Express;
  close(): Promise<void>;
}

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

export async function createApp({ amqpUrl, queue }: AppDeps): Promise<ServedApp> {
  // One connection and one channel for every request this process will ever serve.
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  let blocked = false; // a memory or disk alarm: the broker has stopped reading what we publish
  connection.on('blocked', (reason) => {
    blocked = true;
    console.error(`connection blocked by the broker: ${reason}`);
  });
  connection.on('unblocked', () => (blocked = false));
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

  const jobs = new Map<string, { status: string }>(); // this process's memory: exercise 9.2 keeps them in Postgres

  /** Resolves once the broker has the message, rejects when it refuses it or the channel closes. */
  function publishConfirmed(body: unknown, messageId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      // On a closed channel sendToQueue throws, which rejects this promise too.
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), { persistent: true, messageId, contentType: 'application/json' }, (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }

  const app = express();
  app.use(express.json()); // without it, req.body is undefined (Express 5)

  // #region post
  app.post('/jobs', async (req: Request, res: Response) => {
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'send a JSON object with Content-Type: application/json');
    }
    if (blocked) throw new HttpError(503, 'the broker is not taking messages right now', 5);
    const id = randomUUID();
    try {
      await publishConfirmed(body, id);
    } catch (err) {
      // Nacked, or the channel is gone: the job is not safe, so do not say it is.
      throw new HttpError(503, `the job was not accepted: ${(err as Error).message}`, 5);
    }
    jobs.set(id, { status: 'queued' });
    res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' });
  });
  // #endregion post

  app.get('/jobs/:id', (req, res) => {
    const job = jobs.get(req.params.id);
    if (!job) throw new HttpError(404, 'no such job');
    res.json({ id: req.params.id, ...job });
  });

  // #region errors
  // Express 5 sends what an async handler throws (or rejects with) here; Express 4 left the request hanging.
  app.use((err: Error & { status?: number }, req: Request, res: Response, _next: NextFunction) => {
    const status = err.status ?? 500; // express.json() marks malformed JSON with status 400
    if (err instanceof HttpError && err.retryAfter) res.set('Retry-After', String(err.retryAfter));
    if (status >= 500) console.error(`${req.method} ${req.path}: ${status} ${err.message}`);
    res.status(status).json({ error: err.message });
  });
  // #endregion errors

  return {
    app,
    async close() {
      await channel.close().catch(() => undefined); // already closed when the connection died
      await connection.close().catch(() => undefined);
    },
  };
}

// On its own: npx tsx solutions/09-express-api/01-accept-jobs.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -d '{"task":"resize"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', queue: 'jobs' });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on http://localhost:${process.env.PORT ?? 3000}`));
  process.once('SIGINT', () => server.close(() => void close()));
}

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
  // TODO 1: amqp.connect(amqpUrl) once, here; connection.on('error', …) that logs; a confirm channel
  //         (connection.createConfirmChannel()) with its own 'error' listener; then
  //         channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } }).
  // TODO 2: let blocked = false; set it on connection.on('blocked', …), clear it on 'unblocked'.
  throw new Error('TODO: open the connection in exercises/09-express-api/01-accept-jobs.ts');

  const jobs = new Map<string, { status: string }>(); // this process's memory: exercise 9.2 keeps them in Postgres

  /** Resolves once the broker has the message, rejects when it refuses it or the channel closes. */
  function publishConfirmed(body: unknown, messageId: string): Promise<void> {
    // TODO 3: return a promise around channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)),
    //         { persistent: true, messageId, contentType: 'application/json' }, callback): the callback
    //         gets an error when the broker nacks (or the channel closes), nothing when it confirms.
    return Promise.reject(new Error('TODO: publishConfirmed()'));
  }

  const app = express();
  // TODO 4: parse JSON bodies (express.json()): without a parser, req.body is undefined in Express 5.

  app.post('/jobs', async (req: Request, res: Response) => {
    // TODO 5: not a JSON object (typeof, null, Array.isArray)? throw new HttpError(400, …).
    //         Connection blocked? throw new HttpError(503, …, 5) without publishing.
    // TODO 6: const id = randomUUID(); await publishConfirmed(req.body, id). If it rejects, throw
    //         new HttpError(503, …, 5): the job is not safe, so never answer 202 for it.
    // TODO 7: remember the job (jobs.set(id, { status: 'queued' })), then answer
    //         res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' }).
    throw new HttpError(501, 'TODO: POST /jobs');
  });

  app.get('/jobs/:id', (req, res) => {
    // TODO 8: the job from `jobs` as 200 { id, ...job }, or throw new HttpError(404, 'no such job').
    throw new HttpError(501, 'TODO: GET /jobs/:id');
  });

  // Express 5 sends what an async handler throws (or rejects with) here; Express 4 left the request hanging.
  app.use((err: Error & { status?: number }, req: Request, res: Response, _next: NextFunction) => {
    const status = err.status ?? 500; // express.json() marks malformed JSON with status 400
    if (err instanceof HttpError && err.retryAfter) res.set('Retry-After', String(err.retryAfter));
    if (status >= 500) console.error(`${req.method} ${req.path}: ${status} ${err.message}`);
    res.status(status).json({ error: err.message });
  });

  return {
    app,
    async close() {
      // TODO 9: close the channel, then the connection (either may be closed already: catch and ignore that).
    },
  };
}

// On its own: npx tsx exercises/09-express-api/01-accept-jobs.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -d '{"task":"resize"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', queue: 'jobs' });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on http://localhost:${process.env.PORT ?? 3000}`));
  process.once('SIGINT', () => server.close(() => void close()));
}

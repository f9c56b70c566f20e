// Exercise 9.5: one connection for every request, and another one to consume
// Text: chapters/09-express-api/README.md   Check: npm run check 9.5   Hint: npm run hint 9.5
//
// createApp({ amqpUrl, queue, resultsQueue }) resolves with { app, close }, where `app` is an
// Express 5 app in front of a queue of jobs:
//   1. createApp() opens two long-lived connections, one that only publishes and one that only
//      consumes, each with an 'error' listener: never a connection per request, and never one
//      connection for both (the broker slows down a connection that publishes, and its acks with it),
//   2. POST /jobs (a JSON object) publishes the body to `queue` (a durable quorum queue) as a
//      persistent JSON message whose messageId is a fresh job id, on a confirm channel of the
//      publishing connection, and answers 202 with Location: /jobs/<id> and {"id", "status":
//      "queued"} once the broker confirmed it; when the broker refuses it (a nack), 503 with a
//      Retry-After header and a JSON { error },
//   3. all requests share the same few channels of the publishing connection (at most 4, however
//      many requests arrive at once): never a channel per request,
//   4. the consuming connection consumes `resultsQueue` (a durable quorum queue of JSON results
//      {"id", "status"}) with manual acks and a prefetch limit, acks every result (also one for
//      an id it does not know), and skips the null amqplib passes when the broker cancels the
//      consumer; GET /jobs/:id answers 200 with {"id", "status"}: "queued" until the job's result
//      arrived, then the result's status, and 404 with a JSON { error } for an id this app never
//      accepted,
//   5. close() closes both connections.
import amqp, { type ConfirmChannel } from 'amqplib';
import express, { type Express } from 'express';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface JobsDeps {
  amqpUrl: string;
  /** Where the jobs go. */
  queue: string;
  /** Where the workers report how each job went. */
  resultsQueue: string;
}

export interface JobsApp {
  app: Express;
  close(): Promise<void>;
}

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/** Publishes one persistent JSON message; resolves once the broker confirmed it, rejects on a nack. */
function publishConfirmed(channel: ConfirmChannel, queue: string, body: unknown, messageId: string): Promise<void> {
  // TODO 1: a promise around channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)),
  //         { persistent: true, messageId, contentType: 'application/json' }, (err) => …):
  //         reject when err is set (a nack), resolve otherwise.
  return Promise.reject(new Error('TODO: publishConfirmed() in exercises/09-express-api/05-one-connection.ts'));
}

export async function createApp({ amqpUrl, queue, resultsQueue }: JobsDeps): Promise<JobsApp> {
  // TODO 2: open two connections here, once, each with an 'error' listener: `publisher` to publish,
  //         `consumer` to consume (name them with { clientProperties: { connection_name: '…' } } to
  //         tell them apart in the management UI). close() closes both.
  const close = async () => {};

  // TODO 3: on the publishing connection, one confirm channel for every request; declare `queue`
  //         on it (QUORUM).
  const statuses = new Map<string, string>(); // job id -> its status (in a real service: a table)
  // TODO 4: on the consuming connection, a channel: declare resultsQueue (QUORUM), set a prefetch,
  //         and consume it with { noAck: false }. Skip the null of a cancel; for each result
  //         {"id", "status"} whose id is in `statuses`, record its status; ack every result.

  const app = express();
  app.use(express.json());
  app.post('/jobs', async (req, res) => {
    const id = randomUUID();
    // TODO 5: await publishConfirmed(channel, queue, req.body ?? {}, id); when it rejects, answer 503
    //         with a Retry-After header. Once confirmed: statuses.set(id, 'queued') and
    //         res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' }).
    res.status(501).json({ error: 'TODO: POST /jobs in exercises/09-express-api/05-one-connection.ts' });
  });
  app.get('/jobs/:id', (req, res) => {
    const status = statuses.get(req.params.id);
    if (status === undefined) res.status(404).json({ error: 'no such job' });
    else res.json({ id: req.params.id, status });
  });
  return { app, close };
}

// On its own: npx tsx exercises/09-express-api/05-one-connection.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -d '{"resize":"cat.jpg"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', queue: 'jobs', resultsQueue: 'job-results' });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log('POST http://localhost:3000/jobs (Ctrl-C to stop)'));
  process.once('SIGINT', () => server.close(() => void close()));
}

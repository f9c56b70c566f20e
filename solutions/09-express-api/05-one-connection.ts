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
  return new Promise((resolve, reject) => {
    // On a closed channel sendToQueue() throws, which rejects this promise too.
    channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), { persistent: true, messageId, contentType: 'application/json' }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

export async function createApp({ amqpUrl, queue, resultsQueue }: JobsDeps): Promise<JobsApp> {
  // Two connections, named so that the management UI tells them apart.
  const publisher = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'jobs-api publisher' } });
  publisher.on('error', (err) => console.error(`publisher connection error: ${err.message}`));
  const consumer = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'jobs-api consumer' } });
  consumer.on('error', (err) => console.error(`consumer connection error: ${err.message}`));
  const close = async () => {
    await consumer.close();
    await publisher.close();
  };
  // One confirm channel carries every request: many publishes in flight at once, each confirmed on its own.
  const channel = await publisher.createConfirmChannel();
  await channel.assertQueue(queue, QUORUM);

  const statuses = new Map<string, string>(); // job id -> its status (in a real service: a table)
  const results = await consumer.createChannel();
  await results.assertQueue(resultsQueue, QUORUM);
  await results.prefetch(50);
  await results.consume(
    resultsQueue,
    (msg) => {
      if (msg === null) return;
      try {
        const { id, status } = JSON.parse(msg.content.toString()) as { id: string; status: unknown };
        if (statuses.has(id)) statuses.set(id, String(status));
      } catch {
        console.error('a result that is not JSON: dropped');
      }
      results.ack(msg); // recorded, or not ours: either way, done with it
    },
    { noAck: false },
  );

  const app = express();
  app.use(express.json());
  app.post('/jobs', async (req, res) => {
    const id = randomUUID();
    try {
      await publishConfirmed(channel, queue, req.body ?? {}, id);
    } catch (err) {
      res.set('Retry-After', '5').status(503).json({ error: `the job was not accepted: ${(err as Error).message}` });
      return;
    }
    statuses.set(id, 'queued');
    res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' });
  });
  app.get('/jobs/:id', (req, res) => {
    const status = statuses.get(req.params.id);
    if (status === undefined) res.status(404).json({ error: 'no such job' });
    else res.json({ id: req.params.id, status });
  });
  return { app, close };
}

// On its own: npx tsx solutions/09-express-api/05-one-connection.ts, then
//   curl -i -X POST localhost:3000/jobs -H 'content-type: application/json' -d '{"resize":"cat.jpg"}'
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', queue: 'jobs', resultsQueue: 'job-results' });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log('POST http://localhost:3000/jobs (Ctrl-C to stop)'));
  process.once('SIGINT', () => server.close(() => void close()));
}

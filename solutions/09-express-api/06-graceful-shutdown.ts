// Exercise 9.6: shut down under load without losing a job or doing one twice
// Text: chapters/09-express-api/README.md   Check: npm run check 9.6   Hint: npm run hint 9.6
//
// start({ amqpUrl, queue, port, handle }) runs a jobs service, an HTTP API and a worker in one
// process, and resolves with { server, shutdown } once `server` listens on `port` (0: any free one):
//   1. POST /jobs (a JSON object) publishes the body to `queue` (a durable quorum queue) as a
//      persistent JSON message whose messageId is a fresh job id, on a confirm channel of a
//      connection that only publishes, and answers 202 with Location: /jobs/<id> and {"id",
//      "status": "queued"} once the broker confirmed it; 503 with a Retry-After header and a JSON
//      { error } when it could not (a nack, or the connection is lost),
//   2. a second connection consumes `queue` with manual acks and prefetch 10, and calls
//      handle(id, job) for each message (its messageId, its parsed body), several at once; it acks
//      the message when handle() resolves, rejects it with requeue when handle() rejects, and
//      skips the null amqplib passes when the broker cancels the consumer (the queue deleted),
//   3. listen for 'error' on both connections,
//   4. shutdown() (what a SIGTERM handler calls) stops in this order, and resolves when all is done:
//      a. stops accepting: server.close() (it also closes the idle keep-alive connections); each
//         request already in progress gets its answer, with a "Connection: close" header so that
//         its connection ends too,
//      b. cancels the consumer and waits for the broker's cancel-ok (await channel.cancel(tag)),
//      c. waits until every handle() already running has settled and its message is acked (or
//         rejected with requeue),
//      d. waits until every request in progress has had its answer (each after its confirm) and
//         the server has closed, so the port is free,
//      e. closes the channels, then the connections.
//   Nothing may be lost (a job answered 202 is done, or still in the queue for the next instance)
//   nor done twice (a job whose handle() resolved is acked before its channel closes).
import amqp, { type ConfirmChannel } from 'amqplib';
import express from 'express';
import type { Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface ServiceDeps {
  amqpUrl: string;
  queue: string;
  /** The port to listen on; 0 for any free port. */
  port: number;
  /** The work, for the job with this id. */
  handle: (id: string, job: unknown) => Promise<void>;
}

export interface Service {
  server: Server;
  shutdown(): Promise<void>;
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

export async function start({ amqpUrl, queue, port, handle }: ServiceDeps): Promise<Service> {
  const publisher = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'jobs publisher' } });
  publisher.on('error', (err) => console.error(`publisher connection error: ${err.message}`));
  const consumer = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'jobs worker' } });
  consumer.on('error', (err) => console.error(`worker connection error: ${err.message}`));
  const out = await publisher.createConfirmChannel();
  await out.assertQueue(queue, QUORUM);

  // The worker: every message it holds is in `working` until it is answered.
  const work = await consumer.createChannel();
  await work.assertQueue(queue, QUORUM);
  await work.prefetch(10);
  const working = new Set<Promise<void>>();
  const { consumerTag } = await work.consume(
    queue,
    (msg) => {
      if (msg === null) return; // the broker cancelled the consumer
      const done: Promise<void> = Promise.resolve()
        .then(() => handle(msg.properties.messageId, JSON.parse(msg.content.toString())))
        .then(
          () => work.ack(msg),
          (err) => {
            console.error(`job failed, requeued: ${err}`);
            work.reject(msg, true);
          },
        )
        .finally(() => working.delete(done));
      working.add(done);
    },
    { noAck: false },
  );

  // The API. Once shutdown() has begun, each answer ends its connection: it waits for the last one.
  let stopping = false;
  const app = express();
  app.use(express.json());
  app.post('/jobs', async (req, res) => {
    const id = randomUUID();
    let refused: Error | undefined;
    await publishConfirmed(out, queue, req.body ?? {}, id).catch((err: Error) => (refused = err));
    if (stopping) res.set('Connection', 'close');
    if (refused) res.set('Retry-After', '5').status(503).json({ error: `the job was not accepted: ${refused.message}` });
    else res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' });
  });

  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(port, (err?: Error) => (err ? reject(err) : resolve(s)));
  });

  return {
    server,
    async shutdown() {
      // a. No new connections; the idle keep-alive ones are closed, the others end with their answer.
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // b. No new deliveries. Once cancel() resolves, every message sent before the cancel has reached the callback.
      await work.cancel(consumerTag);
      // c. The jobs in progress finish, and each is acked (or requeued) on the still-open channel.
      await Promise.all(working);
      // d. The requests in progress get their confirm, then their answer, which ends their connection:
      //    the server's close callback comes after the last one, and the port is free.
      await closed;
      // e. Channels first (a channel's close-ok comes after the broker processed its acks), then the connections.
      await work.close();
      await out.close();
      await consumer.close();
      await publisher.close();
    },
  };
}

// On its own: npx tsx solutions/09-express-api/06-graceful-shutdown.ts, then
// curl -X POST -H 'content-type: application/json' -d '{"email":"ada@example.com"}' localhost:3000/jobs
// Ctrl-C (or SIGTERM, as a container runtime sends) shuts it down gracefully.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const service = await start({
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
    queue: 'jobs',
    port: Number(process.env.PORT ?? 3000),
    handle: async (id) => {
      await new Promise((resolve) => setTimeout(resolve, 500)); // the work takes a while
      console.log(`done: ${id}`);
    },
  });
  console.log('POST http://localhost:3000/jobs (Ctrl-C to shut down gracefully)');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log('Shutting down: finishing the requests and jobs in progress...');
      void service.shutdown().then(() => console.log('Done, nothing lost.'));
    });
  }
}

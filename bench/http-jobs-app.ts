// The app under load for bench/http-jobs.ts, in a process of its own (so that the load generator
// does not share its event loop): one of the POST /jobs designs, served on a free port of
// 127.0.0.1. It tells its parent the port over IPC and stops (close()) on SIGTERM.
//   confirmed      solutions/09-express-api/05-one-connection.ts: one publishing connection, one
//                  confirm channel, 202 once the broker confirmed the job
//   outbox         solutions/09-express-api/02-outbox.ts: the job row and its outbox row in one
//                  Postgres transaction, 202 after the COMMIT; the relay publishes with confirms
//   per-request    the first naive design: a connection (and a confirm channel) per request
//   no-confirm     the second naive design: one connection, a plain channel, 202 as soon as
//                  sendToQueue() returned
// Environment: BENCH_DESIGN, BENCH_AMQP_URL, BENCH_DATABASE_URL (outbox), BENCH_QUEUE.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import express, { type Express } from 'express';

export type Design = 'confirmed' | 'outbox' | 'per-request' | 'no-confirm';

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/** A connection per request: the anti-pattern, with confirms, so that only the connections differ. */
async function perRequest(amqpUrl: string, queue: string): Promise<{ app: Express; close(): Promise<void> }> {
  const setup = await amqp.connect(amqpUrl);
  await (await setup.createChannel()).assertQueue(queue, QUORUM);
  await setup.close();
  const app = express();
  app.use(express.json());
  app.post('/jobs', async (req, res) => {
    const id = randomUUID();
    try {
      const connection = await amqp.connect(amqpUrl);
      connection.on('error', () => undefined);
      try {
        const channel = await connection.createConfirmChannel();
        channel.sendToQueue(queue, Buffer.from(JSON.stringify(req.body ?? {})), { persistent: true, messageId: id, contentType: 'application/json' });
        await channel.waitForConfirms();
      } finally {
        await connection.close();
      }
    } catch (err) {
      res.set('Retry-After', '5').status(503).json({ error: (err as Error).message });
      return;
    }
    res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' });
  });
  return { app, close: async () => undefined };
}

/** No confirm: 202 as soon as the message is in amqplib's buffer. */
async function noConfirm(amqpUrl: string, queue: string): Promise<{ app: Express; close(): Promise<void> }> {
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, QUORUM);
  const app = express();
  app.use(express.json());
  app.post('/jobs', (req, res) => {
    const id = randomUUID();
    channel.sendToQueue(queue, Buffer.from(JSON.stringify(req.body ?? {})), { persistent: true, messageId: id, contentType: 'application/json' });
    res.status(202).location(`/jobs/${id}`).json({ id, status: 'queued' });
  });
  return { app, close: () => connection.close() };
}

async function build(design: Design, amqpUrl: string, queue: string, databaseUrl?: string): Promise<{ app: Express; close(): Promise<void> }> {
  if (design === 'confirmed') {
    const { createApp } = await import('../solutions/09-express-api/05-one-connection.js');
    return createApp({ amqpUrl, queue, resultsQueue: `${queue}-results` });
  }
  if (design === 'outbox') {
    const { createApp } = await import('../solutions/09-express-api/02-outbox.js');
    const served = await createApp({ amqpUrl, databaseUrl: databaseUrl!, queue });
    return { app: served.app as Express, close: () => served.close() };
  }
  if (design === 'per-request') return perRequest(amqpUrl, queue);
  return noConfirm(amqpUrl, queue);
}

const design = process.env.BENCH_DESIGN as Design;
const served = await build(design, process.env.BENCH_AMQP_URL!, process.env.BENCH_QUEUE ?? 'jobs', process.env.BENCH_DATABASE_URL);
const server = http.createServer(served.app);
server.keepAliveTimeout = 30_000;
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
process.send!({ port: (server.address() as AddressInfo).port });
process.on('disconnect', () => process.exit(1));
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close();
  void served.close().finally(() => process.exit(0));
});

// Exercise 9.4: RPC over HTTP, with a time-out and a map of waiting requests that never leaks
// Text: chapters/09-express-api/README.md   Check: npm run check 9.4   Hint: npm run hint 9.4
//
// createApp({ amqpUrl, queue, timeoutMs }) opens one connection and one channel for all requests,
// and resolves with { app, pendingCount, close }. `app` is an Express 5 app whose route
// GET /prices/:sku asks the pricing service, which consumes `queue`, for the price of :sku:
//   1. before createApp() returns, it consumes the pseudo-queue "amq.rabbitmq.reply-to" on that
//      channel with { noAck: true }, and it listens for 'error' on the connection,
//   2. each request publishes {"sku": …} (JSON) to `queue` on that same channel, with a fresh
//      correlationId, replyTo "amq.rabbitmq.reply-to" and an expiration of timeoutMs (a request
//      nobody picked up in time is dropped), and answers 200 with the reply's JSON body once the
//      reply with its correlationId arrives, whatever order replies come back in,
//   3. when no reply came within timeoutMs (shorter than any HTTP client waits), it answers 504 with
//      a JSON { error }; a reply that arrives later finds nobody waiting and is dropped: it never
//      answers another request,
//   4. a request leaves the map of waiting requests, and its timer is cleared, whichever way it
//      ends: pendingCount() returns that map's size, 0 when nothing waits, however many timed out,
//   5. once the connection is lost, a new request answers 503 with a Retry-After header and a
//      JSON { error } at once (the channel refuses to publish) instead of waiting for its time-out,
//   6. close() answers the requests still waiting with 503 (a JSON { error }), and closes the
//      connection.
import amqp from 'amqplib';
import express, { type Express } from 'express';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

export interface PriceDeps {
  amqpUrl: string;
  /** The queue the pricing service consumes. */
  queue: string;
  /** How long a request waits for its reply before it answers 504 (default 2000 ms). */
  timeoutMs?: number;
}

export interface PriceApp {
  app: Express;
  pendingCount(): number;
  close(): Promise<void>;
}

const REPLY_TO = 'amq.rabbitmq.reply-to';

/** Why a request got no reply, and the HTTP status that says so. */
class NoReply extends Error {
  constructor(readonly status: 503 | 504, message: string) {
    super(message);
  }
}

interface Waiting {
  resolve: (reply: Buffer) => void;
  reject: (err: NoReply) => void;
  timer: NodeJS.Timeout;
}

export async function createApp({ amqpUrl, queue, timeoutMs = 2000 }: PriceDeps): Promise<PriceApp> {
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  // A plain channel: the reply is the confirmation, and the time-out covers every way a request can get lost.
  const channel = await connection.createChannel();
  const pending = new Map<string, Waiting>(); // correlationId -> the HTTP request waiting for it

  // Direct Reply-to: the replies come straight to this channel, with no queue to declare.
  await channel.consume(
    REPLY_TO,
    (msg) => {
      if (msg === null) return;
      const id = msg.properties.correlationId;
      const waiting = pending.get(id);
      if (!waiting) return; // too late (that request had its 504), or not ours: drop it
      pending.delete(id);
      clearTimeout(waiting.timer);
      waiting.resolve(msg.content);
    },
    { noAck: true },
  );

  function ask(sku: string): Promise<Buffer> {
    const correlationId = randomUUID();
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(correlationId); // from now on its reply matches nothing
        reject(new NoReply(504, `the pricing service did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(correlationId, { resolve, reject, timer });
      try {
        channel.sendToQueue(queue, Buffer.from(JSON.stringify({ sku })), {
          correlationId,
          replyTo: REPLY_TO,
          expiration: String(timeoutMs), // nobody waits for the answer after that: let the broker drop the request
          contentType: 'application/json',
        });
      } catch (err) {
        clearTimeout(timer);
        pending.delete(correlationId);
        reject(new NoReply(503, `cannot reach the pricing service: ${(err as Error).message}`)); // the channel is closed
      }
    });
  }

  const app = express();
  app.get('/prices/:sku', async (req, res) => {
    try {
      res.type('application/json').send(await ask(req.params.sku));
    } catch (err) {
      const { status, message } = err as NoReply;
      res.set('Retry-After', '5').status(status).json({ error: message });
    }
  });

  return {
    app,
    pendingCount: () => pending.size,
    async close() {
      for (const waiting of pending.values()) {
        clearTimeout(waiting.timer);
        waiting.reject(new NoReply(503, 'the service is shutting down'));
      }
      pending.clear();
      await connection.close();
    },
  };
}

// On its own: npx tsx solutions/09-express-api/04-rpc-over-http.ts, then curl localhost:3000/prices/apple
// (a pricing service must consume "prices"; without one, every request ends in a 504).
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { app, close } = await createApp({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', queue: 'prices', timeoutMs: 2000 });
  const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log('GET http://localhost:3000/prices/:sku (Ctrl-C to stop)'));
  process.once('SIGINT', () => server.close(() => void close()));
}

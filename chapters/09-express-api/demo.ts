// Chapter 9's live demo: a small Express 5 API in front of a quorum queue. It answers 202 only
// once the broker confirmed the job, with the Location of a status resource; 400 for a body
// that is not JSON; and 503 with Retry-After while the broker refuses messages (a max-length
// policy with overflow reject-publish, set and lifted through the management API).
import amqp from 'amqplib';
import express, { type NextFunction, type Request, type Response } from 'express';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

type Say = (line: string) => void;
interface Management {
  url: string;
  user: string;
  password: string;
  vhost: string;
}
const QUEUE = 'jobs';

// #region error
/** An error that carries the HTTP status to answer with (the error handler sends it). */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}
// #endregion

export async function createJobsApi(url: string) {
  // #region connect
  // Once per process, at start-up: never in a request handler.
  const connection = await amqp.connect(url);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`));
  let blocked = false; // the broker's memory or disk alarm: it stopped reading our publishes
  connection.on('blocked', () => (blocked = true));
  connection.on('unblocked', () => (blocked = false));
  const channel = await connection.createConfirmChannel();
  channel.on('error', (err) => console.error(`channel error: ${err.message}`));
  await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  // #endregion

  // #region publish
  // Resolves when the broker confirms this message, rejects on a nack or a closed channel.
  const publishConfirmed = (job: unknown, messageId: string) =>
    new Promise<void>((resolve, reject) => {
      const content = Buffer.from(JSON.stringify(job));
      channel.sendToQueue(QUEUE, content, { persistent: true, messageId, contentType: 'application/json' }, (err) => (err ? reject(err) : resolve()));
    });
  // #endregion

  const statuses = new Map<string, string>(); // a real service keeps them in its database
  const app = express();
  app.use(express.json()); // Express 5: without a parser, req.body is undefined

  // #region route
  app.post('/jobs', async (req: Request, res: Response) => {
    if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body)) {
      throw new HttpError(400, 'send a JSON object');
    }
    if (blocked) throw new HttpError(503, 'the broker is not taking messages', 5);
    const id = randomUUID();
    try {
      await publishConfirmed(req.body, id); // the job is safe only after this
    } catch (err) {
      throw new HttpError(503, `not accepted: ${(err as Error).message}`, 5);
    }
    statuses.set(id, 'queued');
    res.status(202).location(`/jobs/${id}`).set('Retry-After', '1').json({ id, status: 'queued' });
  });

  app.get('/jobs/:id', (req, res) => {
    const status = statuses.get(req.params.id);
    if (!status) throw new HttpError(404, 'no such job');
    res.json({ id: req.params.id, status });
  });
  // #endregion

  // #region errors
  // Express 5 routes what an async handler throws (or rejects with) to the error handler.
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof HttpError && err.retryAfter) res.set('Retry-After', String(err.retryAfter));
    res.status(err.status ?? 500).json({ error: err.message }); // express.json() gives malformed JSON status 400
  });
  // #endregion

  return {
    app,
    async close() {
      await channel.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

export async function demo(url: string, say: Say, management: Management): Promise<void> {
  const api = await createJobsApi(url);
  const server = api.app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const show = async (method: string, path: string, body?: string, contentType = 'application/json') => {
    const res = await fetch(base + path, { method, body, headers: body === undefined ? {} : { 'content-type': contentType } });
    const headers = ['location', 'retry-after'].filter((h) => res.headers.has(h)).map((h) => `${h === 'location' ? 'Location' : 'Retry-After'}: ${res.headers.get(h)}`);
    say(`${method} ${path}${body ? ` ${body}` : ''} → ${res.status} ${[...headers, await res.text()].join(', ')}`);
    return res;
  };
  try {
    say(`The API runs on ${base} and publishes with confirms to the quorum queue "${QUEUE}".`);
    const first = await show('POST', '/jobs', '{"task":"resize","image":"cat.jpg"}');
    await show('POST', '/jobs', '{"task":"resize","image":"dog.jpg"}');
    await show('GET', first.headers.get('location')!);
    await show('POST', '/jobs', '{"task": "resize",', 'application/json');
    await show('POST', '/jobs', 'resize cat.jpg', 'text/plain');

    say(`Now a policy limits "${QUEUE}" to 1 message, overflow reject-publish. It holds 2: the broker refuses (nacks) the next one.`);
    await policy(management, 'PUT');
    await waitUntilRefused(url);
    await show('POST', '/jobs', '{"task":"resize","image":"bird.jpg"}');

    say(`The queue is emptied (as if workers had taken the jobs), then the policy deleted: jobs are accepted again.`);
    await drain(url);
    await policy(management, 'DELETE');
    await show('POST', '/jobs', '{"task":"resize","image":"fish.jpg"}');
    say(`"${QUEUE}" keeps that last job, persistent, with the job's id as messageId: look at it in the management UI (Get messages).`);
  } finally {
    await policy(management, 'DELETE').catch(() => undefined);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await api.close();
  }
}

/** Sets or deletes the demo's max-length policy through the management API. */
async function policy(m: Management, method: 'PUT' | 'DELETE'): Promise<void> {
  const res = await fetch(`${m.url.replace(/\/+$/, '')}/api/policies/${encodeURIComponent(m.vhost)}/jobs-limit`, {
    method,
    headers: { authorization: `Basic ${Buffer.from(`${m.user}:${m.password}`).toString('base64')}`, 'content-type': 'application/json' },
    body: method === 'PUT' ? JSON.stringify({ pattern: `^${QUEUE}$`, 'apply-to': 'queues', definition: { 'max-length': 1, overflow: 'reject-publish' } }) : undefined,
  });
  if (!res.ok && res.status !== 404) throw new Error(`${method} policy: ${res.status} ${await res.text()}`);
}

/** A quorum queue applies a policy a moment later: publish probes on a channel of our own until one is refused. */
async function waitUntilRefused(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      const probe = await connection.createConfirmChannel();
      probe.sendToQueue(QUEUE, Buffer.from('{"task":"probe"}'), { persistent: true });
      const refused = await probe.waitForConfirms().then(
        () => false,
        () => true,
      );
      await probe.close().catch(() => undefined);
      if (refused) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await connection.close();
  }
}

/** Empties the queue while the policy still holds: below its limit, the queue lets the refused channels publish again. */
async function drain(url: string): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.purgeQueue(QUEUE);
  } finally {
    await connection.close();
  }
}

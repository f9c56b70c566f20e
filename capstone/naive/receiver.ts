// The original project's receiver.py, in TypeScript: one message at a time, deliver it to Odoo over
// HTTP, ack when the answer is HTTP 200, and while Odoo cannot be reached, hold the
// message and try again every 5 s. Faithful to its flaws, on purpose:
//   - Odoo answers 200 to a rejected record too (the error is in the body): acked, lost,
//   - create() without an external id: a redelivered message makes a second contact,
//   - while it waits for Odoo it holds the message and blocks the queue behind it.
import amqp from 'amqplib';
import type { Logger } from '../log.js';
import { NAIVE_QUEUE } from './listen.js';

export interface NaiveOdoo {
  url: string;
  db: string;
  user: string;
  apiKey: string;
}

export interface NaiveReceiver {
  acked(): number;
  stop(): Promise<void>;
}

interface Notified {
  op: 'INSERT' | 'UPDATE';
  row: { id: number; name: string | null; email: string | null; phone: string | null; city: string | null; version: number };
}

export async function startNaiveReceiver(opts: { amqpUrl: string; odoo: NaiveOdoo; log: Logger; retryMs?: number }): Promise<NaiveReceiver> {
  const { log, odoo } = opts;
  const retryMs = opts.retryMs ?? 5000;
  let stopping = false;
  let acked = 0;
  const post = (service: string, method: string, args: unknown[]) =>
    fetch(`${odoo.url}/jsonrpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service, method, args }, id: 1 }),
    });
  const call = (model: string, method: string, args: unknown[], kwargs: Record<string, unknown> = {}) =>
    post('object', 'execute_kw', [odoo.db, uid, odoo.apiKey, model, method, args, kwargs]);

  const login = await post('common', 'login', [odoo.db, odoo.user, odoo.apiKey]);
  const uid = ((await login.json()) as { result: number }).result;

  const connection = await amqp.connect(opts.amqpUrl, { clientProperties: { connection_name: 'naive receiver' } });
  connection.on('error', (err: Error) => log.warn('broker connection error', { error: err.message }));
  const channel = await connection.createChannel();
  await channel.assertQueue(NAIVE_QUEUE, { durable: true });
  await channel.prefetch(1);
  let current: Promise<void> = Promise.resolve();

  const { consumerTag } = await channel.consume(NAIVE_QUEUE, (msg) => {
    if (!msg) return;
    current = (async () => {
      const { op, row } = JSON.parse(msg.content.toString()) as Notified;
      const vals = { name: row.name ?? false, email: row.email ?? false, phone: row.phone ?? false, city: row.city ?? false, ref: `pg:${row.id}` };
      for (;;) {
        try {
          let res: Response;
          if (op === 'INSERT') {
            res = await call('res.partner', 'create', [vals]);
          } else {
            const found = await call('res.partner', 'search', [[['ref', '=', `pg:${row.id}`]]], { limit: 1 });
            const ids = ((await found.json()) as { result?: number[] }).result ?? [];
            res = ids.length ? await call('res.partner', 'write', [ids, vals]) : await call('res.partner', 'create', [vals]);
          }
          await res.text();
          if (res.status === 200) {
            channel.ack(msg); // "200 means it was received and processed" (it does not)
            acked++;
          } else {
            channel.nack(msg);
          }
          return;
        } catch (err) {
          if (stopping) return;
          log.warn(`Odoo unreachable, trying again in ${retryMs / 1000} s`, { error: (err as Error).message });
          await new Promise((r) => setTimeout(r, retryMs));
        }
      }
    })();
  });
  log.info('consuming', { queue: NAIVE_QUEUE });
  return {
    acked: () => acked,
    async stop() {
      stopping = true;
      await channel.cancel(consumerTag).catch(() => undefined);
      await current.catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

// The original project's listen.py, in TypeScript: LISTEN for the trigger's notifications (the whole
// row as JSON) and publish each one. Faithful to its flaws, on purpose:
//   - a notification sent while nobody listens is gone: there is nothing to catch up from,
//   - a plain channel, no publisher confirms: "sent" is not "stored",
//   - the row must fit in a NOTIFY payload (under 8000 bytes), or the application's write fails.
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pg from 'pg';
import type { Logger } from '../log.js';

export const NAIVE_QUEUE = 'customers';

export interface NaiveListener {
  forwarded(): number;
  stop(): Promise<void>;
}

export async function startNaiveListener(opts: { databaseUrl: string; amqpUrl: string; log: Logger }): Promise<NaiveListener> {
  const { log } = opts;
  let forwarded = 0;
  const connection: ChannelModel = await amqp.connect(opts.amqpUrl, { clientProperties: { connection_name: 'naive listen' } });
  connection.on('error', (err: Error) => log.warn('broker connection error', { error: err.message }));
  const channel: Channel = await connection.createChannel();
  await channel.assertQueue(NAIVE_QUEUE, { durable: true });

  const db = new pg.Client({ connectionString: opts.databaseUrl });
  db.on('error', (err) => log.warn('Postgres connection error', { error: err.message }));
  await db.connect();
  db.on('notification', (n) => {
    channel.sendToQueue(NAIVE_QUEUE, Buffer.from(n.payload ?? ''), { persistent: true });
    forwarded++;
  });
  await db.query('LISTEN customers');
  log.info('listening on channel "customers"');
  return {
    forwarded: () => forwarded,
    async stop() {
      await db.end().catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

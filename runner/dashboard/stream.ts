// Where the dashboard reads the check events from: a stream in the classroom vhost, bound to
// the events exchange, made at `classroom -- create` (and again, harmlessly, when the dashboard
// starts, for a class made before dashboards existed).
//
// Why a stream, not a queue: a stream keeps what it holds after it is read, so the dashboard
// rebuilds the whole class from offset "first" every time it starts (no state file to keep in
// step), and nothing sent while it is down is lost. Its size and age limits keep a learner who
// publishes in a loop from filling the disk.
import amqp from 'amqplib';
import { enc, type ManagementClient } from '../broker/management.js';

/** The instructor may configure and read objects named instructor.* (runner/classroom/provision.ts). */
export const DASHBOARD_STREAM = 'instructor.dashboard';

export const STREAM_ARGUMENTS = {
  'x-queue-type': 'stream',
  // A class of 30 sends a few thousand events a day, each under 1 KB: this holds weeks of them.
  'x-max-length-bytes': 200 * 1024 * 1024,
  'x-stream-max-segment-size-bytes': 10 * 1024 * 1024,
  'x-max-age': '30D',
};

/** Declares the stream and its binding to the events exchange, with the instructor's own management API access. */
export async function ensureDashboardStream(instructor: ManagementClient, vhost: string, exchange: string): Promise<void> {
  await instructor.request('PUT', `/queues/${enc(vhost)}/${enc(DASHBOARD_STREAM)}`, { durable: true, auto_delete: false, arguments: STREAM_ARGUMENTS });
  await instructor.request('POST', `/bindings/${enc(vhost)}/e/${enc(exchange)}/q/${enc(DASHBOARD_STREAM)}`, { routing_key: 'check.#', arguments: {} });
}

export interface StreamReader {
  close(): Promise<void>;
}

/**
 * Reads the stream from its first event, then live, through the first of `urls` that answers. `onMessage` gets every message in stream
 * order. A lost connection is opened again after a second, from the offset after the last one
 * read, so no event is counted twice or missed.
 */
export function readStream(urls: string[], onMessage: (msg: amqp.ConsumeMessage) => void, log: (line: string) => void): StreamReader {
  let next: number | 'first' = 'first';
  let conn: amqp.ChannelModel | undefined;
  let closing = false;
  let retry: NodeJS.Timeout | undefined;
  // On a cluster, each new attempt goes to the next node: the one that failed may be down.
  let attempt = 0;

  const open = async () => {
    try {
      conn = await amqp.connect(urls[attempt++ % urls.length]!, { clientProperties: { connection_name: 'workbook dashboard' } });
      conn.on('error', () => undefined);
      conn.on('close', () => {
        conn = undefined;
        if (!closing) {
          log('lost the connection to the broker; opening it again in 1 s');
          retry = setTimeout(() => void open(), 1000);
        }
      });
      const ch = await conn.createChannel();
      // A stream is read with acknowledgements and a prefetch: they are its flow control.
      await ch.prefetch(500);
      await ch.consume(DASHBOARD_STREAM, (msg) => {
        if (!msg) return;
        const offset = msg.properties.headers?.['x-stream-offset'] as number | undefined;
        if (typeof offset === 'number') next = offset + 1;
        try {
          onMessage(msg);
        } finally {
          ch.ack(msg);
        }
      }, { noAck: false, arguments: { 'x-stream-offset': next } });
    } catch (err) {
      log(`cannot read the events stream: ${(err as Error).message}; trying again in 5 s`);
      conn?.removeAllListeners('close'); // the retry below is the only one
      await conn?.close().catch(() => undefined);
      if (!closing) retry = setTimeout(() => void open(), 5000);
    }
  };
  void open();

  return {
    async close() {
      closing = true;
      clearTimeout(retry);
      await conn?.close().catch(() => undefined);
    },
  };
}

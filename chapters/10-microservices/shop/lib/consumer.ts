// The consuming half every service shares: its queue, its bindings, and each event handled
// once, in one transaction with the events it emits.
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import type pg from 'pg';
import { MalformedEvent, SHOP_EXCHANGE, newEvent, readEvent, type ShopEvent } from './envelope.js';
import { processOnce } from './inbox.js';
import { addToOutbox } from './outbox.js';

export interface Running {
  stop(): Promise<void>;
}

/** What a handler gets besides the event: its transaction, and emit() to add an event to it. */
export interface Tx {
  client: pg.PoolClient;
  /** Emits an event of this order, caused by the event being handled (written to the outbox in this transaction). */
  emit(type: string, data: object): void;
}

export type Handler = (ev: ShopEvent, tx: Tx) => Promise<void>;

export interface ConsumeOptions {
  /** The service's name: its queue is shop.<service>, its schema <service>. */
  service: string;
  amqpUrl: string;
  pool: pg.Pool;
  /** The event types (routing keys) it consumes. */
  keys: string[];
  handle: Handler;
  /** Called after each commit that emitted events (to nudge the relay). */
  onEmitted?: () => void;
  /** The broker connection's name in the management UI. */
  name?: string;
  prefetch?: number;
  log?: (line: string) => void;
}

/** How often a failing event is tried before it goes to the dead-letter queue. */
export const DELIVERY_LIMIT = 5;

/** The queue of a service, and where its poison events end up. */
export const queueOf = (service: string) => `shop.${service}`;
export const deadQueueOf = (service: string) => `shop.${service}.dead`;

/**
 * Consumes the service's queue: each event runs `handle` in a transaction that also records its
 * messageId in the inbox (a duplicate is acked without running it again) and writes the events
 * it emits to the outbox. Ack after COMMIT. A message that is not an event is rejected without
 * requeue (dead-lettered); a handler that throws rolls back and the message is requeued, up to
 * DELIVERY_LIMIT deliveries, after which the quorum queue dead-letters it.
 */
export async function consumeEvents(opts: ConsumeOptions): Promise<Running> {
  const { service, pool, handle } = opts;
  const log = opts.log ?? ((line: string) => console.error(line));
  const queue = queueOf(service);
  const connection: ChannelModel = await amqp.connect(opts.amqpUrl, { clientProperties: { connection_name: opts.name ?? `shop ${service}` } });
  connection.on('error', (err: Error) => log(`${service}: connection error: ${err.message}`));
  let inFlight = 0;
  let idle: (() => void) | undefined;
  try {
    const channel = await connection.createChannel();
    channel.on('error', (err: Error) => log(`${service}: channel error: ${err.message}`));
    await channel.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
    // #region queue
    await channel.assertQueue(deadQueueOf(service), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': DELIVERY_LIMIT,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': deadQueueOf(service),
      },
    });
    for (const key of opts.keys) await channel.bindQueue(queue, SHOP_EXCHANGE, key);
    // #endregion
    await channel.prefetch(opts.prefetch ?? 10);

    const run = async (msg: ConsumeMessage) => {
      let ev: ShopEvent;
      try {
        ev = readEvent(msg);
      } catch (err) {
        if (!(err instanceof MalformedEvent)) throw err;
        log(`${service}: rejected a message that is not an event (${err.message})`);
        channel.reject(msg, false); // to the dead-letter queue: trying again cannot fix it
        return;
      }
      // #region emit
      const emitted: ShopEvent[] = [];
      try {
        await processOnce(pool, service, ev.messageId, ev.type, async (client) => {
          const emit = (type: string, data: object) => emitted.push(newEvent(service, type, data as Record<string, unknown>, { correlationId: ev.correlationId, causationId: ev.messageId }));
          await handle(ev, { client, emit });
          await addToOutbox(client, service, emitted);
        });
      } catch (err) {
        log(`${service}: ${ev.type} ${ev.messageId} failed, requeued: ${(err as Error).message}`);
        channel.reject(msg, true);
        return;
      }
      channel.ack(msg); // only after COMMIT: a crash before this line redelivers, and the inbox says "done"
      if (emitted.length > 0) opts.onEmitted?.();
      // #endregion
    };

    const { consumerTag } = await channel.consume(queue, (msg) => {
      if (msg === null) return log(`${service}: the broker cancelled the consumer`);
      inFlight++;
      run(msg)
        // The connection may have died meanwhile: the broker gives the message back by itself.
        .catch((err: Error) => log(`${service}: a message was left unanswered: ${err.message}`))
        .finally(() => {
          if (--inFlight === 0) idle?.();
        });
    });

    return {
      async stop() {
        await channel.cancel(consumerTag).catch(() => undefined); // no new deliveries
        if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve)); // the started ones finish and ack
        await channel.close().catch(() => undefined);
        await connection.close().catch(() => undefined);
      },
    };
  } catch (err) {
    await connection.close().catch(() => undefined);
    throw err;
  }
}

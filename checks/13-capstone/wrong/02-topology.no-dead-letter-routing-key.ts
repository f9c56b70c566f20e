// Known-wrong 13.2: the delay queues dead-letter to the default exchange but without x-dead-letter-routing-key, so an expired message is routed by its old key and dropped.
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { createLogger, type Logger } from '../../../capstone/log.js';

export const EXCHANGE = 'bridge';
export const ROUTING_KEY = 'customer';
export const QUEUE = 'bridge.customers';
export const DEAD_LETTER_QUEUE = 'bridge.customers.dead';
/** 5 s first, as the seed's receiver waited, then growing. */
export const RETRY_DELAYS_MS = [5_000, 10_000, 20_000, 30_000];

/** What the relay publishes, one message per outbox row. */
export interface CustomerEvent {
  eventId: string;
  entity: string;
  key: string;
  version: number;
  /** The customers row, as the trigger saw it. */
  data: Record<string, unknown>;
  /** When the change was written (outbox.created_at). */
  committedAt: string;
}

/** "bridge.customers.retry.5s" for 5000 ms. */
export function retryQueue(delayMs: number): string {
  return `${QUEUE}.retry.${delayMs % 1000 === 0 ? `${delayMs / 1000}s` : `${delayMs}ms`}`;
}

/** Attempt 1 waits in the first delay queue, attempt 2 in the second... the last one repeats. */
export function retryQueueFor(attempt: number, delaysMs: number[] = RETRY_DELAYS_MS): string {
  const index = Math.min(Math.max(attempt, 1), delaysMs.length) - 1;
  return retryQueue(delaysMs[index]!);
}

export async function assertTopology(channel: Channel, delaysMs: number[] = RETRY_DELAYS_MS): Promise<void> {
  // Dead-lettering that survives a broker failure: the source queue keeps the message
  // until the target queue confirmed it (needs reject-publish overflow).
  const atLeastOnce = { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' };

  await channel.assertExchange(EXCHANGE, 'direct', { durable: true });
  await channel.assertQueue(DEAD_LETTER_QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  // Messages the broker itself gives up on (RabbitMQ 4 redelivers a message at most 20
  // times by default) go to the dead-letter queue, not to oblivion.
  await channel.assertQueue(QUEUE, {
    durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': DEAD_LETTER_QUEUE, ...atLeastOnce },
  });
  await channel.bindQueue(QUEUE, EXCHANGE, ROUTING_KEY);

  for (const delay of delaysMs) {
    // Nobody consumes a delay queue: messages sit there until their TTL, then the
    // broker dead-letters them back to the main queue. The receiver never waits itself.
    await channel.assertQueue(retryQueue(delay), {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': delay,
        'x-dead-letter-exchange': '',
        ...atLeastOnce,
      },
    });
  }
}

/** A connection with a name (it shows in the management UI) that logs errors instead of crashing. */
export async function connect(url: string, name: string, log: Logger): Promise<ChannelModel> {
  const connection = await amqp.connect(url, { clientProperties: { connection_name: name } });
  connection.on('error', (err: Error) => log.warn('broker connection error', { error: err.message }));
  return connection;
}

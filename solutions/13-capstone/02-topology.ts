// Exercise 13.2: the bridge's topology: where events go, wait before a retry, and end up when they cannot be delivered
// Text: chapters/13-capstone/README.md   Check: npm run check 13.2   Hint: npm run hint 13.2
//
// The relay and the receiver both call assertTopology() (declaring is idempotent), so
// whichever starts first, nothing is ever published into the void. It must declare:
//   1. a durable direct exchange EXCHANGE ('bridge') and the quorum queue QUEUE ('bridge.customers'),
//      bound to it with ROUTING_KEY ('customer') and nothing else, with a single active consumer
//      (x-single-active-consumer true): however many receivers run, one at a time gets the
//      events, so two never write the same customer at once; the others wait to take over,
//   2. the dead-letter queue DEAD_LETTER_QUEUE ('bridge.customers.dead', quorum), where QUEUE puts
//      what it gives up on (x-dead-letter-exchange '', x-dead-letter-routing-key DEAD_LETTER_QUEUE,
//      x-dead-letter-strategy at-least-once with x-overflow reject-publish), for events Odoo will
//      never accept,
//   3. one delay queue per entry of `delaysMs`, named retryQueue(delay) ('bridge.customers.retry.5s',
//      'bridge.customers.retry.400ms'), quorum, whose messages expire after that delay (x-message-ttl)
//      and are then dead-lettered BACK to QUEUE (x-dead-letter-exchange '' = the default exchange,
//      x-dead-letter-routing-key QUEUE), at-least-once (x-dead-letter-strategy, which needs
//      x-overflow reject-publish),
//   4. declaring again is harmless (nothing deleted, nothing lost), and a declaration the broker
//      refuses (a queue that exists with other arguments) rejects assertTopology() with its error,
//   5. retryQueueFor(attempt, delaysMs = RETRY_DELAYS_MS) says which delay queue the n-th retry
//      waits in: the first waits delaysMs[0] (RETRY_DELAYS_MS starts at 5 s, as the original
//      project waited), each later one longer, and the last delay repeats,
//   6. connect(url, name, log) opens a connection named `name` (the management UI shows it) whose
//      errors are logged with their message instead of crashing the process.
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { pathToFileURL } from 'node:url';
import { createLogger, type Logger } from '../../capstone/log.js';

export const EXCHANGE = 'bridge';
export const ROUTING_KEY = 'customer';
export const QUEUE = 'bridge.customers';
export const DEAD_LETTER_QUEUE = 'bridge.customers.dead';
/** 5 s first, as the original project's receiver waited, then growing. */
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
  // times by default) go to the dead-letter queue, not to oblivion. One receiver at a
  // time: the version check of 13.5 reads, then writes, and two receivers could interleave.
  await channel.assertQueue(QUEUE, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-single-active-consumer': true,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': DEAD_LETTER_QUEUE,
      ...atLeastOnce,
    },
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
        'x-dead-letter-routing-key': QUEUE,
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

// On its own: npx tsx solutions/13-capstone/02-topology.ts   (declares everything on RABBITMQ_URL)
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = createLogger('topology');
  const connection = await connect(process.env.RABBITMQ_URL ?? 'amqp://localhost', 'bridge topology', log);
  try {
    await assertTopology(await connection.createChannel());
    log.info('declared', { exchange: EXCHANGE, queue: QUEUE, dlq: DEAD_LETTER_QUEUE, retry: RETRY_DELAYS_MS.map(retryQueue) });
  } finally {
    await connection.close();
  }
}

// Exercise 7.4: an idempotent consumer: each payment is made once, however often its message comes
// Text: chapters/07-dead-letters/README.md   Check: npm run check 7.4   Hint: npm run hint 7.4
//
// RabbitMQ delivers at least once: the same message can come twice (its producer sent it again,
// or the consumer died after its work and before its ack). startPaymentConsumer(options) must:
//   1. create the table processed_messages (message_id text PRIMARY KEY, processed_at timestamptz)
//      when it does not exist, declare QUEUE (a durable quorum queue), set a prefetch of 10 and
//      consume with manual acks,
//   2. handle each message in ONE Postgres transaction: insert its messageId into
//      processed_messages (ON CONFLICT DO NOTHING) and, only when that inserted a row, call
//      applyPayment(); COMMIT; and only then ack the message,
//   3. ack a duplicate without paying it again: a messageId that processed_messages holds already
//      (published twice, redelivered after a crash, or taken by another consumer at the same moment),
//   4. when the transaction fails: ROLLBACK, and give the message back to be tried again
//      (reject with requeue),
//   5. reject a message that has no messageId, without requeue: nothing tells its duplicates apart,
//   6. listen for 'error' on the connection, the channel and the pool, and return when the consumer
//      callback gets null (the broker cancelled the consumer); stop(): cancel the consumer, then
//      close the channel and the connection and end the pool; when it cannot start,
//      startPaymentConsumer() closes what it opened and rejects.
import amqp from 'amqplib';
import pg from 'pg';
import { pathToFileURL } from 'node:url';

export const QUEUE = 'payments';

/** A message's body. */
export interface Payment {
  account: string;
  amountCents: number;
}

export interface PaymentConsumerOptions {
  amqpUrl: string;
  databaseUrl: string;
}

export interface PaymentConsumer {
  stop(): Promise<void>;
}

/**
 * The side effect (given): credits the account and writes a line in the ledger. It is not
 * idempotent: run it twice and the customer is paid twice.
 */
export async function applyPayment(db: pg.ClientBase, messageId: string, payment: Payment): Promise<void> {
  await db.query('INSERT INTO ledger (message_id, account, amount_cents) VALUES ($1, $2, $3)', [messageId, payment.account, payment.amountCents]);
  await db.query('UPDATE accounts SET balance_cents = balance_cents + $2 WHERE id = $1', [payment.account, payment.amountCents]);
}

export async function startPaymentConsumer(options: PaymentConsumerOptions): Promise<PaymentConsumer> {
  // TODO 1: a pg.Pool on options.databaseUrl, with pool.on('error', …); create processed_messages
  //         (message_id text PRIMARY KEY, processed_at timestamptz NOT NULL DEFAULT now()) IF NOT EXISTS;
  //         connect to options.amqpUrl ('error' listeners on the connection and the channel), assert QUEUE
  //         (durable, quorum), prefetch(10), consume with { noAck: false }.
  // TODO 2: per message, on one client from pool.connect(): BEGIN; INSERT INTO processed_messages (message_id)
  //         VALUES ($1) ON CONFLICT DO NOTHING; when rowCount is 1, applyPayment(client, messageId, payment);
  //         COMMIT; release the client; then ack. A duplicate (rowCount 0) is acked too.
  // TODO 4: on an error: ROLLBACK, then channel.reject(msg, true).
  // TODO 5: no msg.properties.messageId: channel.reject(msg, false).
  // TODO 6: a null message (the broker cancelled the consumer): return.
  // TODO 6: when something fails during the start: close what you opened (connection, pool), then rethrow.
  throw new Error('TODO: write startPaymentConsumer() in exercises/07-dead-letters/04-idempotent-consumer.ts');

  return {
    async stop() {
      // TODO 6: cancel the consumer, close the channel and the connection, end the pool
    },
  };
}

// On its own: DATABASE_URL=postgres://… npx tsx exercises/07-dead-letters/04-idempotent-consumer.ts   (Ctrl-C to stop)
// It creates the tables the payments need (accounts, ledger) and an account "alice".
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres:workbook@127.0.0.1:54329/postgres';
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  await db.query(`CREATE TABLE IF NOT EXISTS accounts (id text PRIMARY KEY, balance_cents bigint NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS ledger (id bigserial PRIMARY KEY, message_id text NOT NULL, account text NOT NULL REFERENCES accounts, amount_cents bigint NOT NULL);
    INSERT INTO accounts (id) VALUES ('alice') ON CONFLICT DO NOTHING;`);
  await db.end();
  const consumer = await startPaymentConsumer({ amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost', databaseUrl });
  console.log(`Consuming "${QUEUE}". Publish {"account":"alice","amountCents":500} with a message id, twice, and look at the ledger. Ctrl-C to stop.`);
  process.once('SIGINT', () => void consumer.stop());
}

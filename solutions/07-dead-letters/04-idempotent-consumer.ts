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
import amqp, { type ConsumeMessage } from 'amqplib';
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
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 5 });
  // An idle client whose server connection dies (Postgres restarts, an admin ends it) emits 'error' on the pool.
  pool.on('error', (err) => console.error(`postgres: ${err.message}`));
  let connection: amqp.ChannelModel | undefined;
  try {
    // The message ids already handled. The primary key is what makes a second insert of the same id do nothing.
    await pool.query('CREATE TABLE IF NOT EXISTS processed_messages (message_id text PRIMARY KEY, processed_at timestamptz NOT NULL DEFAULT now())');
    connection = await amqp.connect(options.amqpUrl);
    connection.on('error', (err) => console.error(`connection error: ${err.message}`));
    const channel = await connection.createChannel();
    channel.on('error', (err) => console.error(`channel error: ${err.message}`));
    await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.prefetch(10);

    /** Pays once per messageId: the id and the payment commit together, or neither does. */
    const handle = async (messageId: string, msg: ConsumeMessage): Promise<void> => {
      const db = await pool.connect();
      try {
        await db.query('BEGIN');
        const fresh = await db.query('INSERT INTO processed_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING', [messageId]);
        // 0 rows: another transaction holds this id (it waits here until that one ends): a duplicate.
        if (fresh.rowCount === 1) await applyPayment(db, messageId, JSON.parse(msg.content.toString()) as Payment);
        await db.query('COMMIT');
      } catch (err) {
        await db.query('ROLLBACK').catch(() => undefined); // a dead connection rolls back by itself
        throw err;
      } finally {
        db.release();
      }
    };

    const { consumerTag } = await channel.consume(
      QUEUE,
      (msg) => {
        if (msg === null) return; // the broker cancelled the consumer
        const { messageId } = msg.properties;
        if (!messageId) {
          console.error('a message without a messageId: rejected');
          channel.reject(msg, false);
          return;
        }
        handle(messageId, msg)
          .then(
            () => channel.ack(msg), // only after COMMIT: a crash before this line redelivers, and the id says "done"
            (err: Error) => {
              console.error(`payment ${messageId} failed, requeued: ${err.message}`);
              channel.reject(msg, true);
            },
          )
          // The connection may have died meanwhile: the broker gives the message back by itself.
          .catch((err: Error) => console.error(`message ${messageId} left unanswered: ${err.message}`));
      },
      { noAck: false },
    );

    const open = connection;
    return {
      async stop() {
        await channel.cancel(consumerTag);
        await channel.close();
        await open.close();
        await pool.end();
      },
    };
  } catch (err) {
    await connection?.close().catch(() => undefined);
    await pool.end();
    throw err;
  }
}

// On its own: DATABASE_URL=postgres://… npx tsx solutions/07-dead-letters/04-idempotent-consumer.ts   (Ctrl-C to stop)
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

// Check 7.4: in a database of its own (accounts, a ledger, and a trigger of the checker's),
// payments are published with message ids: each must be paid once. The checker publishes a
// message twice, two messages with the same body and different ids, one without an id; makes
// the database fail a transaction once; kills the consumer's connection at the very moment its
// ack is about to leave (after the commit) and starts another one, which gets the message again;
// then runs two consumers while every message comes twice at once. It reads the ledger and the
// balances in Postgres, and the acks and rejects the consumers sent to the broker.
import { defineCheck } from '../../runner/check/context.js';
import { consumes, connectionsSince } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/07-dead-letters/04-idempotent-consumer.js';
import { ackTrap, freshDatabase, pause, withResources } from './support.js';

const QUEUE = 'payments';

/** The application's tables (the exercise's business), and the checker's trigger on the ledger. */
const SETUP = `
  CREATE TABLE accounts (id text PRIMARY KEY, balance_cents bigint NOT NULL DEFAULT 0);
  CREATE TABLE ledger (id bigserial PRIMARY KEY, message_id text NOT NULL, account text NOT NULL REFERENCES accounts, amount_cents bigint NOT NULL);
  INSERT INTO accounts (id) VALUES ('alice'), ('bob'), ('carol'), ('dave');
  CREATE SEQUENCE checker_fail_once;
  CREATE FUNCTION checker_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    -- The first attempt at this payment fails, as a serialization failure or a deadlock does.
    IF NEW.message_id = 'pay-db-fails' AND nextval('checker_fail_once') = 1 THEN
      RAISE EXCEPTION 'the checker made this transaction fail once' USING ERRCODE = '40001';
    END IF;
    -- Payments of the race take a moment: two consumers that both "check first" both see nothing.
    IF NEW.message_id LIKE 'pay-race-%' THEN PERFORM pg_sleep(0.03); END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER checker_ledger BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION checker_ledger();
`;

interface Sent {
  id?: string;
  account: string;
  amountCents: number;
}

const RACE = Array.from({ length: 6 }, (_, i) => ({ id: `pay-race-${i + 1}`, account: 'dave', amountCents: (i + 1) * 10 }));

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer, SETUP);
    const trap = ackTrap(t, defer);
    const paid = new Map<string, number>(); // what each message id must have paid, once
    const ledger = async () => {
      const { rows } = await db.sql.query<{ message_id: string; n: string }>('SELECT message_id, count(*) AS n FROM ledger GROUP BY message_id');
      return new Map(rows.map((r) => [r.message_id, Number(r.n)]));
    };
    const balances = async () => new Map((await db.sql.query<{ id: string; b: string }>('SELECT id, balance_cents AS b FROM accounts')).rows.map((r) => [r.id, Number(r.b)]));
    const settled = () => t.sent('basic.ack', 'basic.reject', 'basic.nack').length;
    let expectedSettled = 0;
    const publish = async (messages: Sent[]) => {
      const ch = await t.confirmChannel();
      for (const m of messages) {
        ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify({ account: m.account, amountCents: m.amountCents })), {
          persistent: true,
          contentType: 'application/json',
          ...(m.id ? { messageId: m.id } : {}),
        });
      }
      await ch.waitForConfirms();
      await ch.close();
    };
    const consumers: Exercise.PaymentConsumer[] = [];
    const start = async (label: string) => {
      const c = await t.call(`startPaymentConsumer({ amqpUrl, databaseUrl }) (${label})`, () => t.target.startPaymentConsumer({ amqpUrl: t.url, databaseUrl: db.url }), { timeoutMs: 8000 });
      if (typeof c?.stop !== 'function') {
        t.fail({
          summary: `startPaymentConsumer() returned ${c === undefined ? 'nothing' : 'an object without stop()'}.`,
          expected: '{ stop() { … } }',
          fix: 'End startPaymentConsumer() with return { async stop() { … } }.',
        });
      }
      consumers.push(c);
      return c;
    };

    /**
     * Waits until the consumers have answered `more` more deliveries (acks and rejects, read from
     * the frames they sent) and the ledger shows what `paid` says; fails on the first difference.
     */
    const expectPaid = async (lines: number | number[], more: number, what: string, explain: (id: string, times: number) => { summary: string; why: string; fix: string }) => {
      expectedSettled += more;
      const wanted = () => [...paid].map(([id, n]) => `${id}×${n}`).join(' ');
      const same = async () => {
        const now = await ledger();
        return settled() >= expectedSettled && [...paid].every(([id, n]) => (now.get(id) ?? 0) === n) && [...now.keys()].every((id) => paid.has(id));
      };
      await t.waitFor(same, 3000, 25);
      await pause(100); // a payment made twice, or an answer sent twice, shows up now
      const now = await ledger();
      const wrong = [...new Set([...paid.keys(), ...now.keys()])].find((id) => (now.get(id) ?? 0) !== (paid.get(id) ?? 0));
      t.observe(lines, `read the ledger: ${[...now].map(([id, n]) => `${id}×${n}`).join(' ') || 'empty'}; your consumers answered ${settled()} deliveries`);
      if (wrong !== undefined) {
        const e = explain(wrong, now.get(wrong) ?? 0);
        t.fail({ summary: e.summary, expected: `in the ledger, each message id once: ${wanted()}`, saw: `${wrong} in the ledger ${now.get(wrong) ?? 0} time(s)`, why: e.why, fix: e.fix });
      }
      if (settled() !== expectedSettled) {
        t.fail({
          summary: `${what}: your consumers answered ${settled()} deliveries, not ${expectedSettled}: ${settled() < expectedSettled ? 'a message was neither acked nor rejected' : 'a message was answered twice'}.`,
          expected: `${expectedSettled} answers (ack, or reject), one per delivery`,
          saw: `${t.sent('basic.ack').length} ack(s), ${t.sent('basic.reject').length} reject(s), ${t.sent('basic.nack').length} nack(s)`,
          why: settled() < expectedSettled
            ? 'A message nobody acks stays unacknowledged: with a prefetch of 10, ten of them stop the consumer for good, and they all come back (and are handled again) when the connection closes.'
            : 'The broker answers a second ack of the same delivery tag with PRECONDITION_FAILED and closes the channel, taking the consumer down.',
          fix: 'Answer every message exactly once: channel.ack(msg) after COMMIT, channel.reject(msg, true) when the transaction failed, channel.reject(msg, false) when it has no messageId.',
        });
      }
      const money = await balances();
      const expectBalance = new Map<string, number>();
      for (const [id, m] of byId) expectBalance.set(m.account, (expectBalance.get(m.account) ?? 0) + (paid.has(id) ? m.amountCents : 0));
      const off = [...expectBalance].find(([account, cents]) => money.get(account) !== cents);
      if (off) {
        t.fail({
          summary: `The balance of "${off[0]}" is ${money.get(off[0])} cents, not ${off[1]}: the ledger and the balances disagree.`,
          expected: `${off[1]} cents`,
          saw: `${money.get(off[0])} cents`,
          why: 'applyPayment() writes the ledger line and the balance together. A balance that differs means part of a payment was kept and part was not.',
          fix: 'Call applyPayment(db, messageId, payment) as given, inside the transaction.',
        });
      }
    };
    const byId = new Map<string, Sent>();
    const send = async (messages: Sent[], pay: boolean) => {
      for (const m of messages) {
        if (m.id && pay) {
          paid.set(m.id, 1);
          byId.set(m.id, m);
        }
      }
      await publish(messages);
    };

    // ---- line 6: a start that fails closes what it opened ----
    t.provoke(6, 'called startPaymentConsumer() with the URL of a vhost that does not exist: connecting fails (NOT_ALLOWED)');
    const bad = await t.call('startPaymentConsumer({ amqpUrl: <a vhost that does not exist>, databaseUrl })', async () => {
      try {
        await t.target.startPaymentConsumer({ amqpUrl: `${t.url}-missing`, databaseUrl: db.url });
        return 'resolved';
      } catch {
        return 'rejected';
      }
    }, { timeoutMs: 8000 });
    if (bad === 'resolved') {
      t.fail({
        summary: 'startPaymentConsumer() resolved although it could not connect to the broker.',
        expected: 'startPaymentConsumer() rejects with the error',
        why: 'A consumer that "starts" without a connection consumes nothing, and nobody hears of it.',
        fix: 'Let the error of amqp.connect() reach the caller: catch it only to close what you opened, then throw it again.',
      });
    }
    await t.expectConnectionsClosed('startPaymentConsumer(), when it could not start,');
    const leftAfterFailure = (await t.waitFor(async () => (await db.learnerBackends()) === 0, 1000)) ? 0 : await db.learnerBackends();
    t.observe(6, `startPaymentConsumer() rejected; Postgres connections of yours left open: ${leftAfterFailure}`);
    if (leftAfterFailure > 0) {
      t.fail({
        summary: `When startPaymentConsumer() could not connect to the broker, it left ${leftAfterFailure} Postgres connection(s) open.`,
        expected: 'no connection left open when startPaymentConsumer() rejects',
        saw: `${leftAfterFailure} connection(s) to the database, from your pool`,
        why: 'A service that fails to start is started again, by you or by a supervisor; each failed start that leaves a pool open keeps Postgres connections until the process ends, and Postgres allows only so many.',
        fix: 'Wrap the start in try { … } catch (err) { await connection?.close(); await pool.end(); throw err; }.',
      });
    }

    // ---- line 1: the table, the queue, the consumer ----
    t.provoke(1, 'started your consumer on a database without processed_messages');
    await start('consumer A');
    const key = await db.sql.query<{ column: string }>(
      `SELECT a.attname AS column FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = to_regclass('processed_messages') AND i.indisunique AND i.indnatts = 1`,
    );
    const table = await db.sql.query('SELECT 1 FROM pg_tables WHERE tablename = $1', ['processed_messages']);
    t.observe(1, `read the catalog: processed_messages ${table.rowCount ? `exists, unique on ${key.rows.map((r) => r.column).join(', ') || 'nothing'}` : 'does not exist'}`);
    if (!table.rowCount || !key.rows.some((r) => r.column === 'message_id')) {
      t.fail({
        summary: table.rowCount ? 'processed_messages has no PRIMARY KEY on message_id.' : 'After startPaymentConsumer(), there is no table processed_messages.',
        expected: 'processed_messages (message_id text PRIMARY KEY, processed_at timestamptz …)',
        saw: table.rowCount ? `unique on: ${key.rows.map((r) => r.column).join(', ') || 'nothing'}` : 'no such table',
        why: 'The primary key is the whole trick: of two transactions that insert the same message id, Postgres lets one commit and makes the other find the row (ON CONFLICT DO NOTHING) once the first has committed. Without it, both inserts succeed, and both pay.',
        fix: "await pool.query('CREATE TABLE IF NOT EXISTS processed_messages (message_id text PRIMARY KEY, processed_at timestamptz NOT NULL DEFAULT now())') at start.",
      });
    }
    const q = await t.queue(QUEUE, { fix: `await channel.assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } }) before consuming.` });
    const consume = consumes(connectionsSince()).find((c) => c.consume.queue === QUEUE);
    t.observe(1, `"${QUEUE}" is ${q.durable ? 'durable' : 'not durable'}, ${q.arguments?.['x-queue-type'] ?? 'classic'}; your consumer: ${consume ? `${consume.consume.noAck ? 'automatic' : 'manual'} acks, prefetch ${consume.prefetch ?? 'none'}` : 'none'}`);
    if (!q.durable || q.arguments?.['x-queue-type'] !== 'quorum') {
      t.fail({
        summary: `"${QUEUE}" is ${q.durable ? '' : 'not durable, '}a ${q.arguments?.['x-queue-type'] ?? 'classic'} queue, not a durable quorum queue.`,
        expected: `assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
        why: 'Payments must survive a broker restart and the loss of a node: a durable quorum queue keeps them.',
        fix: `await channel.assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
        link: t.ui('queues', QUEUE),
      });
    }
    if (!consume || consume.consume.noAck || consume.prefetch !== 10) {
      t.fail({
        summary: !consume ? `Your code does not consume "${QUEUE}".` : consume.consume.noAck ? 'Your consumer uses automatic acks (noAck: true).' : `Your consumer's prefetch is ${consume.prefetch ?? 'not set'}, not 10.`,
        expected: `await channel.prefetch(10), then channel.consume('${QUEUE}', …, { noAck: false })`,
        why: 'With automatic acks, a message counts as done the moment it leaves the broker: a crash before the commit loses the payment, and nothing can come back to be tried again. The prefetch bounds how many payments are in progress at once.',
        fix: `await channel.prefetch(10); await channel.consume('${QUEUE}', onMessage, { noAck: false });`,
      });
    }

    // ---- line 2: each payment once ----
    await send([{ id: 'pay-1', account: 'alice', amountCents: 500 }, { id: 'pay-2', account: 'bob', amountCents: 700 }, { id: 'pay-3', account: 'alice', amountCents: 300 }], true);
    t.provoke(2, 'published three payments: pay-1, pay-2, pay-3');
    await expectPaid(2, 3, 'Three payments', (id, n) => ({
      summary: n === 0 ? `The payment ${id} never reached the ledger.` : `The payment ${id} was paid ${n} times.`,
      why: 'Each message of a payment is one payment: it must reach the ledger once.',
      fix: "In one transaction: INSERT INTO processed_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING; when it inserted a row (rowCount 1), applyPayment(); COMMIT; then ack.",
    }));

    // ---- line 3: the same message id again; line 2: the same body, another id ----
    await send([{ id: 'pay-1', account: 'alice', amountCents: 500 }], false);
    await send([{ id: 'pay-4', account: 'carol', amountCents: 250 }, { id: 'pay-5', account: 'carol', amountCents: 250 }], true);
    t.provoke(3, 'published pay-1 a second time (same messageId, same body), as a producer does that resends after a lost confirm');
    t.provoke(2, 'published pay-4 and pay-5: two payments with the same body, two message ids');
    await expectPaid([2, 3], 3, 'A duplicate and two look-alikes', (id, n) => ({
      summary:
        id === 'pay-1'
          ? `pay-1, published a second time with the same messageId, was paid ${n} times.`
          : `${id}, a payment of its own that only has the same body as ${id === 'pay-4' ? 'pay-5' : 'pay-4'}, was paid ${n} time(s): your consumer took it for a duplicate.`,
      why:
        id === 'pay-1'
          ? "The messageId is how a consumer recognises a message it has handled: the second copy must find its id in processed_messages and change nothing."
          : 'Two coffees at the same price are two payments. Only the messageId tells a duplicate from a new message with the same content; a hash of the body cannot.',
      fix: id === 'pay-1' ? "INSERT INTO processed_messages … ON CONFLICT DO NOTHING, and applyPayment() only when rowCount is 1." : 'Deduplicate on msg.properties.messageId, never on the body.',
    }));

    // ---- line 5: no messageId ----
    const rejects = (requeue: boolean) => t.sent('basic.reject').filter((m) => m.requeue === requeue).length;
    const [droppedBefore, requeuedBefore] = [rejects(false), rejects(true)];
    await send([{ account: 'dave', amountCents: 999 }], false);
    t.provoke(5, 'published a payment without a messageId');
    await t.waitFor(() => settled() > expectedSettled, 2000);
    await pause(100); // a message given back comes again at once
    const [droppedNow, requeuedNow, leftInQueue] = [rejects(false) - droppedBefore, rejects(true) - requeuedBefore, await t.messageCount(QUEUE)];
    t.observe(5, `your consumer sent ${droppedNow} reject(s) without requeue and ${requeuedNow} with requeue; "${QUEUE}" holds ${leftInQueue} message(s)`);
    if (droppedNow !== 1 || requeuedNow > 0 || leftInQueue !== 0) {
      t.fail({
        summary: `The message without a messageId was not rejected without requeue${requeuedNow > 1 ? `: it came back ${requeuedNow} times in a row` : ''}.`,
        expected: 'channel.reject(msg, false) for it, once (with a dead-letter exchange, it would land there)',
        saw: `${droppedNow} reject(s) without requeue, ${requeuedNow} with requeue, ${t.sent('basic.nack').length} nack(s); ${leftInQueue} message(s) in "${QUEUE}"`,
        why: 'A message that can never be handled and goes back to the queue comes back at once, for ever: a hot loop that burns CPU and hides every other message behind it.',
        fix: 'if (!msg.properties.messageId) { channel.reject(msg, false); return; }',
        link: t.ui('queues', QUEUE),
      });
    }
    await expectPaid(5, 1, 'A payment without a messageId', (id, n) => ({
      summary: `A message without a messageId changed the ledger (${id} × ${n}).`,
      why: 'Without a message id, nothing tells the second copy of this message from a new payment: paying it risks paying twice.',
      fix: 'if (!msg.properties.messageId) { channel.reject(msg, false); return; }',
    }));

    // ---- line 2: the ack comes after the commit; line 3: redelivered after a crash ----
    const crash: Sent = { id: 'pay-crash', account: 'bob', amountCents: 50 };
    const atCut = trap.arm(async () => (await ledger()).get('pay-crash') ?? 0, 3000);
    await send([crash], true);
    t.provoke([2, 3], 'published pay-crash, and cut your connection at the moment its ack was about to leave (as if the process died there)');
    const committedAtCut = await atCut;
    if (committedAtCut === undefined) {
      t.fail({
        summary: 'pay-crash was never acked.',
        expected: 'an ack for pay-crash, once it is paid',
        why: 'A message nobody acks stays unacknowledged, and comes back when the connection closes.',
        fix: 'channel.ack(msg) after COMMIT.',
      });
    }
    t.observe(2, `when your ack of pay-crash was about to leave, the ledger held it ${committedAtCut} time(s)`);
    if (committedAtCut === 0) {
      t.fail({
        summary: 'Your consumer acked pay-crash before its transaction had committed.',
        expected: 'COMMIT first, then the ack',
        saw: 'when the ack was about to leave, pay-crash was not in the ledger yet',
        why: 'Once the broker has the ack, the message is gone. If the process dies, or the transaction fails, between the ack and the COMMIT, the payment is lost: nothing will ever bring it back.',
        fix: 'await the transaction (BEGIN … COMMIT), then channel.ack(msg).',
      });
    }
    t.provoke(6, 'ended your Postgres connections, as a database restart does (your idle pool clients emit an error)');
    await db.terminateLearnerBackends();
    await pause(150); // an 'error' event nobody listens to ends the process now
    t.observe(6, "your process survived the lost connections: 'error' listeners on the connection and the pool heard them");

    t.provoke(3, 'started consumer B, as a supervisor restarts a crashed process: the broker gives pay-crash to it again');
    const second = await start('consumer B, after the crash');
    await expectPaid(3, 1, 'A message redelivered after a crash', (id, n) => ({
      summary: `${id} was paid ${n} times: once before the crash, and again when the broker redelivered it to the consumer started after it.`,
      why: 'The broker cannot know a message was handled until it has the ack: a consumer that dies between its commit and its ack gets the message again. Only what the database holds survives the crash; a Set in memory is gone with the process.',
      fix: 'Keep the handled ids in processed_messages, in the same transaction as the payment, not in memory.',
    }));

    // ---- line 4: the transaction fails once ----
    const requeuedBeforeFailure = rejects(true) + t.sent('basic.nack').length;
    await send([{ id: 'pay-db-fails', account: 'dave', amountCents: 100 }], true);
    t.provoke(4, 'published pay-db-fails: Postgres fails its first transaction (SQLSTATE 40001, a serialization failure)');
    await expectPaid(4, 2, 'A transaction that failed once', (id, n) => {
      const givenBack = rejects(true) + t.sent('basic.nack').length > requeuedBeforeFailure;
      return {
        summary:
          n > 0
            ? `${id} was paid ${n} times.`
            : givenBack
              ? `${id} was never paid: when its transaction failed, the message came back, but processed_messages had kept its id, so the second try took it for a duplicate.`
              : `${id} was never paid: its transaction failed, and your consumer acked the message anyway, so nothing brought it back.`,
        why:
          n > 0
            ? 'The rolled-back attempt must leave nothing behind.'
            : givenBack
              ? 'The id and the payment must commit together, or not at all: an id recorded in a transaction of its own (pool.query() takes any client from the pool, each query its own transaction) stays when the payment rolls back.'
              : 'Once the broker has the ack, the message is gone. An ack sent before the COMMIT, or after a failure, loses the payment for good.',
        fix: 'BEGIN; INSERT INTO processed_messages …; applyPayment(); COMMIT, all on one client from pool.connect(); on an error: ROLLBACK, then channel.reject(msg, true). Ack only after COMMIT.',
      };
    });
    t.observe(4, `pay-db-fails was paid once, after ${rejects(true) - requeuedBeforeFailure} reject(s) with requeue`);
    t.expectRejectsNotNacks([4, 5], { retried: 'When the transaction failed', dropped: 'For the message without a messageId' });

    // ---- line 3: two consumers, every message twice at the same moment ----
    t.provoke(3, 'started consumer C beside B, then published six payments twice each, the two copies side by side: B and C handle them at the same moment');
    await start('consumer C');
    await send(RACE.flatMap((m) => [m, m]), true);
    await expectPaid(3, RACE.length * 2, 'Duplicates handled at the same moment', (id, n) => ({
      summary: `${id} was paid ${n} times: its two copies were handled at the same moment, and both found its id not processed yet.`,
      why: 'Check-then-act races: two transactions can both read "not processed" before either records the id. The insert into processed_messages is the check itself: its primary key makes the second transaction wait for the first, then find the row.',
      fix: 'No SELECT first: INSERT INTO processed_messages … ON CONFLICT DO NOTHING, in the same transaction as the payment, and pay only when rowCount is 1.',
    }));

    // ---- line 6: the broker cancels the consumers, then stop() ----
    const before = t.connectionsOpen();
    await (async () => {
      const ch = await t.channel();
      await ch.deleteQueue(QUEUE);
      await ch.close();
    })();
    t.provoke(6, `deleted "${QUEUE}" under consumers B and C: the broker cancels them, and amqplib calls their callbacks with null`);
    await pause(150);
    t.observe(6, `${t.connectionsOpen()} of your ${before} connection(s) still open after the cancel`);
    if (t.connectionsOpen() < before) {
      t.fail({
        summary: `When the broker cancelled your consumers (the checker deleted "${QUEUE}"), a connection closed: the consumer callback threw on the null message.`,
        expected: 'the callback returns on null, and the connection stays open',
        saw: `${before} connection(s) open before, ${t.connectionsOpen()} after`,
        why: 'When its queue is deleted (by an operator, a policy, a failover), the broker cancels the consumer, and amqplib calls the callback one last time with null. Reading msg.properties on null throws inside amqplib, which then closes the whole connection.',
        fix: 'Start the consumer callback with: if (msg === null) return;',
      });
    }
    t.provoke(6, 'called stop() on consumers B and C');
    for (const [i, c] of [second, consumers[2]!].entries()) {
      const mine = connectionsSince().filter((x) => !x.closed);
      await t.expectClosedOnReturn(`stop() of consumer ${i ? 'C' : 'B'}`, i === 0 ? mine.slice(0, 1) : mine, () => c.stop());
    }
    await t.expectConnectionsClosed('stop()');
    const pgLeft = (await t.waitFor(async () => (await db.learnerBackends()) === 0, 1000)) ? 0 : await db.learnerBackends();
    t.observe(6, `after stop(): ${pgLeft} Postgres connection(s) of yours left open`);
    if (pgLeft > 0) {
      t.fail({
        summary: `After stop(), ${pgLeft} Postgres connection(s) of your pool were still open.`,
        expected: 'no connection left: await pool.end() in stop()',
        why: 'An open pool keeps the process alive and holds connections Postgres has few of.',
        fix: 'In stop(), after closing the AMQP connection: await pool.end().',
      });
    }
  }),
);

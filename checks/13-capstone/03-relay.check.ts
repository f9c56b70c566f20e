// Check 13.3: the relay, against a database with the reference triggers. Its fallback timer
// is set to a minute, so whatever it publishes quickly was woken by a notification, its
// start or a reconnect; a second relay with a short timer shows the timer and races the
// first one for the same rows. The checker writes rows before the relay starts, leaves a
// transaction open while a later one commits, writes rows without a notification, makes a
// drain slow and then fail (a trigger of its own on the outbox), makes the queue refuse
// messages (nacks), unbinds the queue (returned messages), deletes the exchange (a channel
// error), locks the outbox while it cuts the broker connection (a publish on a closed
// channel), and takes the broker and Postgres away for a while (the reconnect delays);
// every message is read from the queue and compared with its outbox row, and the log is
// read for what went wrong. startRelay() must fail cleanly, and stop() stop cleanly. Last,
// a third relay reaches the broker through a TCP proxy that the checker freezes (a broker
// that confirms nothing, without an alarm that would stop every other check on the broker):
// its drain must give up after confirmTimeoutMs, roll back (the rows unpublished and
// unlocked: SELECT … FOR UPDATE NOWAIT gets them), and publish them through a new connection.
import { isDeepStrictEqual } from 'node:util';
import type { Message } from 'amqplib';
import pg from 'pg';
import { defineCheck } from '../../runner/check/context.js';
import { enc } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/13-capstone/03-relay.js';
import { memoryLogger, type LogLine } from '../../capstone/log.js';
import { announcedNames, CHECKER, checkerStep, freshDatabase, pendingTimers, rejection, sleep, takeReady, tcpProxy, withResources } from './support.js';

const EXCHANGE = 'bridge';
const QUEUE = 'bridge.customers';
const ROUTING_KEY = 'customer';
const BATCH = 5;

interface Row {
  id: string;
  event_id: string;
  entity: string;
  entity_key: string;
  version: number;
  payload: Record<string, unknown>;
  created_at: Date;
  published: boolean;
}

/** A trigger of the checker's on the outbox: marking "Slow Mark" takes 0.3 s, marking "Refused Mark" fails while chk_control says so. */
const MARK_TRIGGER = `
CREATE TABLE chk_control (refuse boolean NOT NULL);
INSERT INTO chk_control VALUES (true);
CREATE FUNCTION chk_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.payload->>'name' = 'Slow Mark' THEN PERFORM pg_sleep(0.3); END IF;
  IF NEW.payload->>'name' = 'Refused Mark' AND (SELECT refuse FROM chk_control) THEN
    RAISE EXCEPTION 'the checker refuses to mark this row (a failure in the middle of a drain)';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER chk_mark BEFORE UPDATE OF published_at ON outbox FOR EACH ROW EXECUTE FUNCTION chk_mark();`;

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer, 'reference');
    const log = memoryLogger('relay');
    // Node warns when listeners pile up on one emitter (a 'return' listener added per drain and never removed).
    const leaks: string[] = [];
    const onWarning = (w: Error) => void (w.name === 'MaxListenersExceededWarning' && leaks.push(w.message));
    process.on('warning', onWarning);
    defer(() => process.off('warning', onWarning));
    const insert = async (name: string, client = db.sql) =>
      (await client.query<{ id: string }>('INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id::text', [name, `${name.replace(/\W+/g, '.').toLowerCase()}@example.com`])).rows[0]!.id;
    /** Outbox rows written straight into the table: no trigger, so no notification (a lost one). */
    const insertSilently = async (n: number, from: number) =>
      (
        await db.sql.query<{ entity_key: string }>(
          `INSERT INTO outbox (entity, entity_key, version, payload)
           SELECT 'customer', k::text, 1, jsonb_build_object('id', k, 'name', 'Silent ' || k, 'version', 1) FROM generate_series($1::int, $2::int) AS k RETURNING entity_key`,
          [from, from + n - 1],
        )
      ).rows.map((r) => r.entity_key);
    const outbox = async () =>
      (await db.sql.query<Row>('SELECT id::text, event_id::text, entity, entity_key, version, payload, created_at, published_at IS NOT NULL AS published FROM outbox ORDER BY id')).rows;
    const published = async (keys: string[]) => {
      const rows = await outbox();
      return keys.every((k) => rows.some((r) => r.entity_key === k && r.published));
    };
    const waitPublished = (keys: string[], ms: number) => t.waitFor(() => published(keys), ms, 25);
    const unpublished = async () => (await outbox()).filter((r) => !r.published).map((r) => `customer ${r.entity_key} (outbox id ${r.id})`);
    const reported = (lines: LogLine[]) => {
      const bad = lines.find((l) => l.level !== 'info' || /TODO/.test(`${l.msg} ${String(l.error ?? '')}`));
      return bad ? ` Your relay logged: "${bad.msg}${bad.error ? `: ${String(bad.error)}` : ''}".` : '';
    };
    const relayBackends = async () =>
      (
        await db.sql.query<{ pid: number; query: string; state: string; wait_event: string | null }>(
          `SELECT pid, query, state, wait_event FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1`,
          [CHECKER],
        )
      ).rows;
    const listening = async () => (await relayBackends()).filter((b) => /^\s*listen\s+"?outbox"?\s*;?\s*$/i.test(b.query)).length;
    const terminateRelayBackends = async () =>
      (await db.sql.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1`, [CHECKER])).rowCount ?? 0;
    /** Log lines from `from` on, at warn or error level. */
    const troubles = (from: number, lines = log.lines) => lines.slice(from).filter((l) => l.level !== 'info');
    const mentions = (l: LogLine, text: RegExp) => text.test(JSON.stringify(l)) && l.msg.trim() !== '';
    /** Every message in the queue, taken (they are gone afterwards). */
    const messages: Message[] = [];
    const takeAll = async () => {
      const got = await checkerStep(t, `read the messages in "${QUEUE}"`, () => takeReady(t, QUEUE, 1000));
      messages.push(...got);
      return got;
    };
    const permissions = (grant: boolean) =>
      t.mgmt.request(grant ? 'PUT' : 'DELETE', `/permissions/${enc(t.vhost)}/${enc(t.broker.username)}`, grant ? { configure: '.*', write: '.*', read: '.*' } : undefined);
    defer(() => permissions(true));
    // ALTER DATABASE … ALLOW_CONNECTIONS cannot be run from inside that database: from "postgres".
    const admin = new pg.Client({ connectionString: Object.assign(new URL(db.url), { pathname: '/postgres' }).href, application_name: CHECKER });
    await admin.connect();
    defer(() => admin.end());
    const allowConnections = (allow: boolean) => admin.query(`ALTER DATABASE "${db.name}" ALLOW_CONNECTIONS ${allow}`);
    defer(() => allowConnections(true));

    // ---- line 7: a start that cannot succeed must fail, and close what it opened ----
    t.provoke(7, 'called startRelay() with a database that does not exist, then with "bridge.customers" declared as a classic queue (declaring the topology fails)');
    const missingDb = Object.assign(new URL(db.url), { pathname: '/no_such_database' }).href;
    const noDb = await rejection(() => Promise.resolve(t.target.startRelay({ databaseUrl: missingDb, amqpUrl: t.url, fallbackMs: 60_000, batchSize: BATCH, log: memoryLogger('relay') })), 5000);
    await t.expectConnectionsClosed('startRelay() with a database that does not exist');
    await t.mgmt.deleteQueue(t.vhost, QUEUE); // the first try may have declared it
    await checkerStep(t, `declare "${QUEUE}" as a classic queue`, async () => {
      const ch = await t.channel();
      await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'classic' } });
      await ch.close();
    });
    const noTopology = await rejection(() => Promise.resolve(t.target.startRelay({ databaseUrl: db.url, amqpUrl: t.url, fallbackMs: 60_000, batchSize: BATCH, log: memoryLogger('relay') })), 5000);
    await t.expectConnectionsClosed('startRelay() with a topology the broker refuses');
    await t.mgmt.deleteQueue(t.vhost, QUEUE);
    t.observe(7, `startRelay() ${noDb === undefined ? 'resolved' : noDb === 'timeout' ? 'hung' : 'rejected'} without a database, ${noTopology === undefined ? 'resolved' : noTopology === 'timeout' ? 'hung' : 'rejected'} with the topology refused; no connection left open`);
    if (!(noDb instanceof Error) || !(noTopology instanceof Error)) {
      const which = !(noDb instanceof Error) ? 'the database does not exist' : `the broker refused to declare "${QUEUE}" (PRECONDITION_FAILED)`;
      t.fail({
        summary: `startRelay() ${(noDb instanceof Error ? noTopology : noDb) === 'timeout' ? 'never settled' : 'resolved'} although ${which}.`,
        expected: 'startRelay() rejects with the error, having closed what it opened',
        why: 'A relay that "starts" without its database or its topology publishes nothing, and says nothing; a supervisor (systemd, Kubernetes) restarts a process that fails at start, and shows why.',
        fix: "Let the first connectBroker() and listen() throw out of startRelay(), after closing the connections already open (try/catch around them).",
      });
    }

    // ---- line 2: rows written before the relay starts; a transaction left open ----
    const early = [await insert('Early One'), await insert('Early Two'), await insert('Early Three')];
    const slow = await db.connect();
    await slow.query('BEGIN');
    const slowKey = await insert('Slow Transaction', slow);
    t.provoke(2, `wrote customers ${early.join(', ')} while no relay was running, and left customer ${slowKey}'s transaction open (its outbox id is taken, not committed)`);

    const announced = announcedNames(defer); // the connection_name each connection announces to the broker
    let stopped = false;
    const relay = await t.call(
      `startRelay({ databaseUrl, amqpUrl, batchSize: ${BATCH}, fallbackMs: 60000, log })`,
      () => t.target.startRelay({ databaseUrl: db.url, amqpUrl: t.url, fallbackMs: 60_000, batchSize: BATCH, log }),
      { timeoutMs: 8000 },
    );
    defer(() => (stopped ? undefined : relay.stop()));
    const atStart = await waitPublished(early, 3000);
    t.observe(2, `the 3 rows written before the start are ${atStart ? '' : 'NOT '}marked published`);
    if (!atStart) {
      t.fail({
        summary: `The 3 customers written before the relay started were never published.${reported(log.lines)}`,
        expected: 'the 3 rows published and marked soon after startRelay() (its timer is set to a minute: only a drain at start can do it)',
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'NOTIFY only reaches a connection that is listening at that moment. What was committed while the relay was down is only in the outbox: the relay must drain it when it starts, after every reconnect, and on a timer.',
        fix: 'Drain once right after LISTEN (and after connecting to the broker), not only on notifications.',
        link: t.ui('queues', QUEUE),
      });
    }

    // ---- line 1: LISTEN, and a drain per notification ----
    const listeners = await listening();
    t.observe(1, `${listeners} connection(s) of the relay in Postgres last ran LISTEN outbox`);
    if (listeners !== 1) {
      t.fail({
        summary: listeners === 0 ? 'The relay does not LISTEN on channel "outbox": nothing wakes it up when a row is written.' : `The relay holds ${listeners} connections that LISTEN on "outbox".`,
        expected: 'one connection of the relay whose last statement is LISTEN outbox',
        saw: (await relayBackends()).map((b) => JSON.stringify(b.query.slice(0, 60))).join(', ') || 'no connection of the relay',
        why: 'The trigger sends NOTIFY outbox for every row; only a session that ran LISTEN outbox hears it. Without it, rows wait for the fallback timer.',
        fix: "A pg.Client of its own (not the pool's: a pooled connection changes hands), client.on('notification', …), then await client.query('LISTEN outbox').",
      });
    }
    const later = await insert('Committed First');
    t.provoke(1, `customer ${later} committed (its outbox id is higher than ${slowKey}'s): a notification`);
    const woke = await waitPublished([later], 2000);
    t.observe(1, `customer ${later} is ${woke ? '' : 'NOT '}marked published`);
    if (!woke) {
      t.fail({
        summary: `Customer ${later} was not published within 2 s of its notification.${reported(log.lines)}`,
        expected: 'a drain on every notification',
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'The fallback timer is set to a minute here: only the notification can wake the relay. A relay that listens but does not drain on notifications leaves every row waiting for the timer.',
        fix: "client.on('notification', () => wake()) on the LISTEN connection.",
      });
    }
    await slow.query('COMMIT');
    t.provoke(3, `the transaction of customer ${slowKey} committed, after customer ${later} (smaller id, later commit)`);
    const late = await waitPublished([slowKey], 2000);
    t.observe(3, `customer ${slowKey} is ${late ? '' : 'NOT '}marked published`);
    if (!late) {
      t.fail({
        summary: `Customer ${slowKey} committed after customer ${later} and was never published.`,
        expected: 'every committed outbox row published',
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'Sequence values are handed out when a row is inserted, not when it commits. A relay that asks for "id > the last id I published" skips every row that commits late: lost for good.',
        fix: 'Select WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED, and mark what you published.',
      });
    }

    // ---- line 3: one wake-up drains batch after batch ----
    const silent = await insertSilently(12, 1000);
    const trigger = await insert('Wakes The Relay');
    t.provoke(3, `wrote 12 outbox rows without a notification, then customer ${trigger} (one notification): 13 rows, batchSize ${BATCH}`);
    const drained = await waitPublished([...silent, trigger], 2000);
    t.observe(3, `${drained ? 'all 13 rows are' : `${13 - (await unpublished()).length} of 13 rows are`} marked published`);
    if (!drained) {
      t.fail({
        summary: `One notification published only part of the 13 waiting rows (batchSize ${BATCH}): the drain stops after one batch.`,
        expected: `all 13 rows published: batches of ${BATCH}, ${BATCH}, 3, in one drain`,
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'Notifications get lost and rows pile up (a relay that was down, a burst of writes). A drain that stops after one batch leaves the rest waiting for the next notification or the timer.',
        fix: 'Repeat { take a batch, publish, mark, commit } until a batch comes back shorter than batchSize.',
      });
    }

    // ---- line 4: every message, read from the queue and compared with its row ----
    await takeAll();
    const rows = await outbox();
    t.observe([3, 4], `took ${messages.length} message(s) from "${QUEUE}" for ${rows.length} outbox row(s)`);
    const byEvent = new Map(rows.map((r) => [r.event_id, r]));
    for (const m of messages) {
      const row = byEvent.get(String(m.properties.messageId));
      let body: unknown;
      try {
        body = JSON.parse(m.content.toString('utf8'));
      } catch {
        body = m.content.toString('utf8');
      }
      const want = row && { eventId: row.event_id, entity: row.entity, key: row.entity_key, version: row.version, data: row.payload, committedAt: row.created_at.toISOString() };
      const problems = !row
        ? [`messageId ${JSON.stringify(m.properties.messageId)} is no outbox event id`]
        : [
            m.fields.exchange !== EXCHANGE && `published to exchange ${JSON.stringify(m.fields.exchange)}, not "${EXCHANGE}"`,
            m.fields.routingKey !== ROUTING_KEY && `routing key ${JSON.stringify(m.fields.routingKey)}, not "${ROUTING_KEY}"`,
            m.properties.deliveryMode !== 2 && `deliveryMode ${m.properties.deliveryMode ?? 'unset'}: not persistent`,
            m.properties.contentType !== 'application/json' && `contentType ${JSON.stringify(m.properties.contentType)}, not "application/json"`,
            m.properties.type !== `${row.entity}.changed` && `type ${JSON.stringify(m.properties.type)}, not "${row.entity}.changed"`,
            m.properties.timestamp !== Math.floor(row.created_at.getTime() / 1000) && `timestamp ${JSON.stringify(m.properties.timestamp)}, not ${Math.floor(row.created_at.getTime() / 1000)} (created_at in seconds)`,
            !isDeepStrictEqual(body, want) && `the body is not the row's CustomerEvent: ${JSON.stringify(body).slice(0, 160)}`,
          ].filter((p): p is string => typeof p === 'string');
      if (problems.length) {
        t.fail({
          summary: `The message for ${row ? `customer ${row.entity_key}` : 'an event'} is not what the receiver expects: ${problems[0]}.`,
          expected: `exchange "${EXCHANGE}", routing key "${ROUTING_KEY}", persistent, messageId = event_id, contentType application/json, type "customer.changed", timestamp = created_at in seconds, body { eventId, entity, key, version, data, committedAt }`,
          saw: problems.join('; '),
          why: problems[0]!.includes('persistent')
            ? 'A transient message is lost when the broker restarts, after the row was marked published: the event is gone for good.'
            : 'The receiver and anyone downstream read these: the event id spots a duplicate, the type and content type say what the body is, the body is what gets written to Odoo.',
          fix: "ch.publish(EXCHANGE, ROUTING_KEY, Buffer.from(JSON.stringify(event)), { persistent: true, mandatory: true, messageId: row.event_id, contentType: 'application/json', type: `${row.entity}.changed`, timestamp: Math.floor(row.created_at.getTime() / 1000) }, callback)",
        });
      }
    }
    const order = messages.map((m) => byEvent.get(String(m.properties.messageId))!.id);
    const wantOrder = [...early, later, slowKey, ...silent, trigger].map((k) => rows.find((r) => r.entity_key === k)!.id);
    if (order.join() !== wantOrder.join()) {
      t.fail({
        summary: messages.length !== rows.length ? `"${QUEUE}" holds ${messages.length} messages for ${rows.length} outbox rows.` : 'The messages are not in the order of their outbox ids within a drain.',
        expected: `one message per row, oldest first: outbox ids ${wantOrder.join(', ')}`,
        saw: `outbox ids ${order.join(', ')}`,
        why: 'Each row must become exactly one message, and the oldest waits least: a drain takes its rows ORDER BY id.',
        fix: 'SELECT … WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED; publish each row once.',
      });
    }

    // ---- line 1: a notification during a drain makes one more drain ----
    await db.sql.query(MARK_TRIGGER);
    const slowMark = await insert('Slow Mark');
    const marking = await t.waitFor(async () => (await relayBackends()).some((b) => b.wait_event === 'PgSleep'), 2000, 10);
    const during = await insert('During Drain');
    t.provoke(1, `made marking customer ${slowMark} take 0.3 s (a trigger of the checker's), and wrote customer ${during} while that drain ${marking ? 'was marking it' : 'ran'}`);
    const followed = await waitPublished([slowMark, during], 2000);
    t.observe(1, `customers ${slowMark} and ${during} are ${followed ? '' : 'NOT both '}marked published`);
    if (!followed) {
      t.fail({
        summary: `Customer ${during}, whose notification arrived during a drain, was not published when that drain ended.`,
        expected: 'a notification that arrives during a drain makes one more drain afterwards',
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'The drain in progress took its rows before this one committed. If the notification is dropped because a drain is running, the row waits for the next notification or the timer (a minute here).',
        fix: 'While a drain runs, remember that another wake-up came (again = true) and drain once more when it ends.',
      });
    }
    const goodDay = troubles(0);
    t.observe(6, `${goodDay.length} warning(s) or error(s) logged on a good day${goodDay.length ? `: "${goodDay[0]!.msg}"` : ''}`);
    if (goodDay.length) {
      t.fail({
        summary: `On a good day (nothing failed yet), the relay logged ${goodDay.length} warning(s) or error(s): "${goodDay[0]!.msg}".`,
        expected: 'no warning nor error while nothing fails',
        saw: goodDay.map((l) => `${l.level} "${l.msg}"`).slice(0, 3).join('; '),
        why: 'Warnings and errors are how the relay tells a person that something is wrong. Logged on every drain, they teach everyone to ignore them.',
        fix: 'Warn only when something failed: an error, a lost connection, a batch the broker did not take.',
      });
    }

    // ---- lines 3, 6: a drain fails half-way: it rolls back, says so, and the next one takes its rows ----
    let mark = log.lines.length;
    const refusedMark = await insert('Refused Mark');
    t.provoke([3, 6], `made marking customer ${refusedMark} fail (the checker's trigger raises an error in the drain's UPDATE)`);
    const failure = await t.waitFor(() => troubles(mark).find((l) => mentions(l, /the checker refuses to mark this row/)), 2000, 20);
    const keptBack = !(await published([refusedMark]));
    t.observe([3, 6], `customer ${refusedMark} is ${keptBack ? 'not ' : ''}marked; the relay logged ${failure ? `${failure.level} "${failure.msg}"` : 'nothing about it'}`);
    await db.sql.query('UPDATE chk_control SET refuse = false');
    const afterFailure = await insert('After The Failure');
    t.provoke(3, `let marking succeed again, then wrote customer ${afterFailure}`);
    const recovered = await waitPublished([refusedMark, afterFailure], 2000);
    if (!failure || !keptBack || !recovered) {
      t.fail({
        summary: !failure
          ? `A drain failed in the database (its UPDATE raised an error), and the relay logged no warning with the error's message.${reported(log.lines.slice(mark))}`
          : !recovered
            ? `After a drain failed in the middle of its transaction, the relay did not publish customers ${refusedMark} and ${afterFailure} any more: its connection is stuck in the failed transaction.`
            : `Customer ${refusedMark} was marked published although marking it failed.`,
        expected: "the failed drain rolled back (its rows stay unpublished), a warning with the database's message, and the next drain publishing both rows",
        saw: `warning: ${failure ? `"${failure.msg}"` : 'none'}; unpublished: ${(await unpublished()).join(', ') || 'none'}`,
        why: 'A transaction that failed must be rolled back: until then Postgres refuses every statement on that connection ("current transaction is aborted"), and a pooled connection handed back in that state fails every later drain.',
        fix: "try { BEGIN … COMMIT } catch (err) { await client.query('ROLLBACK'); throw err } finally { client.release() }, and log.warn(…, { error: err.message }) where the drain's error is caught.",
      });
    }

    // ---- lines 3, 6: the broker refuses (nacks) a full batch: nothing is marked, no hot loop ----
    await t.mgmt.setPolicy(t.vhost, 'refuse', { pattern: '^bridge\\.customers$', definition: { 'max-length': 0, overflow: 'reject-publish' } });
    const probe = await t.confirmChannel();
    const refusing = await t.waitFor(() => new Promise<boolean>((resolve) => probe.sendToQueue(QUEUE, Buffer.from('probe'), {}, (err) => resolve(!!err))), 3000, 25);
    if (!refusing) t.skip('the length-limit policy did not take effect within 3 s; run the check again');
    mark = log.lines.length;
    const refused = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name) SELECT 'Refused ' || k FROM generate_series(1, ${BATCH}) AS k RETURNING id::text`)).rows.map((r) => r.id);
    t.provoke([3, 6], `made "${QUEUE}" refuse new messages (max-length 0, overflow reject-publish: the broker nacks), then wrote ${BATCH} customers in one statement (a full batch)`);
    const nackedMarked = await waitPublished(refused.slice(0, 1), 600);
    const refusals = troubles(mark);
    t.observe([3, 6], `${nackedMarked ? 'a refused row IS' : 'no refused row is'} marked; the relay logged ${refusals.length} warning(s) or error(s)`);
    if (nackedMarked) {
      t.fail({
        summary: `Customer ${refused[0]} was marked published although the broker refused (nacked) its message: it was lost.`,
        expected: 'the rows stay unpublished until the broker confirms a message for them',
        saw: `published_at set, "${QUEUE}" refusing every message`,
        why: 'Marking a row published is a promise that the broker has it. Only a confirm (ack) keeps that promise; a nack, a returned message or a closed channel means: try again.',
        fix: "Publish on a confirm channel, wait for each message's confirm, and UPDATE only the ids that were acked.",
        link: t.ui('queues', QUEUE),
      });
    }
    if (refusals.length === 0 || refusals.length > 3 || refusals.some((l) => l.msg.trim() === '')) {
      t.fail({
        summary: refusals.length === 0 ? 'The broker refused a whole batch, and the relay logged no warning.' : `While the broker refused its messages, the relay logged ${refusals.length} warnings in 0.6 s: it takes the refused batch again at once, in a loop.`,
        expected: 'a warning for the batch the broker did not take, and the rows left for the next drain (a notification, a reconnect, the timer)',
        saw: refusals.slice(0, 3).map((l) => `${l.level} "${l.msg}"`).join('; ') || 'no warning',
        why: 'A broker that refuses (a full queue, a length limit) will refuse again a millisecond later. Taking the same batch again at once only hammers it; a person reading the log needs one line saying events wait.',
        fix: 'End the drain when a batch was not fully confirmed (confirmed < taken), and log.warn(…) once for it.',
      });
    }
    // Raise the limit rather than remove it: a quorum queue tells the publishers it refused
    // that they may go on only when it drops below a limit it still has.
    await t.mgmt.setPolicy(t.vhost, 'refuse', { pattern: '^bridge\\.customers$', definition: { 'max-length': 1_000_000, overflow: 'reject-publish' } });
    await t.waitFor(() => new Promise<boolean>((resolve) => probe.sendToQueue(QUEUE, Buffer.from('probe'), {}, (err) => resolve(!err))), 3000, 25);
    const accepted = await insert('Accepted Again');
    t.provoke(3, `let "${QUEUE}" accept messages again, then wrote customer ${accepted} (a notification)`);
    if (!(await waitPublished([...refused, accepted], 2000))) {
      t.fail({ summary: `The customers the broker refused stayed unpublished after it accepted messages again.`, saw: `unpublished: ${(await unpublished()).join(', ')}`, why: 'A row the broker refused is like any unpublished row: the next drain must take it again.', fix: 'Do not mark nacked rows, and do not remember them as done.' });
    }
    await takeAll();

    // ---- lines 3, 4, 6: an unroutable message comes back; the relay declares the topology again ----
    await checkerStep(t, `unbind "${QUEUE}" from "${EXCHANGE}"`, async () => {
      const ch = await t.channel();
      await ch.unbindQueue(QUEUE, EXCHANGE, ROUTING_KEY);
      await ch.close();
    });
    mark = log.lines.length;
    const unroutable = await insert('Nobody Bound');
    t.provoke([3, 4, 6], `unbound "${QUEUE}" from "${EXCHANGE}" (an operator's mistake), then wrote customer ${unroutable}: its message has nowhere to go`);
    const returnedMarked = await waitPublished([unroutable], 600);
    const said = troubles(mark).find((l) => l.level === 'error' && l.msg.trim() !== '');
    const rebound = await t.waitFor(async () => (await t.mgmt.bindings(t.vhost)).some((b) => b.source === EXCHANGE && b.destination === QUEUE && b.routing_key === ROUTING_KEY), 1500, 50);
    t.observe([3, 4, 6], `customer ${unroutable} is ${returnedMarked ? '' : 'not '}marked; the relay logged ${said ? `error "${said.msg}"` : 'no error'}; "${QUEUE}" is ${rebound ? 'bound again' : 'still unbound'}`);
    if (returnedMarked) {
      t.fail({
        summary: `Customer ${unroutable} was marked published although its message could not be routed anywhere: it was lost.`,
        expected: 'the row stays unpublished while no queue is bound',
        saw: 'published_at set, no queue bound to the exchange',
        why: 'Without mandatory, the broker drops an unroutable message and still confirms it. With mandatory it returns it first (basic.return), and the relay must count a returned message as not delivered.',
        fix: "publish(…, { mandatory: true, … }) and listen to the channel's 'return' event: a returned message's row stays unpublished.",
      });
    }
    if (!said || !rebound) {
      t.fail({
        summary: !said ? 'A message came back unroutable, and the relay logged no error.' : `A message came back unroutable, and the relay did not declare the topology again: "${QUEUE}" is still not bound.`,
        expected: `an error in the log, and the binding ${EXCHANGE} → ${QUEUE} ("${ROUTING_KEY}") declared again`,
        saw: `log: ${troubles(mark).map((l) => `${l.level} "${l.msg}"`).join('; ') || 'nothing'}; bound again: ${rebound}`,
        why: 'A returned message means the topology is broken (a deleted queue, a removed binding). Declaring it again repairs it; an error in the log tells a person it happened.',
        fix: "After the confirms: if anything came back, log.error(…) and await assertTopology(ch).",
      });
    }
    const boundAgain = await insert('Bound Again');
    if (!(await waitPublished([unroutable, boundAgain], 2000))) {
      t.fail({ summary: `After the queue was bound again, customer ${unroutable} (whose message came back) was not published with the next drain.`, saw: `unpublished: ${(await unpublished()).join(', ')}`, why: 'A row whose message came back must be taken again by the next drain, like any unpublished row.', fix: 'Leave returned rows unpublished (do not mark them), and do not skip them afterwards.' });
    }

    // ---- lines 5, 6: the exchange is deleted: the broker closes the relay's channel ----
    await t.mgmt.deleteExchange(t.vhost, EXCHANGE);
    mark = log.lines.length;
    const noExchange = await insert('No Exchange');
    t.provoke([5, 6], `deleted the exchange "${EXCHANGE}", then wrote customer ${noExchange}: publishing to it makes the broker close the relay's channel (404 NOT_FOUND)`);
    const healedExchange = await waitPublished([noExchange], 4000);
    const channelError = troubles(mark).find((l) => mentions(l, /NOT_FOUND|no exchange/i));
    t.observe([5, 6], `customer ${noExchange} is ${healedExchange ? '' : 'NOT '}marked; the relay logged ${channelError ? `"${channelError.msg}"` : 'nothing about the closed channel'}`);
    if (!healedExchange || !channelError) {
      t.fail({
        summary: !healedExchange ? `After the broker closed the relay's channel (the exchange was deleted), customer ${noExchange} was not published within 4 s.${reported(log.lines.slice(mark))}` : "The broker closed the relay's channel (NOT_FOUND), and the relay logged no warning with that error.",
        expected: `a warning with the channel's error, a new connection and channel, the topology declared again, customer ${noExchange} published`,
        saw: `log: ${troubles(mark).map((l) => `${l.level} "${l.msg}"`).join('; ') || 'nothing'}`,
        why: 'A channel the broker closed stays closed; the connection under it lives on, so waiting for the connection to drop waits forever. Every publish after it fails.',
        fix: "channel.on('error', (err) => log.warn(…, { error: err.message })) and channel.on('close', () => connection.close()): the connection's 'close' handler then reconnects and declares the topology again.",
      });
    }
    await takeAll();

    // ---- lines 2, 3: a second relay: its timer, and the race for the same rows ----
    const log2 = memoryLogger('relay 2');
    let stopped2 = false;
    const relay2 = await t.call(`a second startRelay({ …, batchSize: ${BATCH}, fallbackMs: 400 })`, () => t.target.startRelay({ databaseUrl: db.url, amqpUrl: t.url, fallbackMs: 400, batchSize: BATCH, log: log2 }), { timeoutMs: 8000 });
    defer(() => (stopped2 ? undefined : relay2.stop()));
    const crowd = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name) SELECT 'Crowd ' || k FROM generate_series(1, 40) AS k RETURNING id::text`)).rows.map((r) => r.id);
    t.provoke(3, 'started a second relay, then wrote 40 customers in one statement: both relays wake up for the same rows');
    const raced = await waitPublished(crowd, 4000);
    await sleep(50); // a duplicate would be published as fast as the original
    const crowdMessages = await takeAll();
    const crowdRows = new Set((await outbox()).filter((r) => crowd.includes(r.entity_key)).map((r) => r.event_id));
    const seen = new Map<string, number>();
    for (const m of crowdMessages) seen.set(String(m.properties.messageId), (seen.get(String(m.properties.messageId)) ?? 0) + 1);
    const twice = [...seen].filter(([id, n]) => crowdRows.has(id) && n > 1).length;
    t.observe(3, `the 40 rows are ${raced ? '' : 'NOT all '}marked; "${QUEUE}" got ${crowdMessages.length} message(s), ${twice} event(s) more than once`);
    if (!raced || twice > 0 || crowdMessages.length !== 40) {
      t.fail({
        summary: twice > 0 ? `Two relays published ${twice} of the same 40 rows twice: both took the same rows.` : `With two relays running, the 40 rows ended as ${crowdMessages.length} message(s)${raced ? '' : ' and not all marked'}.`,
        expected: '40 messages, each event once',
        saw: `${crowdMessages.length} messages, ${twice} duplicated event(s); unpublished: ${(await unpublished()).slice(0, 5).join(', ') || 'none'}`,
        why: 'Several relays may run at once (a deploy starts the new one before the old one stops). Each row must be taken by one of them: FOR UPDATE locks the rows a drain took, SKIP LOCKED lets the other relay take the next ones instead of waiting.',
        fix: 'SELECT … WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED, in the transaction that marks them.',
      });
    }
    const lost = await insertSilently(1, 2000);
    t.provoke(2, `wrote an outbox row without a notification (a lost notification), the second relay's timer is 400 ms`);
    const byTimer = await waitPublished(lost, 2500);
    t.observe(2, `the row is ${byTimer ? '' : 'NOT '}marked published`);
    if (!byTimer) {
      t.fail({
        summary: `A row written without a notification was not published within 2.5 s by a relay whose fallbackMs is 400.${reported(log2.lines)}`,
        expected: 'a drain every fallbackMs',
        saw: `unpublished: ${(await unpublished()).join(', ')}`,
        why: 'Notifications get lost (a LISTEN connection that is re-established, a Postgres failover). The timer is what finds the rows nobody announced.',
        fix: 'setInterval(() => wake(), fallbackMs), cleared in stop().',
      });
    }
    const beforeStop2 = log2.lines.length;
    t.provoke(7, 'called stop() on the second relay, its connections alive');
    await t.call('the second relay.stop()', () => relay2.stop());
    stopped2 = true;
    await sleep(50); // the close events of its connections
    const afterStop2 = log2.lines.slice(beforeStop2).filter((l) => /reconnect/i.test(l.msg));
    t.observe(7, `after stop(), the second relay logged ${afterStop2.length} line(s) about lost connections or reconnecting`);
    if (afterStop2.length) {
      t.fail({
        summary: `stop() closed the second relay's connections, and then it logged "${afterStop2[0]!.msg}": it takes its own stop for a failure.`,
        expected: 'no warning about lost connections, and no reconnect, once stop() was called',
        why: 'A warning at every clean stop teaches people to ignore the warning that matters, and a reconnect after stop() keeps a relay alive that should be gone.',
        fix: "In the 'close' / 'end' handlers: if (stopping) do nothing; set stopping = true first in stop().",
      });
    }
    await takeAll();

    // ---- lines 2, 5: Postgres drops the relay's connections; a row written right then still gets out ----
    const dropped = await terminateRelayBackends();
    const notHeard = await insert('While Not Listening');
    t.provoke([2, 5], `terminated the relay's ${dropped} Postgres connection(s) (LISTEN and drain), then wrote customer ${notHeard}: its notification goes nowhere`);
    const relistened = await waitPublished([notHeard], 3000);
    t.observe([2, 5], `customer ${notHeard} is ${relistened ? '' : 'NOT '}marked published; ${await listening()} connection(s) LISTEN again`);
    const listensAgain = await listening();
    if (!relistened || listensAgain !== 1) {
      t.fail({
        summary:
          listensAgain === 0
            ? `After Postgres dropped its connections, the relay does not LISTEN on "outbox" any more${relistened ? '' : `: customer ${notHeard}, written meanwhile, was not published within 3 s`}.`
            : `After Postgres dropped its connections, the relay LISTENs again but customer ${notHeard} was not published within 3 s: its drain connection was not replaced.${reported(log.lines)}`,
        why: 'Connections die (a Postgres restart, a failover, a proxy timeout). The notification for this row went nowhere, and the timer is a minute away: only reconnecting, LISTENing again and draining at once finds it. A drain connection that is not replaced fails every drain after it.',
        fix: "On the LISTEN client's 'end' event, connect again (after 0.5 s, then longer), LISTEN, then drain; take drain connections from a pg.Pool, which replaces broken ones.",
      });
    }

    // ---- lines 3, 5, 6: a drain blocked on a lock while the broker goes away; then the broker and
    // Postgres both refuse the relay for a while ----
    const lockTx = await db.connect();
    await lockTx.query('BEGIN');
    await lockTx.query('LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE');
    const locked = await insert('Locked Row', lockTx);
    await db.sql.query(`NOTIFY outbox, '0'`);
    const blocked = await t.waitFor(async () => (await relayBackends()).some((b) => b.state === 'active' && /outbox/i.test(b.query) && b.wait_event !== null), 2000, 10);
    await permissions(false);
    const before = t.connectionsOpened();
    mark = log.lines.length;
    t.cutConnections('a network failure while a drain waits for the outbox');
    const cutAt = Date.now();
    await sleep(50); // the relay notices the closed connection
    await lockTx.query('COMMIT');
    t.provoke([3, 5], `locked the outbox, wrote customer ${locked} and woke the relay (its drain ${blocked ? 'waited' : 'may wait'} for the lock), removed its permissions on the vhost and cut its broker connection, then released the lock: the drain publishes on a closed channel`);
    await t.waitFor(async () => !(await relayBackends()).some((b) => b.state !== 'idle'), 2000, 10);
    const lockedMarkedEarly = await published([locked]);
    await allowConnections(false);
    const pgDown = Date.now();
    const killed = await terminateRelayBackends();
    const whileDown = await insert('While Everything Is Down');
    t.provoke([2, 5], `then disallowed connections to the database and terminated the relay's ${killed} Postgres connection(s), and wrote customer ${whileDown}`);
    // Both stay closed 1.3 s: a relay that waits 0.5 s, then 1 s, tries each exactly once meanwhile.
    await sleep(Math.max(0, Math.max(cutAt, pgDown) + 1300 - Date.now()));
    const brokerTries = t.connectionsOpened() - before;
    const pgTries = troubles(mark).filter((l) => mentions(l, /not currently accepting connections/)).length;
    const restoredAt = Date.now();
    await permissions(true);
    await allowConnections(true);
    t.log(`gave the permissions back and allowed connections again, ${restoredAt - cutAt} ms after the cut`);
    const brokerBack = await t.waitFor(() => (t.connectionsOpened() > before + brokerTries ? Date.now() : 0), 3000, 10);
    const pgBack = await t.waitFor(async () => ((await listening()) === 1 ? Date.now() : 0), 3000, 10);
    const back = await waitPublished([locked, whileDown], 4000);
    const afterOutage = log.lines.slice(mark);
    const reconnectLogs = afterOutage.filter((l) => l.level === 'info' && l.msg.trim() !== '');
    const when = (at: number | undefined, from: number) => (at ? `${at - from} ms after it` : 'not within 3 s');
    t.observe([3, 5, 6], `customer ${locked} ${lockedMarkedEarly ? 'WAS' : 'was not'} marked after its publish on the closed channel; in the 1.3 s both were closed, the relay tried the broker ${brokerTries} time(s) and Postgres ${pgTries} time(s); once open again, it was back on the broker ${when(brokerBack, restoredAt)} and listening ${when(pgBack, restoredAt)}; customers ${locked} and ${whileDown} ${back ? 'are' : 'are NOT'} published`);
    if (lockedMarkedEarly) {
      t.fail({
        summary: `Customer ${locked} was marked published although its message was published on a channel that had just closed: it never reached the broker.`,
        expected: 'a row stays unpublished when its publish throws or its confirm never comes',
        saw: `customer ${locked} marked, the broker connection cut before the publish`,
        why: 'A channel closes at any moment. publish() on a closed channel throws (or its callback gets an error): that row was not published, whatever the code around it assumed.',
        fix: 'try { ch.publish(…, (err) => resolve(!err && …)) } catch { resolve(false) }: a throw counts as not confirmed.',
      });
    }
    if (!back) {
      t.fail({
        summary: `After the broker and Postgres let the relay in again, customers ${locked} and ${whileDown} were not published within 4 s.${reported(afterOutage)}`,
        why: 'Connections die and come back (a restart, a failover, a revoked and restored permission). A relay that gives up after one failed try, or does not drain once it is back, publishes nothing ever again.',
        fix: "On the broker connection's 'close' event and the LISTEN client's 'end' event: try again after 0.5 s, then 1 s, 2 s… (at most 10 s) until it works, then drain.",
      });
    }
    const backOk = (at: number | undefined) => at !== undefined && at - restoredAt <= 1500;
    if (brokerTries !== 1 || pgTries !== 1 || !backOk(brokerBack) || !backOk(pgBack)) {
      t.fail({
        summary:
          brokerTries === 0 || pgTries === 0
            ? `While the ${brokerTries === 0 ? 'broker' : 'database'} refused it for 1.3 s, the relay did not try to reconnect.`
            : brokerTries > 1 || pgTries > 1
              ? `While the ${brokerTries > 1 ? 'broker' : 'database'} refused it for 1.3 s, the relay tried ${Math.max(brokerTries, pgTries)} times: it does not wait longer after each failure.`
              : `Once the ${!backOk(brokerBack) ? 'broker' : 'database'} let it in again, the relay took ${!backOk(brokerBack) ? when(brokerBack, restoredAt) : when(pgBack, restoredAt)} to come back: it waits too long between tries.`,
        expected: 'a first try 0.5 s after the connection was lost, the next one 1 s after that (then 2 s, 4 s… at most 10 s): one refused try in 1.3 s, back about 0.2 s after the door opens',
        saw: `broker: ${brokerTries} tr${brokerTries === 1 ? 'y' : 'ies'}, back ${when(brokerBack, restoredAt)}; Postgres: ${pgTries} refused tr${pgTries === 1 ? 'y' : 'ies'}, listening ${when(pgBack, restoredAt)}`,
        why: 'Retrying at once, or every few milliseconds, hammers a broker or a database that is struggling to come back; never growing the delay does the same, just slower; waiting too long leaves events waiting for nothing. Doubling the delay up to a limit is the usual compromise.',
        fix: 'for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) { await sleep(delay); if (stopping) return; try { await connect(); return } catch (err) { log.warn(…, { error: err.message }) } }',
      });
    }
    const lostLogs = {
      cut: afterOutage.find((l) => l.level !== 'info' && mentions(l, /ECONNRESET/)),
      refused: afterOutage.find((l) => l.level !== 'info' && mentions(l, /ACCESS_REFUSED|access to vhost|not allowed|ConnectionClose/i)),
      // one warning per connection Postgres terminated: the LISTEN one and the drain's
      terminated: afterOutage.filter((l) => l.level !== 'info' && mentions(l, /terminating connection/)).length >= killed,
      pgRefused: pgTries > 0,
    };
    const missing = Object.entries(lostLogs).filter(([, l]) => !l).map(([k]) => k);
    t.observe(6, `the relay logged: ${afterOutage.map((l) => `${l.level} "${l.msg}"`).slice(0, 8).join('; ')}`);
    if (missing.length || reconnectLogs.length === 0) {
      const what: Record<string, string> = { cut: 'the cut broker connection (ECONNRESET)', refused: 'the broker refusing the reconnection (ACCESS_REFUSED)', terminated: `each of the ${killed} connections Postgres terminated (the LISTEN one and the drain's)`, pgRefused: 'Postgres refusing the reconnection' };
      t.fail({
        summary: missing.length ? `The relay logged no warning with the error's message for ${what[missing[0]!]}.` : 'The relay reconnected and logged no info line saying so.',
        expected: "a warning with the error's message for each error and lost connection, and an info line once connected again",
        saw: afterOutage.map((l) => `${l.level} "${l.msg}"${l.error ? ` (${String(l.error)})` : ''}`).slice(0, 8).join('; ') || 'nothing',
        why: 'The original project\'s advice holds: keep a log, to find out later why something failed. Every error the relay swallows silently is an outage nobody can explain afterwards.',
        fix: "client.on('error', (err) => log.warn('…', { error: err.message })) on every connection and on the pool; log.warn in each failed reconnect; log.info when connected again.",
      });
    }

    // ---- lines 3, 4, 5: published(), every marked row has its message, the connection's name ----
    await takeAll();
    const final = await outbox();
    const withMessage = new Set(messages.map((m) => String(m.properties.messageId)));
    const silentlyLost = final.filter((r) => r.published && !withMessage.has(r.event_id));
    const counted = await t.call('relay.published()', () => relay.published());
    const counted2 = await t.call('the second relay.published()', () => relay2.published());
    const markedCount = final.filter((r) => r.published).length;
    t.observe([3, 4], `published() says ${counted} + ${counted2}; ${markedCount} rows are marked; ${silentlyLost.length} marked row(s) without a message`);
    if (silentlyLost.length) {
      t.fail({
        summary: `${silentlyLost.length} row(s) are marked published but no message ever reached "${QUEUE}" for them: customer ${silentlyLost.map((r) => r.entity_key).join(', ')}.`,
        expected: 'every row marked published has its message in the queue',
        why: 'Marking a row is a promise that the broker has its message; a row marked without one is an event lost for good.',
        fix: 'Mark only the rows whose publish the broker confirmed (and did not return).',
      });
    }
    const mute = [...log.lines, ...log2.lines].find((l) => l.msg.trim() === '');
    t.observe(6, `${log.lines.length + log2.lines.length} log line(s), ${mute ? 'some' : 'none'} without a message`);
    if (mute) {
      t.fail({ summary: `The relay logged a ${mute.level} line without a message (${JSON.stringify(mute)}).`, why: 'A log line says what happened in words; fields alone (or nothing) tell a person reading the log at 3 a.m. nothing.', fix: "log.warn('lost the broker; reconnecting'), log.info('connected to the broker')…" });
    }
    t.observe(3, `${leaks.length} warning(s) about listeners piling up`);
    if (leaks.length) {
      t.fail({
        summary: `Listeners pile up on the relay's channel: ${leaks[0]}`,
        expected: "the 'return' listener of a drain removed when the drain ends",
        why: 'A listener added for every drain and never removed is a leak: after a day of drains the channel holds hundreds of thousands, each called for every returned message.',
        fix: "ch.on('return', onReturn) before publishing, and ch.off('return', onReturn) in a finally block.",
      });
    }
    if (counted + counted2 !== markedCount) {
      t.fail({ summary: `published() of the two relays adds up to ${counted + counted2}, but ${markedCount} rows are marked published.`, expected: `${markedCount}`, why: 'The bridge reports its progress from published(): it must count the rows marked, no more (a nacked, returned or rolled-back row is not published) and no less.', fix: 'After each COMMIT: published += the number of confirmed rows marked.' });
    }
    const names = announced();
    if (names.length === 0 || names.some((n) => n !== 'bridge relay')) {
      t.fail({
        summary: names.length ? `The relay's broker connection is named ${names.map((n) => JSON.stringify(n)).join(', ')} instead of "bridge relay".` : `The relay's broker connection has no name (no connection_name): the management UI shows "127.0.0.1:port -> …".`,
        expected: "connect(amqpUrl, 'bridge relay', log) (13.2)",
        saw: names.join(', '),
        why: 'With relays and receivers connected, the name is how an operator tells them apart in the management UI.',
        fix: "const conn = await connect(amqpUrl, 'bridge relay', log);",
        link: t.ui('connections'),
      });
    }
    t.observe(5, `the relay's connections announced the connection_name ${[...new Set(names)].map((n) => JSON.stringify(n)).join(', ')}`);

    // ---- line 7: stop() while both connections are down ----
    t.cutConnections('a network failure just before stop()');
    await terminateRelayBackends();
    await sleep(100); // the relay notices both, and waits to reconnect
    mark = log.lines.length;
    const opened = t.connectionsOpened();
    t.provoke(7, "cut the broker connection and terminated the relay's Postgres connections, then called relay.stop() while it waited to reconnect");
    const stopError = await rejection(() => Promise.resolve(relay.stop()), 5000);
    stopped = true;
    if (stopError) t.fail({ summary: `relay.stop() ${stopError === 'timeout' ? 'did not return within 5 s' : `threw while its connections were down: ${stopError.message}`}.`, fix: 'stop(): clear the timer, wait for the drain in progress, end the LISTEN client if there is one (listener?.end()), end the pool, close the broker connection if there is one.' });
    await sleep(700); // a reconnect would come after 0.5 s
    await t.expectConnectionsClosed('relay.stop()');
    const afterStop = log.lines.slice(mark).filter((l) => /reconnect/i.test(l.msg));
    const pgLeft = await relayBackends();
    t.observe(7, `after stop(): ${t.connectionsOpened() - opened} new broker connection(s), ${pgLeft.length} Postgres connection(s), ${afterStop.length} line(s) about reconnecting`);
    if (t.connectionsOpened() !== opened || pgLeft.length || afterStop.length) {
      t.fail({
        summary: t.connectionsOpened() !== opened || pgLeft.length ? 'After stop(), the relay connected again.' : `stop() returned, and then the relay logged "${afterStop[0]!.msg}".`,
        expected: 'nothing reconnecting, and nothing about reconnecting, once stop() was called',
        saw: `${t.connectionsOpened() - opened} broker connection(s) opened, ${pgLeft.length} Postgres connection(s) open`,
        why: 'A stopped relay that reconnects by itself keeps publishing next to the one that replaced it, and never lets the process exit.',
        fix: 'Set stopping = true first in stop(); every reconnect loop and close handler checks it.',
      });
    }

    // ---- line 8: a broker that takes the messages and never confirms them ----
    const LIMIT = 400;
    const proxy = await tcpProxy(defer, t.url);
    const log3 = memoryLogger('relay 3');
    const timersBefore = pendingTimers();
    let stopped3 = false;
    const relay3 = await t.call(
      `a third startRelay({ databaseUrl, amqpUrl: <a TCP proxy in front of the broker>, batchSize: ${BATCH}, fallbackMs: 60000, confirmTimeoutMs: ${LIMIT}, log })`,
      () => t.target.startRelay({ databaseUrl: db.url, amqpUrl: proxy.url, fallbackMs: 60_000, batchSize: BATCH, confirmTimeoutMs: LIMIT, log: log3 }),
      { timeoutMs: 8000 },
    );
    defer(() => (stopped3 ? undefined : relay3.stop()));
    defer(() => proxy.resetFrozen()); // first: a stop() that waits for a frozen connection would wait for ever
    const inTransaction = async () => (await relayBackends()).filter((b) => b.state.startsWith('idle in transaction')).length;
    await t.waitFor(async () => (await relayBackends()).every((b) => b.state === 'idle'), 2000, 10); // its drain at start is over
    const frozen = proxy.freeze();
    const openedBefore = proxy.opened();
    const stuck = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name) SELECT 'Unconfirmed ' || k FROM generate_series(1, 3) AS k RETURNING id::text`)).rows.map((r) => r.id);
    t.provoke(8, `started a third relay whose broker connection goes through a TCP proxy, froze that connection (${frozen} frozen: nothing reaches the broker any more, no confirm comes back, the broker itself is fine), then wrote customers ${stuck.join(', ')}`);
    const took = await t.waitFor(async () => ((await inTransaction()) > 0 ? Date.now() : 0), 2000, 10);
    const released = took ? await t.waitFor(async () => ((await inTransaction()) === 0 ? Date.now() : 0), LIMIT * 5, 10) : undefined;
    // The rows must be free now: a lock another transaction holds makes NOWAIT fail at once.
    const nowait = await db.connect();
    await nowait.query('BEGIN');
    const lockError = await nowait.query('SELECT id FROM outbox WHERE entity_key = ANY($1) FOR UPDATE NOWAIT', [stuck]).then(
      () => undefined,
      (err: Error) => err.message,
    );
    await nowait.query('ROLLBACK');
    const markedEarly = (await outbox()).filter((r) => stuck.includes(r.entity_key) && r.published).map((r) => r.entity_key);
    const held = took && released ? `${released - took} ms` : took ? `more than ${LIMIT * 5} ms (still open)` : 'never (no drain took them)';
    t.observe(8, `the drain held its transaction (and the rows' locks) for ${held}; SELECT … FOR UPDATE NOWAIT ${lockError ? `failed: ${lockError}` : 'got the rows'}; ${markedEarly.length ? `customers ${markedEarly.join(', ')} WERE marked published` : 'none of them marked published'}`);
    if (!took) {
      t.fail({
        summary: `The third relay never took customers ${stuck.join(', ')} in a drain (no transaction of the relay was open after their notification).${reported(log3.lines)}`,
        expected: 'a drain taking the rows FOR UPDATE SKIP LOCKED, publishing, and waiting for the confirms',
        fix: 'A drain on every notification: BEGIN, SELECT … FOR UPDATE SKIP LOCKED, publish, wait for the confirms (at most confirmTimeoutMs), mark, COMMIT.',
      });
    }
    // Its drain ended in time, and a new one took the rows again at once, on the same connection.
    const retookAtOnce = !!released && !!lockError && proxy.opened() === openedBefore;
    if (!released || (lockError && !retookAtOnce)) {
      t.fail({
        summary: `The broker never confirmed (its connection was frozen), and the relay kept its transaction open, and the rows of customers ${stuck.join(', ')} locked, for ${held}: confirmTimeoutMs is ${LIMIT}.`,
        expected: `the wait for the confirms given up after ${LIMIT} ms: ROLLBACK, the rows unpublished and unlocked`,
        saw: lockError ? `SELECT … FOR UPDATE NOWAIT on those rows: ${lockError}` : `a connection of the relay still "idle in transaction" after ${LIMIT * 5} ms`,
        why: 'A broker under a memory or disk alarm takes messages and confirms nothing until the alarm clears; a connection can die without a word. A drain that waits for ever keeps its transaction open: the rows stay locked, nothing else drains, and Postgres cannot clean up behind a transaction that never ends.',
        fix: 'Wait for the confirms with Promise.race() against a timer that rejects after confirmTimeoutMs; on time-out, drop the broker connection (dropBroker()) and throw, so that drainBatch() rolls back.',
      });
    }
    const timeoutNote = log3.lines.find((l) => l.level !== 'info' && /confirm|time|\b400\b/i.test(`${l.msg} ${String(l.error ?? '')}`));
    t.observe([6, 8], timeoutNote ? `the relay logged ${timeoutNote.level} "${timeoutNote.msg}"${timeoutNote.error ? ` (${String(timeoutNote.error)})` : ''}` : `the relay logged nothing about the time-out${log3.lines.length ? `: ${log3.lines.map((l) => `${l.level} "${l.msg}"`).join('; ')}` : ''}`);
    if (released && !lockError && !timeoutNote) {
      t.fail({
        summary: 'The wait for the confirms timed out, and the relay logged no warning saying so.',
        expected: "a warning with the error's message: no confirm within confirmTimeoutMs",
        saw: log3.lines.map((l) => `${l.level} "${l.msg}"${l.error ? ` (${String(l.error)})` : ''}`).join('; ') || 'nothing',
        why: 'A broker that stops confirming is an outage someone must look at (an alarm, a dying node). Rows that wait in the outbox, silently, look like a relay with nothing to do.',
        fix: "Throw an error that says what happened (new Error(`the broker did not confirm this batch within ${confirmTimeoutMs} ms`)); the drain's catch logs it with log.warn(…, { error: err.message }).",
      });
    }
    if (markedEarly.length) {
      t.fail({
        summary: `After the wait for the confirms timed out, customers ${markedEarly.join(', ')} were marked published, although the broker confirmed none of them: they never reached it.`,
        expected: 'the rows unpublished after a time-out: ROLLBACK, not COMMIT',
        why: 'A time-out is no confirm. The messages may have reached the broker or may be lost with the connection; only publishing them again (a duplicate at worst, which the receiver makes harmless) keeps every row.',
        fix: 'On time-out, throw: drainBatch() catches it, rolls back, and leaves the rows to the next drain.',
      });
    }
    if (retookAtOnce) {
      t.fail({
        summary: `After the wait for the confirms timed out (its transaction ended after ${held}), the relay took customers ${stuck.join(', ')} again at once, without a new broker connection: it keeps using the connection that stopped answering.${reported(log3.lines)}`,
        expected: 'the broker connection dropped on time-out, and a new one 0.5 s later; the rows unlocked meanwhile',
        saw: `SELECT … FOR UPDATE NOWAIT on those rows: ${lockError}; no new connection through the proxy`,
        why: 'A connection whose broker confirms nothing is of no more use: every drain on it times out again, holding the rows\' locks each time.',
        fix: 'On time-out: dropBroker() forgets the connection, closes it without waiting, and reconnects; the reconnect drains.',
      });
    }
    const meanwhile = await insert('While Reconnecting');
    t.provoke(8, `wrote customer ${meanwhile} right after the time-out, the broker connection still frozen`);
    const republished = await waitPublished([...stuck, meanwhile], 4000);
    const reconnects = proxy.opened() - openedBefore;
    t.observe(8, `without unfreezing, customers ${[...stuck, meanwhile].join(', ')} are ${republished ? '' : 'NOT '}marked published; the relay opened ${reconnects} new connection(s) through the proxy`);
    if (!republished) {
      t.fail({
        summary: `After the time-out, the relay did not publish customers ${[...stuck, meanwhile].join(', ')} within 4 s: it keeps using the connection that stopped answering.${reported(log3.lines)}`,
        expected: 'a new broker connection (0.5 s after the time-out), then a drain that publishes all 4 rows',
        saw: `${reconnects} new connection(s); unpublished: ${(await unpublished()).join(', ') || 'none'}`,
        why: 'A connection whose broker confirms nothing is of no more use: every drain on it times out again. A new one works as soon as the broker does (at once here: only that connection was frozen).',
        fix: 'On time-out: dropBroker() forgets the connection, closes it without waiting, and reconnects; the reconnect drains.',
      });
    }
    const ended = proxy.resetFrozen();
    t.provoke(8, `ended the ${ended} frozen connection(s) abruptly (what they held never reaches the broker)`);
    const notice = await t.waitFor(() => log3.lines.some((l) => l.level !== 'info' && /ECONNRESET|Unexpected close/i.test(JSON.stringify(l))), 1500, 10);
    const after8 = await takeReady(t, QUEUE, 1000);
    const wanted = await outbox();
    const copies = (key: string) => after8.filter((m) => m.properties.messageId === wanted.find((r) => r.entity_key === key)?.event_id).length;
    const counts = [...stuck, meanwhile].map((k) => `customer ${k}: ${copies(k)}`);
    t.observe(8, `"${QUEUE}" holds ${counts.join(', ')} message(s); the relay ${notice ? 'noticed' : 'did not log'} the end of the frozen connection`);
    if ([...stuck, meanwhile].some((k) => copies(k) !== 1)) {
      t.fail({
        summary: `After the time-out and the reconnection, "${QUEUE}" does not hold one message per row: ${counts.join(', ')}.`,
        expected: 'each of the 4 rows published once, through the new connection',
        why: 'Every row the relay marks must have its message in the queue, once per drain that published it.',
        fix: 'Mark only what the broker confirmed; after a time-out, publish the rows again on a new connection.',
      });
    }
    t.provoke(7, 'called stop() on the third relay');
    const stop3 = await rejection(() => Promise.resolve(relay3.stop()), 5000);
    stopped3 = true;
    const timersLeft = pendingTimers() - timersBefore;
    if (stop3) t.fail({ summary: `The third relay's stop() ${stop3 === 'timeout' ? 'did not return within 5 s' : `threw: ${stop3.message}`}.`, fix: 'stop(): clear the timer, wait for the drain in progress, end the LISTEN client, end the pool, close the broker connection if there is one.' });
    await t.expectConnectionsClosed('the third relay.stop(), after its frozen connection ended');
    t.observe(7, `after stop(), the third relay has no connection to the broker left open, and ${timersLeft > 0 ? timersLeft : 'no'} timer(s) of its own still running`);
    if (timersLeft > 0) {
      t.fail({
        summary: `After stop(), the relay left ${timersLeft} timer(s) running: the process cannot exit until they fire.`,
        expected: 'no timer left once stop() returned',
        why: `A time limit's timer (confirmTimeoutMs, 30 s by default) or a reconnect delay that nobody clears keeps Node running after everything was closed: a deploy waits for it, or kills the process.`,
        fix: 'clearTimeout() the time limit in a finally block once the confirms (or the time-out) came; clearInterval() the fallback timer in stop().',
      });
    }
  }),
);

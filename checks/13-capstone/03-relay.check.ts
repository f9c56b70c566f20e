// Check 13.3: the relay publishes what was written before it started, what commits out of
// id order, and nothing the broker refused (the checker makes the queue refuse messages);
// every message is persistent with messageId = the event id; it survives its LISTEN
// connection being killed and its broker connection being cut; stop() closes everything.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/03-relay.js';
import { memoryLogger, type LogLine } from '../../capstone/log.js';
import { freshDatabase, withResources } from './support.js';

const QUEUE = 'bridge.customers';

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer, 'reference');
    const log = memoryLogger('relay');
    const insert = async (name: string, client = db.sql) =>
      (await client.query<{ id: string }>('INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id::text', [name, `${name.replace(/\W+/g, '.').toLowerCase()}@example.com`])).rows[0]!.id;
    const outbox = async () =>
      (await db.sql.query<{ id: string; event_id: string; entity_key: string; published: boolean }>('SELECT id::text, event_id::text, entity_key, published_at IS NOT NULL AS published FROM outbox ORDER BY id')).rows;
    const count = () => t.messageCount(QUEUE).catch(() => 0);
    const reported = (lines: LogLine[]) => {
      const bad = lines.find((l) => /TODO|error|fail/i.test(`${l.msg} ${String(l.error ?? '')}`));
      return bad ? ` Your relay logged: "${bad.msg}${bad.error ? `: ${String(bad.error)}` : ''}".` : '';
    };

    // 1. Customers written while no relay runs, and a transaction left open.
    const early = [await insert('Early One'), await insert('Early Two'), await insert('Early Three')];
    t.log(`wrote customers ${early.join(', ')} while no relay was running`);
    const slow = await db.connect();
    await slow.query('BEGIN');
    const slowKey = await insert('Slow Transaction', slow);
    t.log(`inserted customer ${slowKey} in a transaction left open: its outbox id is taken, not committed`);

    let stopped = false;
    const relay = await t.call(
      'startRelay({ databaseUrl, amqpUrl, fallbackMs: 300, log })',
      () => t.target.startRelay({ databaseUrl: db.url, amqpUrl: t.url, fallbackMs: 300, batchSize: 100, log }),
      { timeoutMs: 8000 },
    );
    defer(() => (stopped ? undefined : relay.stop()));

    if (!(await t.waitFor(async () => (await count()) >= 3, 3000, 50))) {
      t.fail({
        summary: `The 3 customers written before the relay started were never published (${await count()} message(s) in "${QUEUE}").${reported(log.lines)}`,
        expected: `3 messages in "${QUEUE}" soon after startRelay()`,
        why: 'NOTIFY only reaches a connection that is listening at that moment. What was committed while the relay was down is only in the outbox: the relay must drain it when it starts, after every reconnect, and on a timer.',
        fix: 'Drain once right after LISTEN (and after connecting to the broker), and every fallbackMs, not only on notifications.',
        link: t.ui('queues', QUEUE),
      });
    }

    // 2. A later customer commits first; then the open transaction commits.
    const later = await insert('Committed First');
    t.log(`customer ${later} committed (its outbox id is higher than ${slowKey}'s)`);
    await t.waitFor(async () => (await count()) >= 4, 3000, 50);
    await slow.query('COMMIT');
    t.log(`the transaction of customer ${slowKey} committed, after customer ${later}`);
    if (!(await t.waitFor(async () => (await count()) >= 5, 3000, 50))) {
      const rows = await outbox();
      const missing = rows.filter((r) => !r.published).map((r) => `customer ${r.entity_key} (outbox id ${r.id})`);
      t.fail({
        summary: `Customer ${slowKey} committed after customer ${later} and was never published.`,
        expected: '5 messages: every committed outbox row',
        saw: `${await count()} message(s); unpublished: ${missing.join(', ') || 'none'}`,
        why: 'Sequence values are handed out when a row is inserted, not when it commits. A relay that asks for "id > the last id I published" skips every row that commits late: lost for good.',
        fix: 'Select WHERE published_at IS NULL (FOR UPDATE SKIP LOCKED), and mark what you published.',
      });
    }

    // 3. What the messages look like; every row marked.
    const rows = await outbox();
    const messages = await t.takeMessages(QUEUE);
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const m of messages) {
      const row = byId.get(String(m.properties.messageId));
      if (!row) {
        return t.fail({
          summary: `A message has messageId ${JSON.stringify(m.properties.messageId)}, which is no outbox event id.`,
          expected: 'messageId = outbox.event_id',
          why: 'The event id travels with the message, so anyone downstream can recognise a duplicate.',
          fix: 'publish(…, { messageId: row.event_id, … })',
        });
      }
      if (m.properties.deliveryMode !== 2) {
        t.fail({ summary: `The message for customer ${row.entity_key} is not persistent.`, why: 'A transient message is lost when the broker restarts, after the row was marked published.', fix: 'publish(…, { persistent: true, … })' });
      }
      let body: { key?: unknown; version?: unknown; data?: { name?: unknown } } = {};
      try {
        body = JSON.parse(m.content.toString('utf8'));
      } catch {
        return t.fail({ summary: 'A message body is not JSON.', fix: 'Buffer.from(JSON.stringify(event))' });
      }
      if (body.key !== row.entity_key || typeof body.version !== 'number' || !body.data) {
        t.fail({ summary: 'A message body is not a CustomerEvent.', expected: `{ eventId, entity, key: '${row.entity_key}', version, data: {…}, committedAt }`, saw: m.content.toString('utf8').slice(0, 160), fix: 'Build the CustomerEvent from the outbox row.' });
      }
    }
    if (!(await t.waitFor(async () => (await outbox()).every((r) => r.published), 1500, 50))) {
      t.fail({ summary: 'Rows whose messages the broker confirmed are still not marked published: they will be sent again and again.', fix: 'UPDATE outbox SET published_at = now() WHERE id = ANY(the confirmed ids), then COMMIT.' });
    }

    // 4. The broker refuses messages: a length limit with reject-publish on the queue.
    await t.publish(QUEUE, ['filler']);
    await t.mgmt.setPolicy(t.vhost, 'refuse', { pattern: '^bridge\\.customers$', definition: { 'max-length': 0, overflow: 'reject-publish' } });
    const probe = await t.confirmChannel();
    const refusing = await t.waitFor(
      () => new Promise<boolean>((resolve) => probe.sendToQueue(QUEUE, Buffer.from('probe'), {}, (err) => resolve(!!err))),
      3000,
      50,
    );
    if (!refusing) throw new Error('the length-limit policy did not take effect within 3 s');
    t.log(`made "${QUEUE}" refuse new messages (max-length 0, overflow reject-publish): the broker nacks them`);
    const refused = await insert('Refused By Broker');
    t.log(`wrote customer ${refused}`);
    const marked = await t.waitFor(async () => (await outbox()).find((r) => r.entity_key === refused)?.published, 900, 50);
    if (marked) {
      t.fail({
        summary: `Customer ${refused} was marked published although the broker refused (nacked) its message: it was lost.`,
        expected: 'the row stays unpublished until the broker confirms a message for it',
        saw: `published_at set, "${QUEUE}" refusing every message`,
        why: 'Marking a row published is a promise that the broker has it. Only a confirm (ack) keeps that promise; a nack, a returned message or a closed channel means: try again.',
        fix: 'Publish on a confirm channel, wait for each message\'s confirm, and UPDATE only the ids that were acked.',
        link: t.ui('queues', QUEUE),
      });
    }
    // Raise the limit before draining the queue: a quorum queue tells the channels it
    // refused that they may publish again only when it drops below a limit it still has.
    await t.mgmt.setPolicy(t.vhost, 'refuse', { pattern: '^bridge\\.customers$', definition: { 'max-length': 1_000_000, overflow: 'reject-publish' } });
    await t.waitFor(async () => (await t.mgmt.queue(t.vhost, QUEUE))?.effective_policy_definition?.['max-length'] === 1_000_000, 3000, 50);
    await t.takeMessages(QUEUE);
    await t.mgmt.deletePolicy(t.vhost, 'refuse');
    t.log('the queue accepts messages again');
    if (!(await t.waitFor(async () => (await outbox()).find((r) => r.entity_key === refused)?.published, 3000, 50))) {
      t.fail({ summary: `Customer ${refused} stayed unpublished after the broker accepted messages again.`, why: 'The fallback drain must try again.', fix: 'Drain every fallbackMs (setInterval), and do not give up on rows that were nacked.' });
    }

    // 5. Postgres kills the LISTEN connection; a row written right then still gets out.
    const killed = await db.sql.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()`);
    t.log(`terminated your LISTEN connection (${killed.rowCount} backend)`);
    const afterKill = await insert('While Not Listening');
    if (!(await t.waitFor(async () => (await outbox()).find((r) => r.entity_key === afterKill)?.published, 4000, 50))) {
      t.fail({
        summary: `Customer ${afterKill}, written while the relay's LISTEN connection was down, was not published within 4 s.`,
        why: 'Connections die (a Postgres restart, a failover, a proxy timeout). The notification for this row went nowhere; only a drain after reconnecting, or the fallback timer, finds it.',
        fix: 'Reconnect and LISTEN again when the connection ends, then drain; keep the fallback timer running.',
      });
    }

    // 6. The broker connection is cut like a network failure.
    t.cutConnections('a network failure between the relay and the broker');
    const afterCut = await insert('After Network Failure');
    if (!(await t.waitFor(async () => (await outbox()).find((r) => r.entity_key === afterCut)?.published, 6000, 100))) {
      t.fail({
        summary: `After the checker cut the relay's broker connection, customer ${afterCut} was not published within 6 s.${reported(log.lines)}`,
        why: 'amqplib does not reconnect by itself. A relay that does not either, publishes nothing ever again.',
        fix: "On the connection's 'close' event, connect again (with a growing delay) and drain.",
      });
    }

    // 7. stop()
    await t.call('relay.stop()', () => relay.stop());
    stopped = true;
    await t.expectConnectionsClosed('relay.stop()');
    const left = await t.waitFor(
      async () => (await db.sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name = ''`)).rows[0].n <= 1,
      1500,
      50,
    );
    if (!left) t.fail({ summary: 'relay.stop() returned but left Postgres connections open.', fix: 'End the LISTEN client and the pool (pool.end()) in stop().' });
  }),
);

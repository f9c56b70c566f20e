// Check 7.6: in a database of its own, the worker gets a good order, a poison order (handle()
// rejects it), a body that is not JSON, and a poison order sent through another exchange; the
// three bad ones must be parked with their reason and where they were sent. Then, through the
// operator's API: list them; an edit with a body that is not JSON (refused, nothing changes); a
// good edit; a replay the broker cannot route (refused, still parked); a replay to an exchange
// that no longer exists (refused, still parked); two operators replaying the same message at
// once (delivered once, to the original exchange, with its properties); cancels; every action
// read back from parking_audit. A queue of the checker's, bound beside the worker's, shows what
// a replay publishes.
import type { GetMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import { connectionMark, consumes, connectionsSince } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/07-dead-letters/06-park-and-replay.js';
import { freshDatabase, pause, withResources } from './support.js';

const EXCHANGE = 'shop';
const QUEUE = 'orders';
const KEY = 'order.placed';
const LEGACY = 'shop.legacy';
const TAP = 'checker.tap';
const TRACE = 'check-7.6';

interface Row {
  id: string;
  exchange: string;
  routing_key: string;
  properties: { messageId?: string; headers?: Record<string, unknown> };
  body: string;
  reason: string;
}
interface AuditRow {
  parked_id: string;
  action: string;
  operator: string;
  detail: Record<string, unknown> | null;
  at: Date | null;
}

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer);
    const orders: { id?: string; qty?: number }[] = [];
    const handle = async (order: unknown) => {
      const o = order as { id?: string; qty?: number };
      if (!(typeof o?.qty === 'number' && o.qty > 0)) throw new Error(`qty must be a positive number, got ${JSON.stringify(o?.qty)}`);
      orders.push(o);
    };
    const got = (id: string) => orders.filter((o) => o.id === id).length;
    const rows = async () => (await db.sql.query<Row>('SELECT id::text, exchange, routing_key, properties, body, reason FROM parked_messages ORDER BY id')).rows;
    const auditRows = async () => (await db.sql.query<AuditRow>('SELECT parked_id::text, action, operator, detail, at FROM parking_audit ORDER BY id')).rows;
    const rowOf = async (messageId: string) => (await rows()).find((r) => r.properties?.messageId === messageId);
    const publish = async (exchange: string, messages: [messageId: string, body: string][]) => {
      const ch = await t.confirmChannel();
      for (const [messageId, body] of messages) ch.publish(exchange, KEY, Buffer.from(body), { persistent: true, contentType: 'application/json', messageId, headers: { 'x-trace': TRACE } });
      await ch.waitForConfirms();
      await ch.close();
    };
    const broker = async <R>(fn: (ch: import('amqplib').Channel) => Promise<R>): Promise<R> => {
      const ch = await t.channel();
      try {
        return await fn(ch);
      } finally {
        await ch.close().catch(() => undefined);
      }
    };
    /** An operator call: what it resolved or rejected with. */
    const attempt = async (label: string, fn: () => Promise<unknown>) =>
      t.call(label, async (): Promise<{ error?: Error }> => {
        try {
          await fn();
          return {};
        } catch (err) {
          return { error: err instanceof Error ? err : new Error(String(err)) };
        }
      }, { timeoutMs: 5000 });

    // ---- line 1: the worker ----
    t.provoke(1, 'started the worker on a fresh database, then published order o1 (a good one) to "shop" with "order.placed"');
    const worker = await t.call('startWorker({ amqpUrl, databaseUrl, handle })', () => t.target.startWorker({ amqpUrl: t.url, databaseUrl: db.url, handle }), { timeoutMs: 8000 });
    const tables = (await db.sql.query<{ t: string | null; a: string | null }>("SELECT to_regclass('parked_messages')::text AS t, to_regclass('parking_audit')::text AS a")).rows[0]!;
    if (!tables.t || !tables.a) {
      t.fail({
        summary: `After startWorker(), the table ${tables.t ? 'parking_audit' : 'parked_messages'} does not exist.`,
        expected: 'parked_messages and parking_audit, created by await pool.query(SCHEMA)',
        why: 'The worker parks into parked_messages and the parking writes parking_audit: both must exist before the first message fails.',
        fix: 'At the start of startWorker() and of openParking(): await pool.query(SCHEMA) (given; CREATE TABLE IF NOT EXISTS, so running it twice is harmless).',
      });
    }
    const ex = await t.mgmt.request<{ type: string; durable: boolean }>('GET', `/exchanges/${encodeURIComponent(t.vhost)}/${EXCHANGE}`);
    t.observe(1, `"${EXCHANGE}": ${ex ? `${ex.durable ? 'durable' : 'not durable'} ${ex.type} exchange` : 'missing'}`);
    if (!ex || ex.type !== 'direct' || !ex.durable) {
      t.fail({
        summary: ex ? `"${EXCHANGE}" is a ${ex.durable ? '' : 'non-durable '}${ex.type} exchange, not a durable direct one.` : `There is no exchange "${EXCHANGE}".`,
        expected: `assertExchange('${EXCHANGE}', 'direct', { durable: true })`,
        why: 'An exchange that is not durable is gone after a broker restart, and with it every route to the queue: publishers get their messages refused (or silently dropped).',
        fix: `await channel.assertExchange('${EXCHANGE}', 'direct', { durable: true })`,
        link: t.ui('exchanges', EXCHANGE),
      });
    }
    const q = await t.queue(QUEUE, { fix: `assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } }), then bindQueue('${QUEUE}', '${EXCHANGE}', '${KEY}')` });
    const bound = (await t.mgmt.request<{ source: string; routing_key: string }[]>('GET', `/queues/${encodeURIComponent(t.vhost)}/${QUEUE}/bindings`)) ?? [];
    const consume = consumes(connectionsSince()).find((c) => c.consume.queue === QUEUE);
    t.observe(1, `"${QUEUE}": ${q.arguments?.['x-queue-type'] ?? 'classic'}, bound from ${bound.filter((b) => b.source).map((b) => `"${b.source}" with "${b.routing_key}"`).join(', ') || 'nothing'}; consumer: ${consume ? `${consume.consume.noAck ? 'automatic' : 'manual'} acks, prefetch ${consume.prefetch ?? 'none'}` : 'none'}`);
    if (!q.durable || q.arguments?.['x-queue-type'] !== 'quorum' || !bound.some((b) => b.source === EXCHANGE && b.routing_key === KEY) || !consume || consume.consume.noAck || consume.prefetch !== 10) {
      t.fail({
        summary: `The worker's topology or consumer is not as the contract says.`,
        expected: `"${QUEUE}" a durable quorum queue bound to "${EXCHANGE}" (direct) with "${KEY}", consumed with manual acks and a prefetch of 10`,
        saw: `durable ${q.durable}, ${q.arguments?.['x-queue-type'] ?? 'classic'}; bindings: ${bound.map((b) => `${b.source || '(default)'}/${b.routing_key}`).join(', ')}; consumer: ${consume ? `noAck ${consume.consume.noAck}, prefetch ${consume.prefetch}` : 'none'}`,
        why: 'Parking only protects messages the broker kept: a durable queue, and acks sent after the work (or the parking) is done.',
        fix: `assertExchange('${EXCHANGE}', 'direct', { durable: true }); assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } }); bindQueue('${QUEUE}', '${EXCHANGE}', '${KEY}'); prefetch(10); consume(…, { noAck: false }).`,
        link: t.ui('queues', QUEUE),
      });
    }
    // Deleting o2's row takes a moment: a second replay that does not wait for the row's lock has time to publish too.
    await db.sql.query(`CREATE FUNCTION checker_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF OLD.properties->>'messageId' = 'o2' THEN PERFORM pg_sleep(0.3); END IF; RETURN OLD; END $$;
      CREATE TRIGGER checker_slow_delete BEFORE DELETE ON parked_messages FOR EACH ROW EXECUTE FUNCTION checker_slow_delete();`).catch(() => undefined);
    await broker(async (ch) => {
      await ch.assertQueue(TAP, { durable: false });
      await ch.bindQueue(TAP, EXCHANGE, KEY);
      await ch.assertExchange(LEGACY, 'direct', { durable: true });
      await ch.bindQueue(QUEUE, LEGACY, KEY);
    });
    await publish(EXCHANGE, [['o1', JSON.stringify({ id: 'o1', sku: 'X', qty: 2 })]]);
    await t.waitFor(() => got('o1') > 0, 2000, 10);
    t.observe(1, `handle() got o1 ${got('o1')} time(s)`);
    if (got('o1') !== 1) t.fail({ summary: `handle() got the good order o1 ${got('o1')} time(s), not once.`, fix: 'consume(QUEUE, …): JSON.parse(msg.content.toString()), await handle(order), then ack.' });

    // ---- line 2: bad messages are parked with their reason ----
    const bad: [string, string][] = [
      ['o2', JSON.stringify({ id: 'o2', sku: 'Y', qty: 0 })],
      ['o3', '{"id": "o3", "sku": "Z", qty: 1'],
    ];
    await publish(EXCHANGE, bad);
    await publish(LEGACY, [['o4', JSON.stringify({ id: 'o4', sku: 'W', qty: -1 })]]);
    t.provoke(2, 'published o2 (handle() rejects it: qty 0), o3 (not JSON) to "shop", and o4 (qty -1) to "shop.legacy"');
    await t.waitFor(async () => (await rows()).length >= 3, 3000, 25);
    await pause(100);
    const parked = await rows();
    const [p2, p3, p4] = ['o2', 'o3', 'o4'].map((id) => parked.find((r) => r.properties?.messageId === id));
    const requeued = t.sent('basic.reject', 'basic.nack').filter((m) => m.requeue).length;
    t.observe(2, `parked_messages: ${parked.map((r) => `#${r.id} ${r.properties?.messageId ?? '(no messageId)'} from "${r.exchange}"/"${r.routing_key}", reason "${r.reason}"`).join('; ') || 'empty'}; ${requeued} message(s) given back to the queue`);
    if (requeued > 0 || got('o2') + got('o4') > 0) {
      t.fail({
        summary: `A poison message was given back to the queue ${requeued} time(s) instead of being parked.`,
        expected: 'o2, o3 and o4 parked once each, and acked',
        why: 'A message that fails for what it contains fails again every time: requeued, it comes back at once, in a loop, and the queue behind it waits.',
        fix: 'In the catch: INSERT INTO parked_messages (…) VALUES (…), then ack. No reject, no nack.',
      });
    }
    if (parked.length !== 3 || !p2 || !p3 || !p4) {
      return t.fail({
        summary: `parked_messages holds ${parked.length} row(s), ${[p2 ? '' : 'not o2', p3 ? '' : 'not o3 (not JSON)', p4 ? '' : 'not o4'].filter(Boolean).join(', ') || 'not one per bad message'}.`,
        expected: 'three rows: o2, o3, o4, each with its properties (messageId included)',
        saw: parked.map((r) => `#${r.id} messageId ${JSON.stringify(r.properties?.messageId)}`).join('; ') || 'no rows',
        why: 'A message that failed must be kept with everything needed to send it again: its body, its properties (the messageId, the headers) and where it was sent.',
        fix: "INSERT INTO parked_messages (exchange, routing_key, properties, body, reason) VALUES (msg.fields.exchange, msg.fields.routingKey, msg.properties, msg.content.toString(), err.message), for a JSON.parse error as for a handle() error.",
      });
    }
    const parkProblems = [
      p2.exchange !== EXCHANGE || p2.routing_key !== KEY ? `o2 was sent to "${EXCHANGE}" with "${KEY}", the row says "${p2.exchange}" / "${p2.routing_key}"` : '',
      p4.exchange !== LEGACY ? `o4 was sent to "${LEGACY}", the row says "${p4.exchange}"` : '',
      p2.body !== bad[0]![1] || p3.body !== bad[1]![1] ? 'a body differs from what was published' : '',
      !p2.reason.includes('qty must be a positive number') ? `the reason of o2 is ${JSON.stringify(p2.reason)}, not handle()'s error ("qty must be a positive number, got 0")` : '',
      !p3.reason.trim() ? 'o3 (not JSON) has no reason' : '',
      p2.properties?.headers?.['x-trace'] !== TRACE ? "o2's properties lost its headers" : '',
    ].filter(Boolean);
    t.observe(2, parkProblems.length ? `the rows differ: ${parkProblems.join('; ')}` : 'each row has its exchange, routing key, body, properties and reason');
    if (parkProblems.length) {
      t.fail({
        summary: `A parked message is not recorded as it came: ${parkProblems[0]}.`,
        expected: 'for each: msg.fields.exchange, msg.fields.routingKey, msg.properties, the body as text, the error\'s message',
        saw: parkProblems.join('; '),
        why: 'The operator decides from the reason, and the replay sends the message back where it was sent, with what it had: a wrong exchange sends it elsewhere, and a lost header or messageId changes what the consumer sees.',
        fix: "INSERT … VALUES (msg.fields.exchange, msg.fields.routingKey, msg.properties, msg.content.toString(), (err as Error).message).",
      });
    }

    // ---- line 3: list() ----
    const beforeParking = connectionMark();
    const parking = await t.call('openParking({ amqpUrl, databaseUrl })', () => t.target.openParking({ amqpUrl: t.url, databaseUrl: db.url }), { timeoutMs: 8000 });
    const parkingConnection = connectionsSince(beforeParking)[0];
    t.provoke(8, 'ended your Postgres connections, as a database restart does (the idle clients of your pools emit an error)');
    await db.terminateLearnerBackends();
    await pause(150); // an 'error' event nobody listens to ends the process now
    t.observe(8, "your process survived the lost Postgres connections: your pools have 'error' listeners");
    t.provoke(3, 'called list()');
    const listed = await t.call('list()', () => parking.list());
    const listProblems = parked
      .map((r, i) => {
        const l = Array.isArray(listed) ? (listed[i] as Exercise.ParkedMessage | undefined) : undefined;
        if (!l || typeof l !== 'object') return `#${r.id} is missing`;
        if (String(l.id) !== r.id) return `item ${i} has id ${JSON.stringify(l.id)}, not "${r.id}" (oldest first)`;
        if (l.exchange !== r.exchange || l.routingKey !== r.routing_key || l.body !== r.body || l.reason !== r.reason) return `#${r.id} differs from its row`;
        if (!(l.parkedAt instanceof Date)) return `#${r.id} has no parkedAt date`;
        return '';
      })
      .filter(Boolean);
    t.observe(3, `list() returned ${Array.isArray(listed) ? listed.map((l) => `#${l?.id}`).join(', ') || 'nothing' : JSON.stringify(listed)}`);
    if (!Array.isArray(listed) || listed.length !== parked.length || listProblems.length) {
      t.fail({
        summary: `list() does not return the parked messages as they are: ${listProblems[0] ?? `${Array.isArray(listed) ? listed.length : 'no'} item(s) for ${parked.length} rows`}.`,
        expected: parked.map((r) => `{ id: "${r.id}", exchange, routingKey, body, reason, parkedAt }`).join(', '),
        fix: "SELECT * FROM parked_messages ORDER BY id, mapped to { id, exchange, routingKey: routing_key, body, reason, parkedAt: parked_at }.",
      });
    }

    // ---- line 4: edit() ----
    const before2 = p2.body;
    t.provoke(4, `called edit("${p2.id}", <a body that is not JSON>, "alice")`);
    const badEdit = await attempt(`edit("${p2.id}", '{"id": "o2", qty: 1', "alice")`, () => parking.edit(p2.id, '{"id": "o2", qty: 1', 'alice'));
    const afterBad = await rowOf('o2');
    const auditAfterBad = await auditRows();
    t.observe(4, `edit() ${badEdit.error ? `rejected (${badEdit.error.message.slice(0, 60)})` : 'resolved'}; the body of o2 is ${afterBad?.body === before2 ? 'unchanged' : JSON.stringify(afterBad?.body)}; ${auditAfterBad.length} audit row(s)`);
    if (!badEdit.error || afterBad?.body !== before2 || auditAfterBad.length > 0) {
      t.fail({
        summary: !badEdit.error ? 'edit() accepted a body that is not JSON.' : 'edit() rejected the body that is not JSON, but changed something all the same.',
        expected: 'edit() rejects; the parked body and parking_audit unchanged',
        saw: `edit() ${badEdit.error ? 'rejected' : 'resolved'}; body now ${JSON.stringify(afterBad?.body)}; ${auditAfterBad.length} audit row(s)`,
        why: 'The replayed body goes to a consumer that parses JSON: a typo saved now fails again later, parked once more, or worse, half understood.',
        fix: 'JSON.parse(body) first (it throws on bad JSON), before the transaction begins.',
      });
    }
    const fixed = JSON.stringify({ id: 'o2', sku: 'Y', qty: 1 });
    t.provoke(4, `called edit("${p2.id}", ${fixed}, "alice")`);
    const goodEdit = await attempt(`edit("${p2.id}", '${fixed}', "alice")`, () => parking.edit(p2.id, fixed, 'alice'));
    const edited = await rowOf('o2');
    const editAudit = (await auditRows()).filter((a) => a.action === 'edit');
    t.observe([4, 8], `edit() ${goodEdit.error ? `rejected: ${goodEdit.error.message}` : 'resolved'}; body now ${JSON.stringify(edited?.body)}; audit: ${editAudit.map((a) => `${a.action} #${a.parked_id} by ${a.operator}`).join(', ') || 'nothing'}`);
    if (goodEdit.error || edited?.body !== fixed || editAudit.length !== 1 || editAudit[0]!.operator !== 'alice' || editAudit[0]!.parked_id !== p2.id) {
      t.fail({
        summary: goodEdit.error ? `edit() rejected a valid JSON body: ${goodEdit.error.message}` : edited?.body !== fixed ? 'edit() resolved, but the parked body did not change.' : 'edit() changed the body without one audit row (action "edit", operator "alice", parked_id).',
        expected: `the body of #${p2.id} is ${fixed}; one parking_audit row: parked_id ${p2.id}, action "edit", operator "alice"`,
        saw: `body ${JSON.stringify(edited?.body)}; audit: ${JSON.stringify(editAudit.map((a) => ({ parked_id: a.parked_id, action: a.action, operator: a.operator })))}`,
        why: 'Changing a message by hand is exactly what an audit must show later: who changed what, and when.',
        fix: "In one transaction: UPDATE parked_messages SET body = $2 WHERE id = $1; INSERT INTO parking_audit (parked_id, action, operator, detail) VALUES ($1, 'edit', $3, { before, after }).",
      });
    }

    // ---- line 6: replays the broker refuses ----
    await broker(async (ch) => {
      await ch.unbindQueue(QUEUE, EXCHANGE, KEY);
      await ch.unbindQueue(TAP, EXCHANGE, KEY);
    });
    t.provoke(6, `unbound every queue from "${EXCHANGE}", then called replay("${p2.id}", "alice"): the message cannot be routed`);
    const unroutable = await attempt(`replay("${p2.id}", "alice") while nothing is bound`, () => parking.replay(p2.id, 'alice'));
    const keptRouting = await rowOf('o2');
    if (!keptRouting) await t.waitFor(() => got('o2') > 0, 300, 10);
    if (got('o2') > 0) {
      t.fail({
        summary: `replay() did not send o2 back where it was sent: with nothing bound to "${EXCHANGE}" any more, o2 still reached "${QUEUE}".`,
        expected: `o2 published to "${EXCHANGE}" with "${KEY}" (it was parked with them), so that it cannot be routed while nothing is bound`,
        why: 'A replay goes where the message was sent: its exchange and routing key decide which queues get it (there may be several, or none). Publishing straight to one queue skips the routing and every other queue bound to the exchange.',
        fix: 'channel.publish(row.exchange, row.routing_key, …), not sendToQueue(QUEUE, …) nor publish(\'\', QUEUE, …).',
      });
    }
    t.observe(6, `replay() ${unroutable.error ? 'rejected' : 'resolved'}; o2 ${keptRouting ? 'still parked' : 'no longer parked'}`);
    if (!unroutable.error || !keptRouting || keptRouting.body !== fixed) {
      t.fail({
        summary: keptRouting ? 'replay() resolved although the broker could not route the message anywhere.' : `replay() lost o2: the broker could not route it anywhere (nothing was bound to "${EXCHANGE}"), and it was removed from parked_messages all the same.`,
        expected: 'replay() rejects, and o2 stays parked, unchanged',
        saw: `replay() ${unroutable.error ? `rejected (${unroutable.error.message})` : 'resolved'}; o2 ${keptRouting ? 'parked' : 'gone'}`,
        why: 'Without mandatory, the broker drops a message no queue takes, and still confirms it: the replay "worked", and the message is gone for good.',
        fix: "Publish with { mandatory: true }, listen for the channel's 'return' event (it comes before the confirm), and treat a returned message as refused.",
      });
    }
    await broker(async (ch) => {
      await ch.bindQueue(QUEUE, EXCHANGE, KEY);
      await ch.bindQueue(TAP, EXCHANGE, KEY);
      await ch.deleteExchange(LEGACY);
    });
    t.provoke(6, `deleted the exchange "${LEGACY}", then called replay("${p4.id}", "bob"): the broker closes the channel (404 NOT_FOUND)`);
    const missing = await attempt(`replay("${p4.id}", "bob") to an exchange that no longer exists`, () => parking.replay(p4.id, 'bob'));
    const keptMissing = await rowOf('o4');
    t.observe(6, `replay() ${missing.error ? 'rejected' : 'resolved'}; o4 ${keptMissing ? 'still parked' : 'no longer parked'}`);
    if (!missing.error || !keptMissing) {
      t.fail({
        summary: keptMissing ? 'replay() resolved although the exchange it published to does not exist.' : `replay() lost o4: its exchange "${LEGACY}" no longer exists, and it was removed from parked_messages all the same.`,
        expected: 'replay() rejects, and o4 stays parked',
        why: 'Publishing to a missing exchange is refused by closing the channel, not by a nack: only the confirm (which then never comes, the wait rejects) tells. A message removed before that is lost.',
        fix: 'Delete the row only after await channel.waitForConfirms() resolved, inside the transaction; let its rejection roll the transaction back.',
      });
    }

    // ---- lines 5 and 7: two operators replay o2 at the same moment ----
    await broker((ch) => ch.purgeQueue(TAP));
    await t.call('list() three times at once (two operators look at the parking)', () => Promise.all([parking.list(), parking.list(), parking.list()]));
    t.provoke([5, 7], `called replay("${p2.id}", "alice") and replay("${p2.id}", "bob") at the same moment`);
    const both = await t.call(`replay("${p2.id}") twice at once`, () => Promise.allSettled([parking.replay(p2.id, 'alice'), parking.replay(p2.id, 'bob')]), { timeoutMs: 6000 });
    await t.waitFor(() => got('o2') > 0, 2000, 10);
    await pause(150); // a second copy shows up now
    const tapped: GetMessage[] = await broker(async (ch) => {
      const out: GetMessage[] = [];
      for (let m = await ch.get(TAP, { noAck: true }); m; m = await ch.get(TAP, { noAck: true })) out.push(m);
      return out;
    });
    const ok = both.filter((r) => r.status === 'fulfilled').length;
    t.observe(5, `${ok} of the 2 replays resolved; the worker's handle() got o2 ${got('o2')} time(s); the checker's queue bound to "${EXCHANGE}" got ${tapped.length} message(s)`);
    if (ok !== 1 || got('o2') !== 1 || tapped.length !== 1) {
      const firstError = both.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason as Error | undefined;
      t.fail({
        summary:
          got('o2') > 1 || tapped.length > 1
            ? `o2 was delivered ${Math.max(got('o2'), tapped.length)} times: both operators replayed it.`
            : ok === 0
              ? `Both replays of o2 rejected: ${firstError?.message ?? ''}`
              : got('o2') === 0
                ? `replay() resolved, but o2 never reached "${QUEUE}".`
                : `Both replays of o2 resolved, for one delivery: the second found o2 no longer parked, and said nothing.`,
        expected: `one replay resolves, the other rejects (o2 is no longer parked); o2 delivered once to "${EXCHANGE}" with "${KEY}"`,
        saw: `${ok} resolved; handle() got o2 ${got('o2')} time(s); "${TAP}" (bound to "${EXCHANGE}" with "${KEY}") got ${tapped.length}`,
        why:
          ok === 0
            ? 'A replay needs a channel that is alive. The broker closed a channel when a replay went to an exchange that no longer exists; everything sent on that channel afterwards fails.'
            : 'Two people press "replay" on the same message: the row must be locked for the time of the replay (SELECT … FOR UPDATE in the transaction), so that the second finds it gone and publishes nothing.',
        fix:
          ok === 0
            ? 'Give each replay a confirm channel of its own (createConfirmChannel(), with an \'error\' listener), and close it in a finally block.'
            : 'BEGIN; SELECT * FROM parked_messages WHERE id = $1 FOR UPDATE; no row: throw; publish, wait for the confirm; DELETE; audit; COMMIT.',
      });
    }
    const copy = tapped[0]!;
    const replayProblems = [
      copy.fields.routingKey !== KEY && `routing key "${copy.fields.routingKey}"`,
      copy.fields.exchange !== EXCHANGE && `sent to "${copy.fields.exchange || '(the default exchange)'}"`,
      copy.properties.messageId !== 'o2' && `messageId ${JSON.stringify(copy.properties.messageId)}`,
      copy.properties.headers?.['x-trace'] !== TRACE && 'the headers were lost',
      copy.properties.deliveryMode !== 2 && 'not persistent',
      copy.content.toString() !== fixed && `the body is ${JSON.stringify(copy.content.toString())}, not the edited one`,
    ].filter((p): p is string => typeof p === 'string');
    const gone = await rowOf('o2');
    const replayAudit = (await auditRows()).filter((a) => a.action === 'replay');
    t.observe([5, 8], `the replayed o2: ${replayProblems.join('; ') || 'same exchange, key, properties, the edited body'}; o2 ${gone ? 'still parked' : 'no longer parked'}; audit: ${replayAudit.map((a) => `replay #${a.parked_id} by ${a.operator}`).join(', ') || 'nothing'}`);
    if (replayProblems.length || gone || replayAudit.length !== 1 || replayAudit[0]!.parked_id !== p2.id) {
      t.fail({
        summary: replayProblems.length ? `The replayed o2 is not the parked message: ${replayProblems[0]}.` : gone ? 'After its replay, o2 is still parked: a second replay would send it again.' : `The replay of o2 left ${replayAudit.length} audit row(s), not one.`,
        expected: `published to "${EXCHANGE}" with "${KEY}", with its properties (messageId, headers, persistent) and the edited body; then deleted from parked_messages, with one audit row "replay"`,
        saw: `${replayProblems.join('; ') || 'the message is right'}; parked: ${gone ? 'yes' : 'no'}; audit: ${JSON.stringify(replayAudit.map((a) => ({ parked_id: a.parked_id, action: a.action, operator: a.operator })))}`,
        why: 'A replay puts the message back where it was sent, as it was sent (with the fix): the consumer must not tell it from the original, and the parking must not hold it any more.',
        fix: "channel.publish(row.exchange, row.routing_key, Buffer.from(row.body), { ...row.properties, mandatory: true }); after the confirm: DELETE FROM parked_messages WHERE id = $1 and INSERT INTO parking_audit (…, 'replay', …), then COMMIT.",
      });
    }

    // ---- line 7: cancel(), and ids that are no longer parked ----
    t.provoke(7, `called cancel("${p3.id}", "bob") and cancel("${p4.id}", "bob"), then cancel("${p3.id}") and edit("${p3.id}") again`);
    const c3 = await attempt(`cancel("${p3.id}", "bob")`, () => parking.cancel(p3.id, 'bob'));
    const c4 = await attempt(`cancel("${p4.id}", "bob")`, () => parking.cancel(p4.id, 'bob'));
    const again = await attempt(`cancel("${p3.id}", "bob") a second time`, () => parking.cancel(p3.id, 'bob'));
    const editGone = await attempt(`edit("${p3.id}", '{}', "bob") after its cancel`, () => parking.edit(p3.id, '{}', 'bob'));
    const replayGone = await attempt(`replay("${p2.id}", "bob") after its replay`, () => parking.replay(p2.id, 'bob'));
    const left = await rows();
    const cancelAudit = (await auditRows()).filter((a) => a.action === 'cancel');
    t.observe(7, `cancel ${c3.error || c4.error ? 'rejected' : 'resolved'} twice; then cancel ${again.error ? 'rejected' : 'resolved'}, edit ${editGone.error ? 'rejected' : 'resolved'}, replay ${replayGone.error ? 'rejected' : 'resolved'}; ${left.length} row(s) left; audit: ${cancelAudit.map((a) => `cancel #${a.parked_id} by ${a.operator}`).join(', ') || 'nothing'}`);
    if (c3.error || c4.error || left.length > 0) {
      t.fail({
        summary: c3.error || c4.error ? `cancel() rejected: ${(c3.error ?? c4.error)!.message}` : `After cancelling o3 and o4, parked_messages still holds ${left.length} row(s).`,
        expected: 'both cancels resolve, and parked_messages is empty',
        fix: "In one transaction: DELETE FROM parked_messages WHERE id = $1 (after SELECT … FOR UPDATE finds it), INSERT INTO parking_audit (…, 'cancel', …).",
      });
    }
    if (!again.error || !editGone.error || !replayGone.error || tapped.length !== 1) {
      t.fail({
        summary: `${!again.error ? 'cancel()' : !editGone.error ? 'edit()' : 'replay()'} resolved for a message that was no longer parked, and said nothing.`,
        expected: 'cancel, edit and replay reject an id that is not parked',
        why: 'The operator must hear that nothing happened: the message was replayed or cancelled by someone else already. A silent success also writes an audit row for an action that did nothing.',
        fix: 'When SELECT … FOR UPDATE finds no row: throw new Error(`message ${id} is not parked`).',
      });
    }
    if (cancelAudit.length !== 2 || cancelAudit.some((a) => a.operator !== 'bob') || !cancelAudit.some((a) => a.parked_id === p3.id)) {
      t.fail({
        summary: `The cancels left ${cancelAudit.length} audit row(s) "cancel", not one per cancelled message.`,
        expected: `two rows: cancel #${p3.id} by bob, cancel #${p4.id} by bob`,
        saw: JSON.stringify(cancelAudit.map((a) => ({ parked_id: a.parked_id, action: a.action, operator: a.operator }))),
        why: 'A cancelled message is gone from the parking: the audit row (with its body in detail) is all that is left of it.',
        fix: "INSERT INTO parking_audit (parked_id, action, operator, detail) VALUES ($1, 'cancel', $2, { body, reason }), in the transaction of the DELETE.",
      });
    }

    // ---- line 8: the audit as a whole, then stop() and close() ----
    const all = await auditRows();
    const incomplete = all.filter((a) => !a.at || !a.detail || Object.keys(a.detail).length === 0);
    const editDetail = Object.values(all.find((a) => a.action === 'edit')?.detail ?? {}).map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' ').replace(/\s/g, '');
    t.observe(8, `parking_audit: ${all.map((a) => `${a.action} #${a.parked_id} by ${a.operator}`).join(', ')}`);
    if (all.length !== 4 || incomplete.length || !editDetail.includes('qty":0') || !editDetail.includes('qty":1')) {
      t.fail({
        summary: all.length !== 4 ? `parking_audit holds ${all.length} row(s) for 4 actions (an edit, a replay, two cancels).` : incomplete.length ? 'An audit row says who, but not what or when.' : 'The audit row of the edit does not show the old and the new body.',
        expected: 'one row per action that took effect, each with parked_id, action, operator, detail (what changed) and at',
        saw: JSON.stringify(all.map((a) => ({ parked_id: a.parked_id, action: a.action, operator: a.operator, detail: a.detail }))).slice(0, 400),
        why: 'An audit answers "who did what, and when" long after the message is gone; a refused action changed nothing and leaves no row.',
        fix: "detail: { before: row.body, after: body } for an edit, { exchange, routingKey, body } for a replay, { body, reason } for a cancel; at: DEFAULT now().",
      });
    }
    const closedChannels = parkingConnection?.sent.filter((m) => m.name === 'channel.close').length ?? 0;
    t.observe(8, `your parking's connection closed ${closedChannels} channel(s) itself`);
    if (closedChannels < 2) {
      t.fail({
        summary: `The parking left its replay channels open: its connection closed ${closedChannels} channel(s), for two replays whose channel the broker did not close (the one it could not route, the one it delivered).`,
        expected: 'each replay closes its channel when it is done, whatever happened (finally)',
        why: 'A channel per replay is fine for a rare action, as long as each one is closed: left open, they pile up on the connection for as long as the parking runs (the broker allows 2047 per connection by default).',
        fix: 'try { publish; await channel.waitForConfirms(); } finally { await channel.close().catch(() => undefined); } (it is closed already when the broker closed it).',
      });
    }
    t.provoke(8, 'called stop() on the worker and close() on the parking');
    await t.call('stop()', () => worker.stop());
    await t.call('close()', () => parking.close());
    await t.expectConnectionsClosed('stop() and close()');
    const back = await t.waitFor(async () => (await t.messageCount(QUEUE)) || undefined, 200);
    t.observe(8, `after stop(): "${QUEUE}" holds ${back ?? 0} message(s)`);
    if (back) {
      t.fail({
        summary: `After stop(), ${back} message(s) came back to "${QUEUE}": the worker handled or parked them, and never acked them.`,
        expected: 'every message acked once handled or parked; nothing comes back',
        why: 'A message never acked stays with the consumer until its connection closes, then comes back and is handled (or parked) again. With a prefetch of 10, ten of them stop the worker for good.',
        fix: 'work(msg).then(() => channel.ack(msg)): after handle() resolved, or after the parked row was committed.',
        link: t.ui('queues', QUEUE),
      });
    }
    const pgLeft = (await t.waitFor(async () => (await db.learnerBackends()) === 0, 1000)) ? 0 : await db.learnerBackends();
    t.observe(8, `after stop() and close(): ${pgLeft} Postgres connection(s) of yours left`);
    if (pgLeft > 0) {
      t.fail({
        summary: `After stop() and close(), ${pgLeft} Postgres connection(s) were still open.`,
        expected: 'no connection left: await pool.end() in both',
        fix: 'stop(): cancel the consumer, close the connection, await pool.end(); close(): close the connection, await pool.end().',
      });
    }
    const beforeCut = connectionMark();
    await t.call('startWorker(…) and openParking(…) again', async () => {
      await t.target.startWorker({ amqpUrl: t.url, databaseUrl: db.url, handle });
      await t.target.openParking({ amqpUrl: t.url, databaseUrl: db.url });
    }, { timeoutMs: 8000 });
    const fresh = connectionsSince(beforeCut).filter((c) => !c.closed);
    for (const c of fresh) c.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    t.provoke(8, `started a worker and a parking again, and cut their ${fresh.length} connection(s) (ECONNRESET), as a network failure does`);
    await pause(100); // an 'error' event nobody listens to ends the process now
    t.observe(8, "your process survived the cut connections: 'error' listeners heard them");
  }),
);

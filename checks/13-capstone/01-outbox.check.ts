// Check 13.1: the trigger writes an outbox row in the same transaction as the change
// (a rollback leaves none), on inserts and updates, with the version; NOTIFY carries the
// outbox id only, so a row of 9000 bytes is written like any other; rows written while
// nobody listens are still in the outbox.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/01-outbox.js';
import { freshDatabase, withResources } from './support.js';

interface OutboxRow {
  id: string;
  entity: string;
  entity_key: string;
  version: number;
  payload: Record<string, unknown>;
  published_at: Date | null;
}

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer, 'none');
    await t.call('installOutbox(db)', () => t.target.installOutbox(db.sql), { timeoutMs: 8000 });
    const outboxFor = async (key: string) =>
      (await db.sql.query<OutboxRow>('SELECT id::text, entity, entity_key, version, payload, published_at FROM outbox WHERE entity_key = $1 ORDER BY id', [key])).rows;

    // A listener, to see what NOTIFY carries. Nothing else listens: like a relay that is down.
    const listener = await db.connect();
    const payloads: string[] = [];
    listener.on('notification', (n) => payloads.push(n.payload ?? ''));
    await listener.query('LISTEN outbox');

    // 1. A rolled-back insert leaves no event: the event belongs to the change's transaction.
    const tx = await db.connect();
    await tx.query('BEGIN');
    const rolled = (await tx.query<{ id: string }>(`INSERT INTO customers (name, email) VALUES ('Rolled Back', 'rb@example.com') RETURNING id::text`)).rows[0]!.id;
    const inTx = (await tx.query('SELECT count(*)::int AS n FROM outbox WHERE entity_key = $1', [rolled])).rows[0].n as number;
    await tx.query('ROLLBACK');
    t.log(`inserted customer ${rolled} in a transaction, then rolled it back`);
    if (inTx !== 1) {
      t.fail({
        summary: `Inserting customer ${rolled} wrote ${inTx} outbox row(s) inside its transaction, instead of exactly 1.`,
        expected: '1 outbox row, visible in the same transaction as the INSERT',
        saw: `${inTx} row(s)`,
        why: 'The outbox works because the change and its event are committed together: a customer can never exist without its event, nor an event without its customer.',
        fix: 'In customers_to_outbox(): INSERT INTO outbox (entity, entity_key, version, payload) VALUES (…), and fire it AFTER INSERT OR UPDATE … FOR EACH ROW.',
      });
    }
    if ((await outboxFor(rolled)).length !== 0) {
      t.fail({ summary: `Customer ${rolled} was rolled back, but its outbox row is still there.`, why: 'An event for a change that never happened would reach Odoo.', fix: 'Write the outbox row from the trigger, in the same transaction, not from another connection.' });
    }

    // 2. An insert, committed.
    const ada = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name, email, city) VALUES ('Ada Lovelace', 'ada@example.com', 'London') RETURNING id::text`)).rows[0]!.id;
    t.log(`inserted customer ${ada} (Ada Lovelace) and committed`);
    let rows = await outboxFor(ada);
    if (rows.length !== 1) {
      t.fail({
        summary: `After inserting customer ${ada}, the outbox has ${rows.length} row(s) for it instead of 1.`,
        expected: `one outbox row with entity_key '${ada}'`,
        saw: `${rows.length} row(s)`,
        why: 'The relay only publishes what is in the outbox. Without a row, this customer never reaches Odoo.',
        fix: 'INSERT INTO outbox … VALUES (\'customer\', NEW.id::text, NEW.version, to_jsonb(NEW)) in an AFTER INSERT OR UPDATE trigger.',
      });
    }
    const first = rows[0]!;
    if (first.entity !== 'customer' || first.version !== 1 || first.payload?.name !== 'Ada Lovelace' || first.published_at !== null) {
      t.fail({
        summary: 'The outbox row does not describe the change the way the relay expects.',
        expected: `entity 'customer', entity_key '${ada}', version 1, payload = the row as JSON (payload.name 'Ada Lovelace'), published_at NULL`,
        saw: `entity '${first.entity}', version ${first.version}, payload.name ${JSON.stringify(first.payload?.name)}, published_at ${first.published_at}`,
        fix: "VALUES ('customer', NEW.id::text, NEW.version, to_jsonb(NEW)); leave published_at alone: the relay sets it.",
      });
    }
    const notified = await t.waitFor(() => payloads.length > 0, 2000);
    if (!notified) {
      t.fail({
        summary: 'Inserting a customer sent no notification on channel "outbox".',
        expected: `NOTIFY outbox with payload '${first.id}'`,
        saw: 'no notification within 2 s',
        why: 'The relay sleeps until it is woken up (or its fallback timer fires). Without NOTIFY every change waits for the timer.',
        fix: "PERFORM pg_notify('outbox', new_id::text) in the trigger function.",
      });
    }
    if (payloads.at(-1) !== first.id) {
      t.fail({
        summary: `The notification carries ${payloads.at(-1)!.length} bytes instead of the outbox id.`,
        expected: `payload '${first.id}' (the outbox id)`,
        saw: `payload ${JSON.stringify(payloads.at(-1)!.slice(0, 80))}${payloads.at(-1)!.length > 80 ? '…' : ''}`,
        why: 'NOTIFY is a wake-up call. A payload must stay under 8000 bytes, and the row is in the outbox anyway.',
        fix: "pg_notify('outbox', new_id::text), with new_id from INSERT … RETURNING id INTO new_id.",
      });
    }

    // 3. An update: a new event with the next version.
    await db.sql.query(`UPDATE customers SET city = 'Paris' WHERE id = $1`, [ada]);
    t.log(`updated customer ${ada} (city Paris)`);
    rows = await outboxFor(ada);
    if (rows.length !== 2 || rows[1]!.version !== 2 || rows[1]!.payload?.city !== 'Paris') {
      t.fail({
        summary: rows.length < 2 ? `Updating customer ${ada} left no new outbox row: an UPDATE never reaches Odoo.` : `The update's outbox row does not carry version 2 and the new city.`,
        expected: 'a second outbox row: version 2, payload.city "Paris"',
        saw: rows.map((r) => `v${r.version} city=${JSON.stringify(r.payload?.city)}`).join(', '),
        why: 'Odoo must follow every change, not only the first one; the version lets the receiver ignore a change older than what Odoo holds.',
        fix: 'Fire the trigger AFTER INSERT OR UPDATE, and store NEW.version (the version trigger has bumped it already).',
      });
    }

    // 4. A row bigger than a NOTIFY payload may be: written like any other.
    const big = 'x'.repeat(9000);
    let bigId = '';
    try {
      bigId = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name, notes) VALUES ('Big Notes', $1) RETURNING id::text`, [big])).rows[0]!.id;
    } catch (err) {
      t.fail({
        summary: `Writing a customer with 9000 bytes of notes FAILED: ${(err as Error).message}. The application's own write broke.`,
        expected: 'the INSERT succeeds, whatever the size of the row',
        saw: (err as Error).message,
        why: 'NOTIFY payloads must be shorter than 8000 bytes. Sending the row in the notification (the seed\'s design) makes every large row fail in the application.',
        fix: 'Send only the outbox id with pg_notify; the relay reads the row from the outbox.',
      });
    }
    t.log(`inserted customer ${bigId} with 9000 bytes of notes`);
    rows = await outboxFor(bigId);
    if (rows.length !== 1 || String(rows[0]!.payload?.notes ?? '').length !== 9000) {
      t.fail({ summary: 'The large customer has no complete outbox row.', expected: 'one row whose payload.notes has 9000 characters', saw: `${rows.length} row(s)`, fix: 'payload = to_jsonb(NEW): the whole row.' });
    }
  }),
);

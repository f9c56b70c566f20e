// Check 13.1: in a database of its own, the trigger writes an outbox row in the same
// transaction as the change (a rollback leaves none), on inserts, updates and multi-row
// inserts, with the customer's id, the bumped version and the whole row (compared with
// to_jsonb of the row itself); NOTIFY carries the outbox id and nothing else, once per
// row; a row of 9000 bytes is written like any other; installing twice is harmless.
import { isDeepStrictEqual } from 'node:util';
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
    t.provoke(4, 'called installOutbox(db) twice on a fresh database');
    await t.call('installOutbox(db)', () => t.target.installOutbox(db.sql), { timeoutMs: 8000 });
    await t.call('installOutbox(db) a second time (the bridge installs it at every start)', () => t.target.installOutbox(db.sql), { timeoutMs: 8000 });
    const outboxFor = async (key: string) =>
      (await db.sql.query<OutboxRow>('SELECT id::text, entity, entity_key, version, payload, published_at FROM outbox WHERE entity_key = $1 ORDER BY id', [key])).rows;
    const rowOf = async (key: string) => (await db.sql.query<{ row: Record<string, unknown> }>('SELECT to_jsonb(c) AS row FROM customers c WHERE id = $1', [key])).rows[0]?.row;
    const allIds = async () => (await db.sql.query<{ id: string }>('SELECT id::text FROM outbox ORDER BY id')).rows.map((r) => r.id);

    /**
     * The application's write, as the checker makes it. Your trigger runs inside it: an error
     * it raises, or a row it cancels, is the application's write failing.
     */
    const write = async (what: string, text: string, params: unknown[] = [], client = db.sql): Promise<string[]> => {
      let ids: string[];
      try {
        ids = (await client.query<{ id: string }>(text, params)).rows.map((r) => r.id);
      } catch (err) {
        return t.fail({
          summary: `${what} FAILED: ${(err as Error).message}. The application's own write broke, inside your trigger.`,
          expected: 'the write succeeds, and the trigger adds its outbox row',
          saw: (err as Error).message,
          why: "The trigger runs inside the application's transaction: an error in it makes the application's INSERT or UPDATE fail. The bridge must never break the application it listens to.",
          fix: "customers_to_outbox(): INSERT INTO outbox (entity, entity_key, version, payload) VALUES ('customer', NEW.id::text, NEW.version, to_jsonb(NEW)) RETURNING id INTO new_id; PERFORM pg_notify('outbox', new_id::text); RETURN NULL;",
        });
      }
      if (ids.length === 0) {
        t.fail({
          summary: `${what} wrote no row: a BEFORE trigger that returns NULL cancels the application's change.`,
          expected: 'the customer written (INSERT … RETURNING id returns it)',
          saw: 'no row',
          why: 'In a BEFORE trigger, RETURN NULL means "skip this row". The outbox trigger runs AFTER the change: its return value is then ignored.',
          fix: 'CREATE TRIGGER customers_outbox AFTER INSERT OR UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION customers_to_outbox();',
        });
      }
      return ids;
    };

    // A listener, to see what NOTIFY carries. Nothing else listens: like a relay that is down.
    const listener = await db.connect();
    const payloads: string[] = [];
    listener.on('notification', (n) => payloads.push(n.payload ?? ''));
    await listener.query('LISTEN outbox');

    /** The one outbox row a change must have made, describing the customer as it is now. */
    const expectEvent = async (key: string, rows: OutboxRow[], n: number, version: number, what: string) => {
      const row = rows[n];
      const now = await rowOf(key);
      t.observe(1, `read the outbox rows of customer ${key}: ${rows.map((r) => `#${r.id} ${r.entity}/${r.entity_key} v${r.version}`).join(', ') || 'none'}`);
      if (rows.length !== n + 1) {
        t.fail({
          summary: rows.length < n + 1 ? `${what} left no new outbox row${what.startsWith('Updating') ? ': an UPDATE never reaches Odoo' : ''}.` : `${what} left ${rows.length - n} outbox rows instead of 1: a trigger fires twice.`,
          expected: `${n + 1} outbox row(s) for customer ${key}`,
          saw: `${rows.length} row(s)`,
          why: rows.length < n + 1
            ? 'The relay only publishes what is in the outbox. Without a row, this change never reaches Odoo.'
            : 'Each event becomes a message and a write in Odoo. Two triggers doing the same work (a second one left by an earlier install, or one per operation plus one for both) double every event.',
          fix: rows.length < n + 1
            ? "INSERT INTO outbox … VALUES ('customer', NEW.id::text, NEW.version, to_jsonb(NEW)) in a trigger AFTER INSERT OR UPDATE … FOR EACH ROW."
            : 'One trigger, AFTER INSERT OR UPDATE, created after DROP TRIGGER IF EXISTS with the same name.',
        });
      }
      const problems = [
        row!.entity !== 'customer' && `entity ${JSON.stringify(row!.entity)}, not 'customer'`,
        row!.entity_key !== key && `entity_key ${JSON.stringify(row!.entity_key)}, not the customer's id '${key}'`,
        row!.version !== version && `version ${row!.version}, not ${version}`,
        !isDeepStrictEqual(row!.payload, now) && `payload is not the whole row (payload ${JSON.stringify(row!.payload).slice(0, 120)})`,
        row!.published_at !== null && `published_at is ${row!.published_at}, not NULL`,
      ].filter((p): p is string => typeof p === 'string');
      if (problems.length) {
        t.fail({
          summary: `The outbox row of ${what.charAt(0).toLowerCase()}${what.slice(1)} does not describe the change: ${problems[0]}.`,
          expected: `entity 'customer', entity_key '${key}', version ${version}, payload = to_jsonb of the row (${JSON.stringify(now).slice(0, 120)}…), published_at NULL`,
          saw: problems.join('; '),
          why: problems[0]!.startsWith('version')
            ? "The receiver skips an event whose version is not newer than Odoo's. An event that carries the version before the change looks old, and is dropped."
            : 'The relay builds the message from this row alone, and the receiver finds the customer by entity_key and writes what payload says: every column must be there.',
          fix: "VALUES ('customer', NEW.id::text, NEW.version, to_jsonb(NEW)) in an AFTER trigger (the version trigger runs BEFORE: NEW.version is already bumped); leave published_at alone: the relay sets it.",
        });
      }
    };

    /** Lines 2 and 4: exactly one notification per committed outbox row, carrying its id. */
    const expectNotifications = async () => {
      const ids = await allIds();
      await t.waitFor(() => payloads.length >= ids.length, 2000, 20);
      await new Promise((r) => setTimeout(r, 30)); // a notification too many arrives just as fast
      t.observe([2, 4], `received ${payloads.length} notification(s) on channel "outbox": ${payloads.map((p) => JSON.stringify(p.length > 40 ? `${p.slice(0, 40)}…` : p)).join(', ')}; committed outbox ids: ${ids.join(', ')}`);
      if (!isDeepStrictEqual(payloads, ids)) {
        const first = payloads.find((p, i) => p !== ids[i]);
        t.fail({
          summary:
            payloads.length === 0
              ? 'Committing changes sent no notification on channel "outbox".'
              : first !== undefined && first.length > 20
                ? `The notification carries ${first.length} bytes instead of the outbox id.`
                : payloads.length > ids.length
                  ? `${ids.length} outbox rows were committed, but ${payloads.length} notifications arrived: a trigger fires twice.`
                  : first !== undefined
                    ? `A notification carries ${JSON.stringify(first)}, which is not the id of the outbox row it announces.`
                    : `${ids.length} outbox rows were committed, but only ${payloads.length} notifications arrived.`,
          expected: `one notification per outbox row, in order, each carrying its outbox id: ${ids.join(', ')}`,
          saw: payloads.map((p) => JSON.stringify(p.length > 60 ? `${p.slice(0, 60)}…` : p)).join(', ') || 'no notification within 2 s',
          why: 'NOTIFY is a wake-up call: the relay reads the rows from the outbox. A payload must stay under 8000 bytes, so the row does not belong in it; and the id that helps is the outbox id (the customer id names no event).',
          fix: "INSERT … RETURNING id INTO new_id; then PERFORM pg_notify('outbox', new_id::text) in the same trigger function.",
        });
      }
    };

    // ---- line 1: a rolled-back insert leaves no event ----
    const tx = await db.connect();
    await tx.query('BEGIN');
    const [rolled] = await write('Inserting a customer in a transaction', `INSERT INTO customers (name, email) VALUES ('Rolled Back', 'rb@example.com') RETURNING id::text`, [], tx);
    const inTx = (await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE entity_key = $1', [rolled])).rows[0]!.n;
    await tx.query('ROLLBACK');
    t.provoke(1, `inserted customer ${rolled} in a transaction, counted its outbox rows inside it, then rolled it back`);
    const afterRollback = (await outboxFor(rolled)).length;
    t.observe(1, `customer ${rolled}: ${inTx} outbox row(s) inside the transaction, ${afterRollback} after the rollback`);
    if (inTx !== 1 || afterRollback !== 0) {
      t.fail({
        summary: inTx !== 1 ? `Inserting customer ${rolled} wrote ${inTx} outbox row(s) inside its transaction, instead of exactly 1.` : `Customer ${rolled} was rolled back, but its outbox row is still there.`,
        expected: '1 outbox row, visible in the same transaction as the INSERT, and gone after the rollback',
        saw: `${inTx} row(s) inside the transaction, ${afterRollback} after the rollback`,
        why: 'The outbox works because the change and its event are committed together: a customer can never exist without its event, nor an event without its customer.',
        fix: 'Write the outbox row from the trigger (AFTER INSERT OR UPDATE … FOR EACH ROW), in the same transaction, never from another connection.',
      });
    }

    // ---- lines 1, 2: an insert, committed ----
    const [ada] = await write('Inserting customer Ada Lovelace', `INSERT INTO customers (name, email, city) VALUES ('Ada Lovelace', 'ada@example.com', 'London') RETURNING id::text`);
    t.provoke([1, 2], `inserted customer ${ada} (Ada Lovelace) and committed`);
    await expectEvent(ada, await outboxFor(ada), 0, 1, `Inserting customer ${ada}`);

    // ---- lines 1, 3: two updates bump the version ----
    await write(`Updating customer ${ada}`, `UPDATE customers SET city = 'Paris' WHERE id = $1 RETURNING id::text`, [ada]);
    await write(`Updating customer ${ada} a second time`, `UPDATE customers SET phone = '+33 1 00 00 00 00' WHERE id = $1 RETURNING id::text`, [ada]);
    t.provoke([1, 2, 3], `updated customer ${ada} twice (city Paris, then a phone number)`);
    const versions = (await db.sql.query<{ version: number }>('SELECT version FROM customers WHERE id = $1', [ada])).rows[0]?.version;
    const adaRows = await outboxFor(ada);
    t.observe(3, `customers.version of ${ada} is ${versions}; its outbox rows carry versions ${adaRows.map((r) => r.version).join(', ')}`);
    if (versions !== 3) {
      t.fail({
        summary: `After two updates, customer ${ada} has version ${versions} instead of 3: the version trigger is gone or changed.`,
        expected: 'customers.version 3 (1, then +1 per UPDATE)',
        saw: `version ${versions}`,
        why: 'The version is how the receiver tells a newer change from an older one when retries reorder them. Without the bump, every update looks like the first version and is skipped as stale.',
        fix: 'Keep the given customers_next_version() and its BEFORE UPDATE trigger customers_version as they are.',
      });
    }
    if (adaRows[1]?.payload?.city !== 'Paris' && adaRows.length >= 2) {
      t.fail({
        summary: `The first update's outbox row does not carry the new city: it describes the row before the change.`,
        expected: 'payload.city "Paris"',
        saw: `payload.city ${JSON.stringify(adaRows[1]?.payload?.city)}`,
        why: 'OLD is the row before the change, NEW the row after it. Odoo must receive what the customer looks like now.',
        fix: 'payload = to_jsonb(NEW).',
      });
    }
    await expectEvent(ada, adaRows, 2, 3, `Updating customer ${ada} a second time`);

    // ---- lines 1, 2: two rows in one statement, and a row bigger than NOTIFY allows ----
    const pair = await write('Inserting two customers with one INSERT', `INSERT INTO customers (name) VALUES ('Grace Hopper'), ('Alan Turing') RETURNING id::text`);
    t.provoke([1, 2], `inserted customers ${pair.join(' and ')} with one INSERT statement`);
    for (const key of pair) await expectEvent(key, await outboxFor(key), 0, 1, `Inserting customer ${key} (one of two rows of one INSERT)`);
    await expectNotifications();
    let bigId = '';
    try {
      bigId = (await db.sql.query<{ id: string }>(`INSERT INTO customers (name, notes) VALUES ('Big Notes', $1) RETURNING id::text`, ['x'.repeat(9000)])).rows[0]?.id ?? '';
    } catch (err) {
      t.fail({
        summary: `Writing a customer with 9000 bytes of notes FAILED: ${(err as Error).message}. The application's own write broke.`,
        expected: 'the INSERT succeeds, whatever the size of the row',
        saw: (err as Error).message,
        why: "NOTIFY payloads must be shorter than 8000 bytes. Sending the row in the notification (the original project's design) makes every large row fail in the application.",
        fix: 'Send only the outbox id with pg_notify; the relay reads the row from the outbox.',
      });
    }
    if (!bigId) t.fail({ summary: 'Inserting a customer with 9000 bytes of notes wrote no row: a BEFORE trigger that returns NULL cancels it.', fix: 'Fire the outbox trigger AFTER INSERT OR UPDATE.' });
    t.provoke([1, 2], `inserted customer ${bigId} with 9000 bytes of notes`);
    await expectEvent(bigId, await outboxFor(bigId), 0, 1, `Inserting customer ${bigId} (9000 bytes of notes)`);
    await expectNotifications();

  }),
);

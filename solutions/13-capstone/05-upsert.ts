// Exercise 13.5: write to Odoo idempotently: a redelivered event never makes a second record, an old one never wins
// Text: chapters/13-capstone/README.md   Check: npm run check 13.5   Hint: npm run hint 13.5
//
// RabbitMQ delivers at least once: after a crash or a lost answer the same event comes
// again, and retries reorder events. upsertCustomers(odoo, events) must:
//   1. return one Outcome per event, in the same order; an event without a string key, an
//      integer version and an object as data is 'rejected' as malformed, and never sent to Odoo,
//   2. write the batch with one res.partner `load` call, none when nothing is left to write
//      (toRow(): the "id" column is the
//      customer's external id, externalId(key) = 'pg_bridge.customer_<key>'; then name, email,
//      phone, city, country (by name), notes as comment, ref 'pg:<key>' and VERSION_FIELD; a
//      missing or null value is empty). Odoo creates the record the first time and updates the
//      same record every later time, in one transaction with its external id. 'written'
//      carries the record's id,
//   3. compare versions first: an event is 'stale' (`newer` = the version that wins) and is not
//      written when it is not newer than the version Odoo holds (VERSION_FIELD of the contact
//      its external id points to, archived contacts too), or than another event for the same
//      customer in the batch (of equal ones, the first is written),
//   4. read load's result: `ids: false` means NOTHING was written; its messages of type 'error'
//      name the bad rows (message.record = the row's index; warnings do not count). Those are
//      'rejected' with Odoo's message; load the others again without them. When the errors
//      name no row, every row left is rejected with their messages,
//   5. let every OdooError from the client through (Odoo down, an answer lost after the commit):
//      the receiver decides what to do,
//   6. prepareOdoo() creates the integer field VERSION_FIELD ('x_source_version', with a label)
//      on res.partner when it is missing, and only then.
import { pathToFileURL } from 'node:url';
import type { CustomerEvent } from './02-topology.js';
import { createOdooClient, type OdooClient } from './04-odoo-client.js';

export const MODULE = 'pg_bridge';
export const VERSION_FIELD = 'x_source_version';

export type Outcome =
  | { status: 'written'; id: number }
  | { status: 'stale'; newer: number }
  | { status: 'rejected'; reason: string };

/** pg_bridge.customer_42: the same customer always gets the same external id. */
export function externalId(key: string): string {
  return `${MODULE}.customer_${key}`;
}

/** The columns of load(), and a customers row in Odoo's import format (text, '' = empty). */
const FIELDS = ['id', 'name', 'email', 'phone', 'city', 'country_id', 'comment', 'ref', VERSION_FIELD];
function toRow(e: CustomerEvent): string[] {
  const text = (v: unknown) => (v === null || v === undefined ? '' : String(v));
  const d = e.data;
  return [externalId(e.key), text(d.name), text(d.email), text(d.phone), text(d.city), text(d.country), text(d.notes), `pg:${e.key}`, String(e.version)];
}

export async function prepareOdoo(odoo: OdooClient): Promise<void> {
  const fields = await odoo.execute<Record<string, unknown>>('res.partner', 'fields_get', [[VERSION_FIELD]]);
  if (fields[VERSION_FIELD]) return;
  const [model] = await odoo.execute<number[]>('ir.model', 'search', [[['model', '=', 'res.partner']]]);
  await odoo.execute('ir.model.fields', 'create', [
    { model_id: model, name: VERSION_FIELD, field_description: 'Source version (pg bridge)', ttype: 'integer' },
  ]);
}

export async function upsertCustomers(odoo: OdooClient, events: CustomerEvent[]): Promise<Outcome[]> {
  const outcomes: (Outcome | undefined)[] = events.map((e) =>
    typeof e?.key === 'string' && Number.isInteger(e.version) && e.data && typeof e.data === 'object'
      ? undefined
      : { status: 'rejected', reason: 'malformed event: needs key (string), version (integer) and data (object)' },
  );

  // #region versions
  // 1. Within the batch, only the newest event per customer can matter.
  const newest = new Map<string, number>(); // key -> index of its newest event
  events.forEach((e, i) => {
    if (outcomes[i]) return;
    const j = newest.get(e.key);
    if (j === undefined || events[j]!.version < e.version) newest.set(e.key, i);
  });
  events.forEach((e, i) => {
    if (outcomes[i]) return;
    const j = newest.get(e.key)!;
    if (j !== i) outcomes[i] = { status: 'stale', newer: events[j]!.version };
  });

  // 2. What Odoo holds now: external id -> record -> its version.
  const names = [...newest.keys()].map((key) => externalId(key).slice(MODULE.length + 1));
  const links = await odoo.execute<{ name: string; res_id: number }[]>(
    'ir.model.data',
    'search_read',
    [[['module', '=', MODULE], ['model', '=', 'res.partner'], ['name', 'in', names]]],
    { fields: ['name', 'res_id'] },
  );
  const records = await odoo.execute<{ id: number; [VERSION_FIELD]: number | false }[]>(
    'res.partner',
    'search_read',
    [[['id', 'in', links.map((l) => l.res_id)], ['active', 'in', [true, false]]]], // archived contacts too
    { fields: [VERSION_FIELD] },
  );
  const version = new Map(records.map((r) => [r.id, r[VERSION_FIELD] || 0]));
  const held = new Map(links.map((l) => [l.name, version.get(l.res_id) ?? 0])); // external id name -> version in Odoo
  let todo = [...newest.values()].filter((i) => {
    const odooVersion = held.get(externalId(events[i]!.key).slice(MODULE.length + 1)) ?? 0;
    if (events[i]!.version > odooVersion) return true;
    outcomes[i] = { status: 'stale', newer: odooVersion };
    return false;
  });
  // #endregion

  // #region load
  // 3. Create-or-update by external id. A bad row makes load() write nothing at all and
  //    say which rows were bad: reject those, write the rest again.
  while (todo.length > 0) {
    const result = await odoo.execute<{ ids: number[] | false; messages: { type: string; message: string; record?: number }[] }>(
      'res.partner',
      'load',
      [FIELDS, todo.map((i) => toRow(events[i]!))],
    );
    if (result.ids) {
      todo.forEach((i, n) => (outcomes[i] = { status: 'written', id: (result.ids as number[])[n]! }));
      break;
    }
    const errors = result.messages.filter((m) => m.type === 'error');
    const named = errors.filter((m) => typeof m.record === 'number');
    if (named.length === 0) {
      // Errors that name no row: nothing tells the good rows from the bad.
      const reason = errors.map((m) => m.message).join('; ') || 'load() wrote nothing and said nothing';
      todo.forEach((i) => (outcomes[i] = { status: 'rejected', reason }));
      break;
    }
    for (const m of named) outcomes[todo[m.record!]!] = { status: 'rejected', reason: m.message };
    todo = todo.filter((_, n) => !named.some((m) => m.record === n));
  }
  // #endregion
  return outcomes as Outcome[]; // every event has its outcome by now
}

// On its own: ODOO_URL=… ODOO_DB=… ODOO_USER=… ODOO_API_KEY=… npx tsx solutions/13-capstone/05-upsert.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const odoo = createOdooClient({
    url: process.env.ODOO_URL ?? 'http://localhost:8069',
    db: process.env.ODOO_DB ?? 'workbook',
    user: process.env.ODOO_USER ?? 'admin',
    apiKey: process.env.ODOO_API_KEY ?? 'admin',
  });
  await prepareOdoo(odoo);
  const event: CustomerEvent = { eventId: 'demo', entity: 'customer', key: '1', version: 1, data: { name: 'Ada Lovelace', city: 'London' }, committedAt: new Date().toISOString() };
  console.log(await upsertCustomers(odoo, [event, event]));
}

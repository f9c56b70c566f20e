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
  // TODO 1: `${MODULE}.customer_${key}`: one customer, one external id, forever.
  throw new Error(`TODO: the external id of customer ${key} in exercises/13-capstone/05-upsert.ts`);
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

  // TODO 2: versions. Within the batch, keep only the newest event per key (the others: 'stale').
  //         Then ask Odoo what it holds: ir.model.data search_read with
  //         [['module', '=', MODULE], ['model', '=', 'res.partner'], ['name', 'in', <names without "pg_bridge.">]],
  //         fields ['name', 'res_id']; then res.partner search_read [['id', 'in', res_ids], ['active', 'in', [true, false]]]
  //         with fields [VERSION_FIELD]. An event not newer than Odoo's version is 'stale'.
  // TODO 3: write the rest (if any) with ONE call: execute('res.partner', 'load', [FIELDS, rows]) (rows: toRow(event)).
  //         result.ids is a list: all 'written' (id = ids[n]). result.ids === false: NOTHING was written;
  //         the messages of type 'error' name the bad rows (message.record = row index): 'rejected'
  //         with message.message; load() the others again, until all are written or rejected.
  //         Errors that name no row: reject every row left, with their messages.
  throw new Error('TODO: compare versions and load() in exercises/13-capstone/05-upsert.ts');
  return outcomes as Outcome[]; // every event has its outcome by now
}

// On its own: ODOO_URL=… ODOO_DB=… ODOO_USER=… ODOO_API_KEY=… npx tsx exercises/13-capstone/05-upsert.ts
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

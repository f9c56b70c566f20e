// Known-wrong 13.5: when load() reports a bad row, rejects the whole batch.
import type { CustomerEvent } from '../../../solutions/13-capstone/02-topology.js';
import type { OdooClient } from '../../../solutions/13-capstone/04-odoo-client.js';

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
  const fields = await odoo.execute<Record<string, unknown>>('res.partner', 'fields_get', [[VERSION_FIELD]], { attributes: ['type'] });
  if (fields[VERSION_FIELD]) return;
  const [model] = await odoo.execute<{ id: number }[]>('ir.model', 'search_read', [[['model', '=', 'res.partner']]], { fields: ['id'] });
  await odoo.execute('ir.model.fields', 'create', [
    { model_id: model!.id, name: VERSION_FIELD, field_description: 'Source version (pg bridge)', ttype: 'integer' },
  ]);
}

export async function upsertCustomers(odoo: OdooClient, events: CustomerEvent[]): Promise<Outcome[]> {
  const outcomes: (Outcome | undefined)[] = events.map((e) =>
    typeof e?.key === 'string' && Number.isInteger(e.version) && e.data && typeof e.data === 'object'
      ? undefined
      : { status: 'rejected', reason: 'malformed event: needs key (string), version (integer) and data (object)' },
  );

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
  const held = new Map<string, number>(); // external id name -> version in Odoo
  if (links.length > 0) {
    const records = await odoo.execute<{ id: number; [VERSION_FIELD]: number | false }[]>(
      'res.partner',
      'search_read',
      [[['id', 'in', links.map((l) => l.res_id)], ['active', 'in', [true, false]]]],
      { fields: [VERSION_FIELD] },
    );
    const version = new Map(records.map((r) => [r.id, r[VERSION_FIELD] || 0]));
    for (const l of links) held.set(l.name, version.get(l.res_id) ?? 0);
  }
  let todo = [...newest.values()].filter((i) => {
    const odooVersion = held.get(externalId(events[i]!.key).slice(MODULE.length + 1)) ?? 0;
    if (events[i]!.version > odooVersion) return true;
    outcomes[i] = { status: 'stale', newer: odooVersion };
    return false;
  });

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
    const bad = new Set(errors.filter((m) => typeof m.record === 'number').map((m) => m.record!));
    if (bad.size === 0) {
      // Errors that name no row: nothing tells the good rows from the bad.
      const reason = errors.map((m) => m.message).join('; ') || 'load() wrote nothing and said nothing';
      todo.forEach((i) => (outcomes[i] = { status: 'rejected', reason }));
      break;
    }
    // Odoo said no: the whole batch is rejected.
    const reason = errors.map((m) => m.message).join('; ');
    todo.forEach((i) => (outcomes[i] = { status: 'rejected', reason }));
    break;
  }
  return outcomes.map((o) => o ?? { status: 'rejected', reason: 'not processed' });
}

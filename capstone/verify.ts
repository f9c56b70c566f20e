// Compares the source table with what Odoo holds, through Odoo's own API (so it works the
// same against the stand-in and a real Odoo), and accounts for what the dead-letter queue
// holds:
//   lost          a source row with no contact in Odoo (and not dead-lettered)
//   duplicated    a source row with more than one contact in Odoo
//   stale         a contact older than its source row (version, or fields when there is no version)
//   dead_lettered a source row whose latest version sits in the dead-letter queue, with a reason
import amqp from 'amqplib';
import pg from 'pg';
import { createOdooClient, type OdooConfig } from '../solutions/13-capstone/04-odoo-client.js';
import { DEAD_LETTER_QUEUE } from '../solutions/13-capstone/02-topology.js';
import { VERSION_FIELD } from '../solutions/13-capstone/05-upsert.js';

export interface VerifyResult {
  rows: number;
  contacts: number;
  lost: number;
  duplicated: number;
  stale: number;
  deadLettered: number;
  /** A few examples of each, for the report. */
  examples: { lost: string[]; duplicated: string[]; stale: string[]; deadLettered: string[] };
  ok: boolean;
}

interface SourceRow {
  id: string;
  name: string | null;
  email: string | null;
  phone: string | null;
  city: string | null;
  version: number;
}

interface Contact {
  id: number;
  ref: string;
  name: string | false;
  email: string | false;
  phone: string | false;
  city: string | false;
  [VERSION_FIELD]?: number | false;
}

export interface VerifyOptions {
  databaseUrl: string;
  odoo: OdooConfig;
  /** The vhost URL of the bridge, to read the dead-letter queue (left as it was). */
  amqpUrl?: string;
}

export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const db = new pg.Client({ connectionString: opts.databaseUrl });
  await db.connect();
  let rows: SourceRow[];
  try {
    rows = (await db.query<SourceRow>('SELECT id::text, name, email, phone, city, version FROM customers ORDER BY id')).rows;
  } finally {
    await db.end();
  }

  const odoo = createOdooClient(opts.odoo);
  const fields = await odoo.execute<Record<string, unknown>>('res.partner', 'fields_get', [[VERSION_FIELD]], { attributes: ['type'] });
  const hasVersion = !!fields[VERSION_FIELD];
  const contacts = await odoo.execute<Contact[]>(
    'res.partner',
    'search_read',
    [[['ref', '=like', 'pg:%'], ['active', 'in', [true, false]]]],
    { fields: ['ref', 'name', 'email', 'phone', 'city', ...(hasVersion ? [VERSION_FIELD] : [])], order: 'id' },
  );
  const byKey = new Map<string, Contact[]>();
  for (const c of contacts) {
    const key = c.ref.slice(3);
    const list = byKey.get(key) ?? [];
    list.push(c);
    byKey.set(key, list);
  }

  const dead = opts.amqpUrl ? await deadLetters(opts.amqpUrl) : new Map<string, number>();
  const result: VerifyResult = {
    rows: rows.length,
    contacts: contacts.length,
    lost: 0,
    duplicated: 0,
    stale: 0,
    deadLettered: 0,
    examples: { lost: [], duplicated: [], stale: [], deadLettered: [] },
    ok: false,
  };
  const note = (kind: keyof VerifyResult['examples'], text: string) => {
    if (result.examples[kind].length < 5) result.examples[kind].push(text);
  };
  const same = (a: string | null, b: string | false) => (a ?? '') === (b || '');

  for (const row of rows) {
    const found = byKey.get(row.id) ?? [];
    const deadVersion = dead.get(row.id);
    if (deadVersion !== undefined && deadVersion >= row.version) {
      result.deadLettered++;
      note('deadLettered', `customer ${row.id} v${row.version}`);
      continue;
    }
    if (found.length === 0) {
      result.lost++;
      note('lost', `customer ${row.id} (v${row.version}) has no contact in Odoo`);
      continue;
    }
    if (found.length > 1) {
      result.duplicated++;
      note('duplicated', `customer ${row.id} has ${found.length} contacts (ids ${found.map((c) => c.id).join(', ')})`);
    }
    const latest = found[found.length - 1]!;
    const isStale = hasVersion && typeof latest[VERSION_FIELD] === 'number'
      ? (latest[VERSION_FIELD] as number) < row.version
      : !(same(row.name, latest.name) && same(row.email, latest.email) && same(row.phone, latest.phone) && same(row.city, latest.city));
    if (isStale) {
      result.stale++;
      note('stale', `customer ${row.id}: source v${row.version}, Odoo ${hasVersion ? `v${latest[VERSION_FIELD] || 0}` : 'has older values'}`);
    }
  }
  result.ok = result.lost === 0 && result.duplicated === 0 && result.stale === 0;
  return result;
}

/** Customer key -> highest version found in the dead-letter queue. The messages are put back. */
async function deadLetters(amqpUrl: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const conn = await amqp.connect(amqpUrl);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    const ok = await ch.checkQueue(DEAD_LETTER_QUEUE).catch(() => undefined);
    if (!ok) return out;
    const ch2 = await conn.createChannel();
    // get() without ack, then close the channel: every message goes back where it was.
    for (let i = 0; i < ok.messageCount; i++) {
      const m = await ch2.get(DEAD_LETTER_QUEUE, { noAck: false });
      if (!m) break;
      try {
        const e = JSON.parse(m.content.toString('utf8')) as { key?: string; version?: number };
        if (typeof e.key === 'string' && typeof e.version === 'number') out.set(e.key, Math.max(out.get(e.key) ?? 0, e.version));
      } catch {
        /* a malformed message names no customer */
      }
    }
    await ch2.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
  return out;
}

export function formatVerify(r: VerifyResult): string {
  return `lost=${r.lost} duplicated=${r.duplicated} stale=${r.stale} dead_lettered=${r.deadLettered}`;
}

// Writes customers the way an application would: inserts and updates, in small
// transactions, at a given rate. Poison rows (no name, or a country Odoo does not know)
// and rows too big for a NOTIFY payload can be mixed in. A failed write is counted
// with its reason: the original project's design makes the APPLICATION fail on a big row.
import pg from 'pg';

export interface LoadOptions {
  databaseUrl: string;
  /** Writes in total: inserts and updates. */
  rows: number;
  /** Writes per second; 0 = as fast as Postgres takes them. */
  rate?: number;
  /** Share of writes that update an earlier row (default 0.3). */
  updateShare?: number;
  /** Rows Odoo will refuse: no name, or the country "Atlantis". */
  poison?: number;
  /** Rows with notes over 8000 bytes. */
  big?: number;
  /** Called about every second with the writes done so far. */
  onProgress?: (done: number) => void;
  /** Stop early. */
  signal?: AbortSignal;
}

export interface LoadResult {
  inserted: number;
  updated: number;
  poison: number;
  big: number;
  /** Writes the database refused, by error message. */
  failed: Record<string, number>;
  ms: number;
}

const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Frances', 'John', 'Radia', 'Tim', 'Sophie', 'Linus', 'Anita'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson', 'Allen', 'Backus', 'Perlman', 'Berners-Lee', 'Wilson', 'Torvalds', 'Borg'];
const PLACES: [string, string][] = [
  ['Brussels', 'Belgium'], ['Recife', 'Brazil'], ['Lyon', 'France'], ['Berlin', 'Germany'], ['Porto', 'Portugal'],
  ['Madrid', 'Spain'], ['Leeds', 'United Kingdom'], ['Austin', 'United States'], ['Puebla', 'Mexico'], ['Osaka', 'Japan'],
];
const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;

function customer(n: number) {
  const first = pick(FIRST);
  const last = pick(LAST);
  const [city, country] = pick(PLACES);
  return {
    name: `${first} ${last}`,
    email: `${first}.${last}.${n}@example.com`.toLowerCase(),
    phone: `+32 2 ${String(100000 + ((n * 7919) % 900000))}`,
    city,
    country,
    notes: null as string | null,
  };
}

export async function loadRows(opts: LoadOptions): Promise<LoadResult> {
  const started = Date.now();
  const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 4 });
  pool.on('error', () => undefined);
  const result: LoadResult = { inserted: 0, updated: 0, poison: 0, big: 0, failed: {}, ms: 0 };
  const total = opts.rows;
  const updateShare = opts.updateShare ?? 0.3;
  const rate = opts.rate ?? 0;
  // Spread the special rows over the run.
  const special = new Map<number, 'poison' | 'big'>();
  for (let i = 0; i < (opts.poison ?? 0); i++) special.set(Math.floor(((i + 0.5) * total) / (opts.poison ?? 1)), 'poison');
  for (let i = 0; i < (opts.big ?? 0); i++) special.set(Math.floor(((i + 0.3) * total) / (opts.big ?? 1)) + 1, 'big');
  const ids: string[] = []; // ordinary rows, candidates for updates
  const fail = (err: unknown, n: number) => {
    const msg = (err as Error).message.split('\n')[0]!;
    result.failed[msg] = (result.failed[msg] ?? 0) + n;
  };

  const tick = rate > 0 ? 50 : 0;
  const perTick = rate > 0 ? Math.max(1, Math.round((rate * tick) / 1000)) : 100;
  let done = 0;
  let lastProgress = Date.now();
  let next = Date.now();
  const inFlight: Promise<void>[] = [];
  try {
    while (done < total && !opts.signal?.aborted) {
      const n = Math.min(perTick, total - done);
      const inserts: ReturnType<typeof customer>[] = [];
      const updates: string[] = [];
      const singles: { kind: 'poison' | 'big'; row: ReturnType<typeof customer> }[] = [];
      for (let i = 0; i < n; i++) {
        const index = done + i;
        const kind = special.get(index);
        if (kind) {
          const row = customer(index);
          if (kind === 'poison') {
            if (result.poison % 2 === 0) row.name = null as unknown as string;
            else row.country = 'Atlantis';
          } else {
            row.notes = 'x'.repeat(9000);
          }
          singles.push({ kind, row });
        } else if (ids.length > 20 && Math.random() < updateShare) {
          updates.push(pick(ids));
        } else {
          inserts.push(customer(index));
        }
      }
      done += n;
      const work: Promise<void>[] = [];
      if (inserts.length > 0) {
        work.push(
          insert(pool, inserts).then(
            (newIds) => {
              ids.push(...newIds);
              result.inserted += newIds.length;
            },
            (err) => fail(err, inserts.length),
          ),
        );
      }
      if (updates.length > 0) {
        const unique = [...new Set(updates)];
        work.push(
          pool
            .query(
              `UPDATE customers
                  SET email = regexp_replace(email, '(\\+v[0-9]+)?@', '+v' || (version + 1) || '@'),
                      phone = '+32 4 ' || (100000 + floor(random() * 900000))::int
                WHERE id = ANY($1::bigint[])`,
              [unique],
            )
            .then(
              (r) => void (result.updated += r.rowCount ?? 0),
              (err) => fail(err, unique.length),
            ),
        );
      }
      for (const s of singles) {
        // One transaction each: a failing special row must not take ordinary rows with it.
        work.push(
          insert(pool, [s.row]).then(
            () => void (s.kind === 'poison' ? result.poison++ : result.big++),
            (err) => fail(err, 1),
          ),
        );
      }
      // As fast as possible: keep a few transactions in flight, as a busy application would.
      inFlight.push(Promise.all(work).then(() => undefined));
      if (inFlight.length >= (tick ? 1 : 4)) await inFlight.shift();
      if (opts.onProgress && Date.now() - lastProgress >= 1000) {
        lastProgress = Date.now();
        opts.onProgress(done);
      }
      if (tick) {
        next += tick;
        const wait = next - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
    await Promise.all(inFlight);
  } finally {
    await pool.end();
  }
  opts.onProgress?.(done);
  result.ms = Date.now() - started;
  return result;
}

async function insert(pool: pg.Pool, rows: ReturnType<typeof customer>[]): Promise<string[]> {
  const values: unknown[] = [];
  const tuples = rows.map((r, i) => {
    values.push(r.name, r.email, r.phone, r.city, r.country, r.notes);
    const b = i * 6;
    return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6})`;
  });
  const { rows: out } = await pool.query<{ id: string }>(
    `INSERT INTO customers (name, email, phone, city, country, notes) VALUES ${tuples.join(', ')} RETURNING id::text`,
    values,
  );
  return out.map((r) => r.id);
}

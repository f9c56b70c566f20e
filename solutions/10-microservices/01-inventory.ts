// Exercise 10.1: inventory: reserve all of an order's items or none, and give them back once
// Text: chapters/10-microservices/README.md   Check: npm run check 10.1   Hint: npm run hint 10.1
//
// The shop's library (shop/lib) does the plumbing: the queue shop.inventory, the inbox that drops
// a redelivered message (same messageId), the outbox, ack after COMMIT. Your handler runs inside
// that transaction (tx.client) and emits events with tx.emit(type, data). startInventory(deps) must:
//   1. on order.placed {orderId, items: [{sku, qty}], amountCents, card}: reserve every item or none.
//      All in stock: take them from inventory.stock, record the reservation, emit stock.reserved
//      {orderId, items, amountCents, card}. One item short (or unknown): change nothing and emit
//      stock.rejected {orderId, sku} naming that item,
//   2. never let a unit be sold twice: two orders racing for the last unit, handled at the same
//      moment (the library runs up to 10 handlers at once), give one stock.reserved and one
//      stock.rejected, and the stock never goes below 0 (decide and decrement in one statement,
//      or lock the rows first),
//   3. handle an order once: order.placed published again with a NEW messageId (the inbox cannot
//      see that) reserves nothing more and emits nothing more,
//   4. on payment.declined {orderId}: put the reserved items back and emit stock.released {orderId},
//      once: a second payment.declined for the order (any messageId), or one for an order that was
//      never reserved (rejected, or unknown), changes nothing and emits nothing,
//   5. keep its state in Postgres only: stopped and started again between a reservation and the
//      decline, it still releases that reservation.
import type { ShopEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import type { Running, Tx } from '../../chapters/10-microservices/shop/lib/consumer.js';
import { startService, type ServiceDeps } from '../../chapters/10-microservices/shop/lib/service.js';

export interface Item {
  sku: string;
  qty: number;
}

/** The checker fills inventory.stock; the oracle reads both tables. */
export const TABLES = `
  CREATE TABLE IF NOT EXISTS inventory.stock (sku text PRIMARY KEY, available integer NOT NULL CHECK (available >= 0));
  CREATE TABLE IF NOT EXISTS inventory.reservations (
    order_id text PRIMARY KEY,                                        -- one reservation per order
    items jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released')),
    updated_at timestamptz NOT NULL DEFAULT now()
  );`;

export function startInventory(deps: ServiceDeps): Promise<Running> {
  return startService({ service: 'inventory', deps, tables: TABLES, keys: ['order.placed', 'payment.declined'], handle });
}

async function handle(ev: ShopEvent, tx: Tx): Promise<void> {
  if (ev.type === 'order.placed') await reserve(ev.data as { orderId: string; items: Item[]; amountCents: number; card: string }, tx);
  if (ev.type === 'payment.declined') await release(ev.data as { orderId: string }, tx);
}

async function reserve(order: { orderId: string; items: Item[]; amountCents: number; card: string }, { client, emit }: Tx): Promise<void> {
  // The order's row first: a republished order.placed finds it and stops here.
  const fresh = await client.query(`INSERT INTO inventory.reservations (order_id, items, status) VALUES ($1, $2, 'reserved') ON CONFLICT DO NOTHING`, [
    order.orderId,
    JSON.stringify(order.items),
  ]);
  if (fresh.rowCount === 0) return;
  await client.query('SAVEPOINT take_items');
  for (const item of bySku(order.items)) {
    // Decide and decrement in one statement: a concurrent order waits on the row lock and then sees what is left.
    const taken = await client.query('UPDATE inventory.stock SET available = available - $2 WHERE sku = $1 AND available >= $2', [item.sku, item.qty]);
    if (taken.rowCount === 0) {
      await client.query('ROLLBACK TO SAVEPOINT take_items'); // the items taken so far go back
      await client.query(`UPDATE inventory.reservations SET status = 'rejected', updated_at = now() WHERE order_id = $1`, [order.orderId]);
      emit('stock.rejected', { orderId: order.orderId, sku: item.sku });
      return;
    }
  }
  emit('stock.reserved', { orderId: order.orderId, items: order.items, amountCents: order.amountCents, card: order.card });
}

async function release({ orderId }: { orderId: string }, { client, emit }: Tx): Promise<void> {
  // Only a reservation that holds items moves to released, and only once.
  const { rows } = await client.query<{ items: Item[] }>(
    `UPDATE inventory.reservations SET status = 'released', updated_at = now() WHERE order_id = $1 AND status = 'reserved' RETURNING items`,
    [orderId],
  );
  if (rows.length === 0) return;
  for (const item of bySku(rows[0]!.items)) await client.query('UPDATE inventory.stock SET available = available + $2 WHERE sku = $1', [item.sku, item.qty]);
  emit('stock.released', { orderId });
}

// Stock rows are always locked in the same order (by sku), when taking and when giving back:
// two transactions that lock the same rows in opposite orders deadlock.
function bySku(items: Item[]): Item[] {
  return [...items].sort((a, b) => a.sku.localeCompare(b.sku));
}

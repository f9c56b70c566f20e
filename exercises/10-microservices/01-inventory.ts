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
  // TODO: record the order's reservation first; when the order has one already, stop (contract line 3).
  // TODO: take every item or none (a SAVEPOINT lets you undo the items taken so far), deciding and
  //       decrementing in one statement; one item short: emit('stock.rejected', { orderId, sku }) (lines 1, 2).
  // TODO: all taken: emit('stock.reserved', { orderId, items, amountCents, card }).
  void order;
  void client;
  void emit;
}

async function release({ orderId }: { orderId: string }, { client, emit }: Tx): Promise<void> {
  // TODO: only a reservation that still holds its items is released, once: put them back,
  //       emit('stock.released', { orderId }) (line 4).
  void orderId;
  void client;
  void emit;
}

// Exercise 10.3: orders: place an order with its event in one transaction, and only move forward
// Text: chapters/10-microservices/README.md   Check: npm run check 10.3   Hint: npm run hint 10.3
//
// The shop's library (shop/lib) does the plumbing: the queue shop.orders, the inbox that drops a
// redelivered message (same messageId), the outbox and its relay, ack after COMMIT. startOrders(deps)
// resolves with { placeOrder, stop }, and:
//   1. placeOrder({ customerId, items, amountCents, card }) writes the order (status 'pending') AND
//      its order.placed {orderId, customerId, items, amountCents, card} to the outbox in ONE
//      transaction (the event's correlationId is the new order id, it has no causation), asks the
//      relay to publish now, and returns the order id: an order is never saved without its event,
//      nor announced without its row, even when the relay dies before it publishes,
//   2. on shipment.scheduled {orderId}: the order becomes 'completed' and emits order.completed {orderId},
//   3. on stock.rejected or payment.declined {orderId}: it becomes 'cancelled' (reason = the event's
//      type) and emits order.cancelled {orderId, reason},
//   4. a status only moves forward: pending -> completed or cancelled, and a final status is final.
//      An event that comes late, twice, or out of order changes nothing and emits nothing, so each
//      order emits order.completed or order.cancelled exactly once.
import { randomUUID } from 'node:crypto';
import { newEvent, type ShopEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import type { Running, Tx } from '../../chapters/10-microservices/shop/lib/consumer.js';
import { addToOutbox } from '../../chapters/10-microservices/shop/lib/outbox.js';
import { startService, type ServiceDeps } from '../../chapters/10-microservices/shop/lib/service.js';

export interface NewOrder {
  customerId: string;
  items: { sku: string; qty: number }[];
  amountCents: number;
  card: string;
}

export interface OrdersService extends Running {
  placeOrder(order: NewOrder): Promise<string>;
}

/** The oracle reads it. */
export const TABLES = `
  CREATE TABLE IF NOT EXISTS orders.orders (
    id text PRIMARY KEY,
    customer_id text NOT NULL,
    items jsonb NOT NULL,
    amount_cents integer NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'cancelled')),
    reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
  );`;

export async function startOrders(deps: ServiceDeps): Promise<OrdersService> {
  const service = await startService({
    service: 'orders',
    deps,
    tables: TABLES,
    keys: ['shipment.scheduled', 'stock.rejected', 'payment.declined'],
    handle,
  });

  async function placeOrder(order: NewOrder): Promise<string> {
    const orderId = randomUUID();
    // TODO: in ONE transaction on a client of service.pool: insert the order (status 'pending') and
    //       add its order.placed event to the outbox (newEvent(...) and addToOutbox(client, 'orders', [...])).
    // TODO: after COMMIT: service.publishSoon() (line 1).
    void [order, newEvent, addToOutbox];
    return orderId;
  }

  return { placeOrder, stop: () => service.stop() };
}

async function handle(ev: ShopEvent, { client, emit }: Tx): Promise<void> {
  const { orderId } = ev.data as { orderId: string };
  // TODO: shipment.scheduled: 'completed' and emit('order.completed', { orderId }) (line 2);
  //       stock.rejected or payment.declined: 'cancelled' with reason = ev.type, and
  //       emit('order.cancelled', { orderId, reason }) (line 3).
  // TODO: only a 'pending' order moves, and it emits only when it moved (line 4).
  void [orderId, client, emit];
}

// Exercise 10.2: payments: charge each order once, whatever arrives twice
// Text: chapters/10-microservices/README.md   Check: npm run check 10.2   Hint: npm run hint 10.2
//
// The shop's library (shop/lib) does the plumbing: the queue shop.payments, the inbox that drops
// a redelivered message (same messageId), the outbox, ack after COMMIT, and it rejects (dead-letters)
// a message that is not an event. Your handler runs inside that transaction (tx.client) and emits
// with tx.emit(type, data). startPayments(deps) must:
//   1. on stock.reserved {orderId, items, amountCents, card}: record the payment in payments.payments
//      and emit payment.captured {orderId, paymentId, amountCents}; the card DECLINED_CARD is declined
//      instead: record it as declined and emit payment.declined {orderId, reason},
//   2. charge an order once: stock.reserved again with the same messageId, or republished with a new
//      one, charges nothing more and emits nothing more (one payment row per order),
//   3. emit through tx.emit(), inside the transaction: the event carries correlationId = the order's
//      and the header causation-id = the messageId of the stock.reserved that caused it,
//   4. write everything through tx.client: when the transaction fails after the payment was written
//      (the checker breaks one), nothing of it stays, and the retry charges the order then,
//   5. keep going after a message that is not an event (not JSON, no ids): the library rejects it
//      without requeue, and the next orders are charged.
import { randomUUID } from 'node:crypto';
import type { ShopEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import type { Running, Tx } from '../../chapters/10-microservices/shop/lib/consumer.js';
import { startService, type ServiceDeps } from '../../chapters/10-microservices/shop/lib/service.js';

/** Stripe's test card that is always declined. */
export const DECLINED_CARD = '4000000000000002';

/** The oracle reads it: one row per order, captured or declined. */
export const TABLES = `
  CREATE TABLE IF NOT EXISTS payments.payments (
    order_id text PRIMARY KEY,                                        -- one charge per order
    payment_id uuid NOT NULL,
    amount_cents integer NOT NULL,
    status text NOT NULL CHECK (status IN ('captured', 'declined')),
    created_at timestamptz NOT NULL DEFAULT now()
  );`;

export function startPayments(deps: ServiceDeps): Promise<Running> {
  return startService({ service: 'payments', deps, tables: TABLES, keys: ['stock.reserved'], handle });
}

async function handle(ev: ShopEvent, { client, emit }: Tx): Promise<void> {
  const { orderId, amountCents, card } = ev.data as { orderId: string; amountCents: number; card: string };
  const paymentId = randomUUID();
  const status = card === DECLINED_CARD ? 'declined' : 'captured';
  // The order id is the business key: a republished stock.reserved (new messageId) hits the primary key.
  const charged = await client.query('INSERT INTO payments.payments (order_id, payment_id, amount_cents, status) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
    orderId,
    paymentId,
    amountCents,
    status,
  ]);
  if (charged.rowCount === 0) return;
  if (status === 'declined') emit('payment.declined', { orderId, reason: 'card declined' });
  else emit('payment.captured', { orderId, paymentId, amountCents });
}

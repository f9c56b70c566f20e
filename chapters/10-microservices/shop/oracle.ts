// The oracle: after the shop has gone quiet, every order's final state must agree across the
// five services' schemas. A saga has no transaction around it: this is how we know it held.
//   completed => stock reserved (and kept), one captured payment of the order's amount, one
//                shipment, one notification, order.completed emitted once;
//   cancelled => nothing left reserved, no captured payment, no shipment, one notification,
//                order.cancelled emitted once;
//   stock of each sku = initial - the quantities of completed orders, never below 0;
//   no order still pending.
import type pg from 'pg';

export interface Violation {
  /** The order (its id is its correlation id), or 'stock' for a stock count. */
  orderId: string;
  problem: string;
}

export interface Unfinished {
  pendingOrders: number;
  /** Outbox rows the relays have not published yet, over every schema. */
  unsentEvents: number;
}

interface Item {
  sku: string;
  qty: number;
}

/** Rows of a query on a table that may not exist (a service that never ran): none then. */
async function rowsOf<R extends pg.QueryResultRow>(sql: pg.ClientBase, table: string, query: string): Promise<R[]> {
  const { rows } = await sql.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table]);
  if (rows[0]?.t === null) return [];
  return (await sql.query<R>(query)).rows;
}

/** What is still moving: orders not final yet, events not published yet. */
export async function unfinished(sql: pg.ClientBase): Promise<Unfinished> {
  const pending = await rowsOf<{ n: number }>(sql, 'orders.orders', `SELECT count(*)::int AS n FROM orders.orders WHERE status = 'pending'`);
  const { rows: outboxes } = await sql.query<{ schema: string }>(`SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'outbox'`);
  let unsent = 0;
  for (const { schema } of outboxes) {
    const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".outbox WHERE sent_at IS NULL`);
    unsent += rows[0]!.n;
  }
  return { pendingOrders: pending[0]?.n ?? 0, unsentEvents: unsent };
}

/** How many orders are in each status. */
export async function orderCounts(sql: pg.ClientBase): Promise<{ pending: number; completed: number; cancelled: number }> {
  const rows = await rowsOf<{ status: string; n: number }>(sql, 'orders.orders', 'SELECT status, count(*)::int AS n FROM orders.orders GROUP BY status');
  const counts = { pending: 0, completed: 0, cancelled: 0 };
  for (const r of rows) counts[r.status as keyof typeof counts] = r.n;
  return counts;
}

/** Every way the shop's final state breaks the rules above, each naming the order. */
export async function checkOrders(sql: pg.ClientBase, initialStock: Record<string, number>): Promise<Violation[]> {
  const orders = await rowsOf<{ id: string; status: string; items: Item[]; amount_cents: number }>(sql, 'orders.orders', 'SELECT id, status, items, amount_cents FROM orders.orders ORDER BY id');
  const reservations = byOrder(await rowsOf<{ order_id: string; status: string }>(sql, 'inventory.reservations', 'SELECT order_id, status FROM inventory.reservations'));
  const payments = byOrder(await rowsOf<{ order_id: string; status: string; amount_cents: number }>(sql, 'payments.payments', 'SELECT order_id, status, amount_cents FROM payments.payments'));
  const shipments = byOrder(await rowsOf<{ order_id: string }>(sql, 'shipping.shipments', 'SELECT order_id FROM shipping.shipments'));
  const notes = byOrder(await rowsOf<{ order_id: string; kind: string }>(sql, 'notifications.sent', 'SELECT order_id, kind FROM notifications.sent'));
  const finals = byOrder(
    await rowsOf<{ order_id: string; type: string }>(sql, 'orders.outbox', `SELECT correlation_id AS order_id, type FROM orders.outbox WHERE type IN ('order.completed', 'order.cancelled')`),
  );
  const stock = await rowsOf<{ sku: string; available: number }>(sql, 'inventory.stock', 'SELECT sku, available FROM inventory.stock');

  const out: Violation[] = [];
  const bad = (orderId: string, problem: string) => out.push({ orderId, problem });
  const sold = new Map<string, number>();
  const known = new Set(orders.map((o) => o.id));
  for (const o of orders) {
    const reserved = reservations.get(o.id) ?? [];
    const paid = payments.get(o.id) ?? [];
    const captured = paid.filter((p) => p.status === 'captured');
    const shipped = shipments.get(o.id) ?? [];
    const told = notes.get(o.id) ?? [];
    const ends = (finals.get(o.id) ?? []).map((e) => e.type);
    if (o.status === 'pending') {
      bad(o.id, 'still pending: the saga never finished');
      continue;
    }
    if (o.status === 'completed') {
      for (const item of o.items) sold.set(item.sku, (sold.get(item.sku) ?? 0) + item.qty);
      if (reserved.length !== 1 || reserved[0]!.status !== 'reserved') bad(o.id, `completed, but its stock is ${reserved.length === 0 ? 'not reserved' : `"${reserved[0]!.status}"`}`);
      if (captured.length !== 1) bad(o.id, `completed with ${captured.length} captured payments (expected 1)`);
      else if (captured[0]!.amount_cents !== o.amount_cents) bad(o.id, `completed, but charged ${captured[0]!.amount_cents} cents instead of ${o.amount_cents}`);
      if (shipped.length !== 1) bad(o.id, `completed with ${shipped.length} shipments (expected 1)`);
      if (told.length !== 1 || told[0]!.kind !== 'order.completed') bad(o.id, `completed, but the customer was told ${told.map((n) => n.kind).join(', ') || 'nothing'}`);
      if (ends.length !== 1 || ends[0] !== 'order.completed') bad(o.id, `completed, but orders emitted ${ends.join(', ') || 'no final event'} (expected order.completed once)`);
    } else {
      if (reserved.some((r) => r.status === 'reserved')) bad(o.id, 'cancelled, but its stock is still reserved (never released)');
      if (captured.length > 0) bad(o.id, 'cancelled, but its payment was captured (the customer paid for nothing)');
      if (shipped.length > 0) bad(o.id, 'cancelled, but a shipment was scheduled');
      if (told.length !== 1 || told[0]!.kind !== 'order.cancelled') bad(o.id, `cancelled, but the customer was told ${told.map((n) => n.kind).join(', ') || 'nothing'}`);
      if (ends.length !== 1 || ends[0] !== 'order.cancelled') bad(o.id, `cancelled, but orders emitted ${ends.join(', ') || 'no final event'} (expected order.cancelled once)`);
    }
  }
  for (const [orderId, rows] of reservations) if (!known.has(orderId) && rows.some((r) => r.status === 'reserved')) bad(orderId, 'stock reserved for an order the shop does not have');
  for (const [orderId, rows] of payments) if (!known.has(orderId) && rows.some((p) => p.status === 'captured')) bad(orderId, 'a payment captured for an order the shop does not have');
  const now = new Map(stock.map((s) => [s.sku, s.available]));
  for (const [sku, initial] of Object.entries(initialStock)) {
    const expected = initial - (sold.get(sku) ?? 0);
    const seen = now.get(sku);
    if (seen !== expected) bad('stock', `${sku}: ${seen ?? 'no row'} available, expected ${expected} (${initial} at the start, ${sold.get(sku) ?? 0} sold)`);
  }
  return out;
}

function byOrder<R extends { order_id: string }>(rows: R[]): Map<string, R[]> {
  const m = new Map<string, R[]>();
  for (const r of rows) m.set(r.order_id, [...(m.get(r.order_id) ?? []), r]);
  return m;
}

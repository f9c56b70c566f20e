// Check 10.3: the learner's orders service runs among the reference inventory, payments, shipping
// and notifications, in a database of its own; the checker taps every event on the shop exchange
// and places the orders through the learner's placeOrder(). A completes, B is short of stock, C's
// card is declined. Y's event cannot be written to the outbox and Z's order row fails at COMMIT
// (the checker's triggers): placeOrder() must reject, leaving neither the row nor the event. W is
// placed and the service stopped at once; a new one (a new process) must still send W's event. U's
// event leaves but its outbox row cannot be marked sent (a trigger); the service is stopped and a
// new one must send it again, with the same messageId.
// Then late, repeated and early events go into shop.orders: a stock.rejected after A completed, a
// shipment.scheduled after C was cancelled, A's shipment.scheduled republished, and E's
// shipment.scheduled before inventory (stopped) has even reserved it. The oracle judges the end.
import { isDeepStrictEqual } from 'node:util';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/10-microservices/03-orders.js';
import { setStock } from '../../chapters/10-microservices/shop/world.js';
import {
  DECLINED_CARD,
  GOOD_CARD,
  STUCK_MS,
  expectConsistent,
  expectTable,
  freshModule,
  injectInto,
  labelsOf,
  names,
  pause,
  republished,
  shopDatabase,
  shopEvent,
  startLearnerService,
  startShopWorld,
  tapShop,
  waitQuiet,
  withResources,
} from './support.js';

type Ctx = CheckContext<typeof Exercise>;
type Orders = Exercise.OrdersService;
const SERVICES = ['orders', 'inventory', 'payments', 'shipping', 'notifications'];
const INITIAL = { lamp: 10, rare: 1 };

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await shopDatabase(defer);
    const sql = db.sql;
    const tap = await tapShop(t, defer);
    const shop = await startShopWorld(t, defer, db, ['orders']);
    await setStock(sql, INITIAL);
    const deps = { amqpUrl: t.url, databaseUrl: db.url };
    let orders = await startLearnerService(t, defer, 'startOrders({ amqpUrl, databaseUrl })', () => t.target.startOrders(deps));
    await expectTable(t, sql, 'orders.orders');
    if (typeof orders.service.placeOrder !== 'function') {
      t.fail({ summary: 'startOrders() resolved with an object without placeOrder().', expected: '{ placeOrder, stop }', fix: 'Return { placeOrder, stop: () => service.stop() }.' });
    }
    const ids: Record<string, string> = {};
    const order = (label: string, sku = 'lamp', card = GOOD_CARD) => ({ customerId: `customer-${label}`, items: [{ sku, qty: 1 }], amountCents: 3000 + label.charCodeAt(0), card });
    const place = async (label: string, sku?: string, card?: string, svc: Orders = orders.service) => {
      const id = await t.call(`placeOrder(order ${label})`, () => svc.placeOrder(order(label, sku, card)), { timeoutMs: 10_000 });
      if (typeof id !== 'string' || id === '') t.fail({ summary: `placeOrder() resolved with ${JSON.stringify(id)}, not the order id.`, expected: 'the new order id (a string)', fix: 'return orderId at the end of placeOrder().' });
      ids[label] = id;
      return id;
    };
    const fromOrders = (label: string, type?: string) => tap.of(ids[label]!, type).filter((e) => e.producer === 'orders');
    const statusOf = async (label: string) => (await sql.query<{ status: string; reason: string | null }>('SELECT status, reason FROM orders.orders WHERE id = $1', [ids[label]])).rows[0];
    const settle = (what: string) => settleShop(t, sql, ids, what);

    // ---- lines 1, 2, 3: an order that completes, one short of stock, one declined ----
    t.provoke([1, 2, 3], 'placed A (a lamp, in stock), B ("rare" ×2, only 1 in stock) and C (a declined card)');
    await place('A');
    ids.B = await t.call('placeOrder(order B)', () => orders.service.placeOrder({ ...order('B'), items: [{ sku: 'rare', qty: 2 }] }), { timeoutMs: 10_000 });
    await place('C', 'lamp', DECLINED_CARD);
    await settle('After orders A, B and C');
    const placedA = fromOrders('A', 'order.placed');
    t.observe(1, `read the tap: A ${names(fromOrders('A'))}; B ${names(fromOrders('B'))}; C ${names(fromOrders('C'))}`);
    if (placedA.length === 0) {
      t.fail({
        summary: 'placeOrder() returned an order id, and no order.placed with that correlationId reached the shop exchange.',
        expected: `order.placed with correlationId ${ids.A}`,
        why: 'Every other service starts from order.placed: without it the order stays pending for ever.',
        fix: "Add newEvent('orders', 'order.placed', { orderId, ...order }, { correlationId: orderId }) to the outbox in placeOrder()'s transaction.",
      });
    }
    const wantA = { orderId: ids.A, ...order('A') };
    const ev = placedA[0]!;
    if (!isDeepStrictEqual(ev.data, wantA) || ev.causationId !== undefined) {
      t.fail({
        summary: "order.placed does not carry the order as the others need it, or it claims a cause.",
        expected: `${JSON.stringify(wantA)}, no causation-id header (nothing caused it but the customer)`,
        saw: `${JSON.stringify(ev.data)}${ev.causationId ? `, causation-id ${ev.causationId}` : ''}`,
        why: 'Inventory reads the items, payments the amount and the card; the order id is how every later event finds the order.',
        fix: "newEvent('orders', 'order.placed', { orderId, ...order }, { correlationId: orderId }).",
      });
    }
    const [a, b, c] = [await statusOf('A'), await statusOf('B'), await statusOf('C')];
    t.observe([2, 3], `read orders.orders: A ${a?.status}, B ${b?.status} (${b?.reason}), C ${c?.status} (${c?.reason}); the tap: A ${names(fromOrders('A'))}, B ${names(fromOrders('B'))}, C ${names(fromOrders('C'))}`);
    if (a?.status !== 'completed' || fromOrders('A', 'order.completed').length !== 1 || fromOrders('A', 'order.completed')[0]!.data.orderId !== ids.A) {
      t.fail({
        summary: `Order A was shipped (shipment.scheduled), and is "${a?.status}" with ${names(fromOrders('A')) || 'no events'} from orders.`,
        expected: "status 'completed', and one order.completed {orderId}",
        why: 'shipment.scheduled is the last step of a good order: orders closes it and tells the others (notifications).',
        fix: "On shipment.scheduled: UPDATE … SET status = 'completed' WHERE id = $1 AND status = 'pending', and when a row moved, emit('order.completed', { orderId }).",
      });
    }
    for (const [label, row, cause] of [['B', b, 'stock.rejected'], ['C', c, 'payment.declined']] as const) {
      const cancelled = fromOrders(label, 'order.cancelled');
      if (row?.status !== 'cancelled' || row.reason !== cause || cancelled.length !== 1 || cancelled[0]!.data.orderId !== ids[label] || cancelled[0]!.data.reason !== cause) {
        t.fail({
          summary: `Order ${label} got ${cause}, and is "${row?.status}" (reason ${JSON.stringify(row?.reason ?? null)}) with ${names(fromOrders(label)) || 'no events'} from orders.`,
          expected: `status 'cancelled', reason '${cause}', and one order.cancelled {orderId, reason: '${cause}'}`,
          why: 'The customer and support read the reason; notifications tells the customer on order.cancelled.',
          fix: `On ${cause}: UPDATE … SET status = 'cancelled', reason = $2 WHERE id = $1 AND status = 'pending', and when a row moved, emit('order.cancelled', { orderId, reason }).`,
        });
      }
    }

    // ---- line 1: the row and the event are one write ----
    t.provoke(1, "made the outbox refuse Y's event (a trigger on orders.outbox) and Z's order row fail at COMMIT (a deferred trigger on orders.orders), then called placeOrder() for Y, for V (a good one) at once after it, and for Z");
    await sql.query(`
      CREATE FUNCTION checker_no_event() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the checker refused this event'; END $$;
      CREATE TRIGGER checker_no_event BEFORE INSERT ON orders.outbox FOR EACH ROW WHEN (NEW.data->>'customerId' = 'customer-Y') EXECUTE FUNCTION checker_no_event();
      CREATE FUNCTION checker_no_row() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the checker failed this order at COMMIT'; END $$;
      CREATE CONSTRAINT TRIGGER checker_no_row AFTER INSERT ON orders.orders DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.customer_id = 'customer-Z') EXECUTE FUNCTION checker_no_row();`);
    for (const label of ['Y', 'V', 'Z']) {
      if (label === 'V') {
        // At once after a failed one: its client must have gone back to the pool rolled back.
        const placed = await t.call('placeOrder(order V)', async () => {
          try {
            ids.V = await orders.service.placeOrder(order('V'));
            return 'placed';
          } catch (err) {
            return (err as Error).message;
          }
        }, { timeoutMs: 10_000 });
        if (placed !== 'placed') {
          t.fail({
            summary: `placeOrder(order V), called right after Y's failed, failed too: ${placed}.`,
            expected: 'V placed: a failed placeOrder() leaves nothing behind',
            why: "A client released inside a failed transaction goes back to the pool as it is: every statement of its next user fails with 'current transaction is aborted'.",
            fix: "In catch: await client.query('ROLLBACK') before you rethrow; release the client in finally.",
          });
        }
        continue;
      }
      const outcome = await t.call(`placeOrder(order ${label})`, async () => {
        try {
          return { id: await orders.service.placeOrder(order(label)) };
        } catch {
          return 'rejected' as const;
        }
      }, { timeoutMs: 10_000 });
      const events = Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders.outbox WHERE data->>'customerId' = $1`, [`customer-${label}`])).rows[0]!.n);
      if (outcome !== 'rejected' && label === 'Y' && events === 0) {
        t.fail({
          summary: 'placeOrder(order Y) resolved although the outbox refused its event: your placeOrder() does not write order.placed to orders.outbox.',
          expected: 'placeOrder() rejects: its event could not be written, so neither is the order',
          why: 'Publishing to the broker yourself, after (or before) the COMMIT, is two writes: a crash between them loses the event or announces an order that was never saved.',
          fix: "Add the event with addToOutbox(client, 'orders', [newEvent(…)]) in the transaction of the order row; the relay publishes it.",
        });
      }
      if (outcome !== 'rejected') {
        t.fail({
          summary: `placeOrder(order ${label}) resolved although ${label === 'Y' ? 'its event could not be written' : 'its transaction failed at COMMIT'}.`,
          expected: 'placeOrder() rejects with the error',
          why: 'The caller (an HTTP handler, say) would tell the customer "order placed" for an order that does not exist, or whose event never leaves.',
          fix: 'Let the error propagate: ROLLBACK in catch, then throw it again.',
        });
      }
    }
    const rowsYZ = (await sql.query<{ customer_id: string; status: string }>(`SELECT customer_id, status FROM orders.orders WHERE customer_id IN ('customer-Y', 'customer-Z')`)).rows;
    t.observe(1, `read orders.orders: ${rowsYZ.length} row(s) for Y and Z`);
    if (rowsYZ.length > 0) {
      t.fail({
        summary: `The order row of ${rowsYZ.map((r) => r.customer_id.replace('customer-', '')).join(' and ')} was saved without its event: the row and the outbox entry were written in two transactions.`,
        expected: "neither the row nor the event for Y (its event failed) and Z (its COMMIT failed)",
        saw: rowsYZ.map((r) => `${r.customer_id}: a '${r.status}' row`).join(', '),
        why: 'A row without its event is an order nobody else will ever hear of: it stays pending for ever (the dual-write problem).',
        fix: 'One client, BEGIN; INSERT the order; addToOutbox(client, …); COMMIT. Both or neither.',
      });
    }
    await settle('After orders Y and Z');
    await pause(500); // an event published for Z outside the transaction shows up now
    const stray = tap.events.filter((e) => e.type === 'order.placed' && ['customer-Y', 'customer-Z'].includes(String(e.data.customerId)));
    t.observe(1, `read the tap: ${stray.length} order.placed for Y and Z`);
    if (stray.length > 0) {
      t.fail({
        summary: `order.placed went out for ${stray.map((e) => String(e.data.customerId).replace('customer-', '')).join(' and ')}, an order whose transaction failed: the shop announced an order that does not exist.`,
        expected: 'no order.placed for Y and Z',
        why: 'Inventory reserves and payments charges for an order that is not there: nobody will ever complete or cancel it.',
        fix: 'Write the event to the outbox in the same transaction as the order row, and let the relay publish it after COMMIT.',
      });
    }

    // ---- line 1: stopped between the commit and the publish ----
    t.provoke(1, 'placed W and stopped your service at once (its event may still be in the outbox), then started a new one (a new process)');
    await place('W');
    await orders.stop();
    const restarted = await freshModule(t as Ctx);
    orders = await startLearnerService(t, defer, 'startOrders({ amqpUrl, databaseUrl }) (a new process)', () => restarted.startOrders(deps));
    await settle('After the restart with W');
    const placedW = fromOrders('W', 'order.placed');
    const statusW = await statusOf('W');
    t.observe(1, `read the tap: W's order.placed ${placedW.length} time(s) (${[...new Set(placedW.map((e) => e.messageId))].length} messageId(s)); W is ${statusW?.status}`);
    if (placedW.length === 0 || new Set(placedW.map((e) => e.messageId)).size !== 1 || statusW?.status !== 'completed') {
      t.fail({
        summary: `Order W, placed just before its service stopped, ${placedW.length === 0 ? 'never announced' : `announced with ${new Set(placedW.map((e) => e.messageId)).size} different messageIds`}; it is ${statusW?.status}.`,
        expected: 'order.placed for W (once, or more with the same messageId) and W completed',
        why: 'The outbox keeps the event until the relay has published it, whatever happens to the process: a copy, if any, has the same messageId, and the inbox of each service drops it.',
        fix: 'Write order.placed to the outbox in the transaction of the order row; the relay of the next process publishes what the last one left.',
      });
    }

    // ---- line 1: published, and stopped before the outbox row was marked sent ----
    t.provoke(1, "made the relay's mark of U fail (a trigger on orders.outbox refuses its sent_at: the event leaves, the row stays unsent), placed U, waited for its order.placed, stopped your service, dropped the trigger and started a new one");
    await sql.query(`CREATE FUNCTION checker_unmarked() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the checker keeps this event unsent'; END $$;
      CREATE TRIGGER checker_unmarked BEFORE UPDATE ON orders.outbox FOR EACH ROW WHEN (OLD.data->>'customerId' = 'customer-U') EXECUTE FUNCTION checker_unmarked();`);
    await place('U');
    await t.waitFor(() => fromOrders('U', 'order.placed').length > 0, 20_000, 50);
    await orders.stop();
    const copiesBefore = fromOrders('U', 'order.placed').length;
    await sql.query('DROP TRIGGER checker_unmarked ON orders.outbox');
    const again = await freshModule(t as Ctx);
    orders = await startLearnerService(t, defer, 'startOrders({ amqpUrl, databaseUrl }) (a new process)', () => again.startOrders(deps));
    await settle('After the restart with U');
    const placedU = fromOrders('U', 'order.placed');
    const statusU = await statusOf('U');
    t.observe(1, `read the tap: U's order.placed ${copiesBefore} time(s) before the restart, ${placedU.length - copiesBefore} after (${new Set(placedU.map((e) => e.messageId)).size} messageId(s)); U is ${statusU?.status}`);
    if (placedU.length <= copiesBefore || new Set(placedU.map((e) => e.messageId)).size !== 1 || statusU?.status !== 'completed') {
      t.fail({
        summary:
          placedU.length <= copiesBefore
            ? "Order U's event left before the stop, and its outbox row was never marked sent; the new process did not send it again: it was not published from the outbox."
            : `Order U's event was sent again after the restart with another messageId (${new Set(placedU.map((e) => e.messageId)).size} in all), or U is ${statusU?.status}.`,
        expected: "U's order.placed again after the restart, with the same messageId, and U completed",
        why: 'Only the outbox knows whether the broker took an event: a relay that dies between the publish and the mark sends it again, and the same messageId lets every inbox drop the copy.',
        fix: 'Write order.placed to the outbox in the transaction of the order row; never publish it yourself.',
      });
    }

    // ---- line 4: late, repeated and early events ----
    t.provoke(4, "put into shop.orders: a stock.rejected for A (completed), a shipment.scheduled for C (cancelled), A's shipment.scheduled republished; stopped inventory, placed E and sent its shipment.scheduled before anything else, then started inventory");
    const shippedA = tap.of(ids.A!, 'shipment.scheduled')[0]!;
    await injectInto(t, 'orders', [
      shopEvent('inventory', 'stock.rejected', { orderId: ids.A, sku: 'lamp' }, ids.A!),
      shopEvent('shipping', 'shipment.scheduled', { orderId: ids.C, shipmentId: '00000000-0000-4000-8000-0000000000cc' }, ids.C!),
      republished(shippedA),
    ]);
    await shop.world.stopService('inventory');
    await place('E');
    await t.waitFor(() => fromOrders('E', 'order.placed').length > 0, 20_000, 50);
    await injectInto(t, 'orders', [shopEvent('shipping', 'shipment.scheduled', { orderId: ids.E, shipmentId: '00000000-0000-4000-8000-0000000000ee' }, ids.E!)]);
    await t.waitFor(async () => (await statusOf('E'))?.status !== 'pending', 10_000, 50);
    await shop.startService('inventory');
    await settle('After the late and early events');
    await pause(300); // a second final event, sent late, shows up now
    const now = { A: await statusOf('A'), C: await statusOf('C'), E: await statusOf('E') };
    const finals = (label: string) => [...fromOrders(label, 'order.completed'), ...fromOrders(label, 'order.cancelled')];
    t.observe(4, `read orders.orders: A ${now.A?.status}, C ${now.C?.status}, E ${now.E?.status}; final events on the tap: A ${names(finals('A'))}; C ${names(finals('C'))}; E ${names(finals('E'))}`);
    if (now.A?.status !== 'completed' || now.C?.status !== 'cancelled') {
      t.fail({
        summary: `A late event moved a final status: A is now "${now.A?.status}" (was completed), C "${now.C?.status}" (was cancelled).`,
        expected: 'A completed and C cancelled, for good',
        why: 'Events arrive late and out of order; a completed order that becomes cancelled was shipped and is now refunded by nobody. A final status is final.',
        fix: "Move only from 'pending': UPDATE … WHERE id = $1 AND status = 'pending'.",
      });
    }
    const twice = ['A', 'B', 'C', 'E', 'U', 'V', 'W'].filter((l) => finals(l).length !== 1);
    if (twice.length > 0) {
      t.fail({
        summary: `Orders emitted its final event more or less than once for ${twice.map((l) => `${l} (${names(finals(l)) || 'none'})`).join(', ')}.`,
        expected: 'one order.completed or one order.cancelled per order',
        why: 'Each final event makes the customer get a message and the others close their books: a duplicate, or a second outcome, is seen by everybody.',
        fix: 'Emit only when your UPDATE moved a row (rowCount 1): a late or repeated event moves nothing and emits nothing.',
      });
    }

    await expectConsistent(t, [1, 2, 3, 4], sql, INITIAL, labelsOf(ids), (v) => ({
      summary: `The shop's final state is inconsistent: ${v.length} problem(s), the first: ${labelsOf(ids).get(v[0]!.orderId) ?? v[0]!.orderId}: ${v[0]!.problem}.`,
      why: 'A saga has no transaction around it: each service must leave its part right, or an order ends half done.',
      fix: 'Read the problems listed: each names the order and what is left.',
    }));
    await orders.stop();
    await t.expectConnectionsClosed('stop()');
  }),
);

async function settleShop(t: CheckContext<unknown>, sql: import('pg').ClientBase, ids: Record<string, string>, what: string): Promise<void> {
  const outcome = await waitQuiet(t, sql, SERVICES, 60_000);
  if (outcome === 'quiet') return;
  const pending = (await sql.query<{ id: string }>(`SELECT id FROM orders.orders WHERE status = 'pending'`)).rows.map((r) => labelsOf(ids).get(r.id) ?? r.id);
  t.fail({
    summary: `${what}: ${outcome === 'stuck' ? `nothing moved for ${STUCK_MS / 1000} s` : 'the shop did not come to rest within 60 s'}${pending.length ? `, and these orders are still pending: ${pending.join(', ')}` : ''}.`,
    expected: 'every order completed or cancelled, every queue empty',
    why: 'An order whose event never left, or whose last event orders did not act on, waits for ever: nothing in a choreography times it out.',
    fix: 'Write order.placed to the outbox in placeOrder(); move the order on shipment.scheduled, stock.rejected and payment.declined.',
  });
}

// Check 10.1: the learner's inventory runs among the reference orders, payments, shipping and
// notifications, in a database of its own. The checker taps every event on the shop exchange.
// Orders: one in stock (A), one with an item short (B), one with an unknown sku (C), one whose card
// is declined (D, released). Two orders race for the last unit while the database holds both
// transactions at their first insert (E, F). A's order.placed comes again (same messageId, then
// republished with a new one); D's payment.declined comes again, and one arrives for the rejected
// B and for an order nobody placed. Then G: reserved, inventory stopped, the decline arrives, and
// a new inventory releases it. It reads the events from the tap, the stock from Postgres, and at
// the end asks the oracle about every order.
import { isDeepStrictEqual } from 'node:util';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/10-microservices/01-inventory.js';
import { setStock } from '../../chapters/10-microservices/shop/world.js';
import { DELIVERY_LIMIT, deadQueueOf } from '../../chapters/10-microservices/shop/lib/consumer.js';
import {
  DECLINED_CARD,
  GOOD_CARD,
  STUCK_MS,
  expectConsistent,
  expectCausedBy,
  freshModule,
  injectInto,
  labelsOf,
  pause,
  shopDatabase,
  shopEvent,
  startLearnerService,
  startShopWorld,
  tapShop,
  waitQuiet,
  withResources,
  asSent,
  names,
  republished,
} from './support.js';

const SERVICES = ['orders', 'inventory', 'payments', 'shipping', 'notifications'];
const INITIAL = { apple: 10, pear: 3, last: 1, plum: 5 };

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await shopDatabase(defer);
    const sql = db.sql;
    const tap = await tapShop(t, defer);
    const shop = await startShopWorld(t, defer, db, ['inventory']);
    const deps = { amqpUrl: t.url, databaseUrl: db.url };
    const start = () => startLearnerService(t, defer, 'startInventory({ amqpUrl, databaseUrl })', () => t.target.startInventory(deps));
    let inventory = await start();
    await setStock(sql, INITIAL);
    // The race: the transaction that changes "last" first keeps it locked (and uncommitted) for 0.5 s,
    // so that the other order decides while the first has not committed yet.
    await sql.query(`CREATE FUNCTION checker_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
      CREATE TRIGGER checker_hold AFTER UPDATE ON inventory.stock FOR EACH ROW WHEN (NEW.sku = 'last') EXECUTE FUNCTION checker_hold();
      SELECT 1 FROM inventory.reservations LIMIT 0;`).catch((err: Error) => {
      t.fail({
        summary: `The tables inventory.stock and inventory.reservations are not as the exercise gives them: ${err.message}.`,
        expected: 'the tables of TABLES, created when the service starts',
        fix: 'Keep TABLES as the starter gives it (you may add constraints) and pass it to startService().',
      });
    });
    const orders = shop.world.orders!;
    const ids: Record<string, string> = {};
    const place = async (label: string, items: { sku: string; qty: number }[], card = GOOD_CARD) => {
      ids[label] = await orders.placeOrder({ customerId: `customer-${label}`, items, amountCents: 1000 + label.charCodeAt(0), card });
    };
    const labels = () => labelsOf(ids);
    const stockNow = async () => new Map((await sql.query<{ sku: string; available: number }>('SELECT sku, available FROM inventory.stock')).rows.map((r) => [r.sku, r.available]));
    const settle = async (what: string) => {
      const outcome = await waitQuiet(t, sql, SERVICES, 60_000);
      if (outcome !== 'quiet') {
        const pending = (await sql.query<{ id: string }>(`SELECT id FROM orders.orders WHERE status = 'pending'`)).rows.map((r) => labels().get(r.id) ?? r.id);
        t.fail({
          summary: `${what}: ${outcome === 'stuck' ? `nothing moved for ${STUCK_MS / 1000} s` : 'the shop did not come to rest within 60 s'}${pending.length ? `, and these orders are still pending: ${pending.join(', ')}` : ''}.`,
          expected: 'every order completed or cancelled, every queue empty',
          why: 'An order whose event inventory never answered (no stock.reserved, no stock.rejected) waits forever: nothing in a choreography times it out.',
          fix: 'Emit stock.reserved or stock.rejected for every order.placed you have not handled before; let errors propagate (the library retries the message).',
        });
      }
    };
    const fromInventory = (label: string, type?: string) => tap.of(ids[label]!, type).filter((e) => e.producer === 'inventory');

    // ---- line 1: in stock, an item short, an unknown sku, a declined card ----
    t.provoke(1, 'placed order A (apple ×2, in stock), B (apple ×1 and pear ×5: pear is short), C (kiwi: unknown) and D (apple ×1, pear ×1, a declined card)');
    await place('A', [{ sku: 'apple', qty: 2 }]);
    await place('B', [{ sku: 'apple', qty: 1 }, { sku: 'pear', qty: 5 }]);
    await place('C', [{ sku: 'kiwi', qty: 1 }]);
    await place('D', [{ sku: 'apple', qty: 1 }, { sku: 'pear', qty: 1 }], DECLINED_CARD);
    await settle('After orders A to D');
    const placedA = tap.of(ids.A!, 'order.placed')[0];
    const reservedA = fromInventory('A', 'stock.reserved');
    t.observe(1, `read inventory's events on the tap: A ${names(fromInventory('A'))}; B ${names(fromInventory('B'))}; C ${names(fromInventory('C'))}`);
    if (reservedA.length !== 1 || fromInventory('A', 'stock.rejected').length > 0) {
      t.fail({
        summary: `Order A (apple ×2, 10 in stock) got ${names(fromInventory('A')) || 'no event from inventory'}, not one stock.reserved.`,
        expected: 'stock.reserved {orderId, items, amountCents, card}, once',
        why: 'Payments charges the order when stock.reserved arrives: without it the order waits forever.',
        fix: 'Take every item with an UPDATE that decrements the stock, then tx.emit(\'stock.reserved\', { orderId, items, amountCents, card }).',
      });
    }
    const want = { orderId: ids.A, items: [{ sku: 'apple', qty: 2 }], amountCents: 1000 + 'A'.charCodeAt(0), card: GOOD_CARD };
    if (!isDeepStrictEqual(reservedA[0]!.data, want)) {
      t.fail({
        summary: 'stock.reserved does not carry what payments needs.',
        expected: JSON.stringify(want),
        saw: JSON.stringify(reservedA[0]!.data),
        why: 'Payments charges amountCents to card, and shipping and the oracle read the items: the event carries them on from order.placed.',
        fix: 'emit(\'stock.reserved\', { orderId, items, amountCents, card }) with the values of order.placed.',
      });
    }
    if (placedA) {
      expectCausedBy(t, reservedA[0]!, placedA, {
        summary: 'stock.reserved does not name the order.placed that caused it (header causation-id).',
        why: 'Tracing an order follows each event to its cause. tx.emit() sets it for you.',
        fix: 'Emit with tx.emit(type, data), inside the handler.',
      });
    }
    for (const [label, sku] of [['B', 'pear'], ['C', 'kiwi']] as const) {
      const rejected = fromInventory(label, 'stock.rejected');
      if (fromInventory(label, 'stock.reserved').length > 0 || rejected.length !== 1 || rejected[0]!.data.sku !== sku) {
        t.fail({
          summary: `Order ${label} (${sku} ${label === 'B' ? 'short: 3 in stock, 5 wanted' : 'unknown'}) got ${names(fromInventory(label)) || 'no event from inventory'}${rejected[0] ? ` naming sku ${JSON.stringify(rejected[0].data.sku)}` : ''}.`,
          expected: `one stock.rejected {orderId, sku: "${sku}"}, and no stock.reserved`,
          why: 'The orders service cancels the order on stock.rejected, and the customer is told which item is missing.',
          fix: 'When an UPDATE … WHERE sku = $1 AND available >= $2 changes no row, emit(\'stock.rejected\', { orderId, sku }) and take nothing.',
        });
      }
    }
    const after = await stockNow();
    t.observe(1, `read inventory.stock: apple ${after.get('apple')}, pear ${after.get('pear')}`);
    if ((after.get('apple') ?? 0) > 8) {
      // More apples than 10 − 2: a decrement was written over (D's release comes once here).
      t.fail({
        summary: `After A (apple ×2, kept), B (rejected) and D (released) the stock is apple ${after.get('apple')}, pear ${after.get('pear')}: more apples than are left. Orders handled at the same moment read the same stock, and each wrote back its own result: a lost update.`,
        expected: 'apple 8, pear 3 (10 − 2 for A; B took nothing; D gave its items back)',
        saw: `apple ${after.get('apple')}, pear ${after.get('pear')}`,
        why: 'The library handles up to 10 events at once. Read the stock, subtract in JavaScript, write it back, and two orders overwrite each other: a unit is sold twice.',
        fix: 'Decide and decrement in one statement: UPDATE inventory.stock SET available = available - $2 WHERE sku = $1 AND available >= $2 (or lock the row first with SELECT … FOR UPDATE).',
      });
    }
    if (after.get('apple') !== 8 || after.get('pear') !== 3) {
      t.fail({
        summary: `Order B was not all or nothing: after A (apple ×2, kept), B (rejected) and D (released) the stock is apple ${after.get('apple')}, pear ${after.get('pear')}.`,
        expected: 'apple 8, pear 3 (10 − 2 for A; B took nothing; D gave its items back)',
        saw: `apple ${after.get('apple')}, pear ${after.get('pear')}`,
        why: 'An order rejected for one short item must not keep the others: those apples are gone from the shelf for an order that will never ship.',
        fix: 'Take the items inside a SAVEPOINT and ROLLBACK TO SAVEPOINT when one is short (or check them all, locked, before you take any).',
      });
    }

    // ---- line 4: D's decline released its items, once ----
    const releasedD = () => fromInventory('D', 'stock.released');
    t.observe(4, `read the tap: D ${names(fromInventory('D'))}`);
    if (releasedD().length !== 1 || releasedD()[0]!.data.orderId !== ids.D) {
      t.fail({
        summary: `Order D's card was declined, and inventory emitted ${releasedD().length} stock.released${releasedD().length ? ` with ${JSON.stringify(releasedD()[0]!.data)}` : ''}.`,
        expected: 'one stock.released {orderId}',
        why: 'The compensation of a saga must happen, and be seen: stock.released says the items are back on the shelf.',
        fix: "On payment.declined: move the reservation from 'reserved' to 'released', add its items back, emit('stock.released', { orderId }).",
      });
    }

    // ---- line 2: two orders race for the last unit ----
    t.provoke(2, 'placed E and F, one "last" each (1 in stock), at once; the first transaction to change "last" held it 0.5 s before its commit');
    await Promise.all([place('E', [{ sku: 'last', qty: 1 }]), place('F', [{ sku: 'last', qty: 1 }])]);
    await settle('After the race of E and F');
    const winners = ['E', 'F'].filter((l) => fromInventory(l, 'stock.reserved').length > 0);
    const last = (await stockNow()).get('last');
    t.observe(2, `read the tap and the stock: ${winners.length} of E and F reserved, "last" at ${last}`);
    if (winners.length !== 1 || last !== 0) {
      t.fail({
        summary: winners.length > 1 ? 'Two orders both reserved the last unit of "last": it was sold twice.' : `The race for the last unit ended with ${winners.length} reservation(s) and a stock of ${last}.`,
        expected: 'one stock.reserved and one stock.rejected; "last" at 0',
        saw: `E: ${names(fromInventory('E'))}; F: ${names(fromInventory('F'))}; "last" at ${last}`,
        why: 'Both transactions read 1 before either wrote: read, compute in JavaScript and write back, and the second write overwrites the first (a lost update).',
        fix: 'Decide and decrement in one statement: UPDATE inventory.stock SET available = available - $2 WHERE sku = $1 AND available >= $2, and look at rowCount; or lock the rows first with SELECT … FOR UPDATE.',
      });
    }

    // ---- line 3: order.placed again, same messageId, then a new one ----
    t.provoke(3, "put A's order.placed into shop.inventory again: once as it was (same messageId), once republished with a new messageId; and B's republished");
    const placedB = tap.of(ids.B!, 'order.placed')[0]!;
    await injectInto(t, 'inventory', [asSent(placedA!), republished(placedA!), republished(placedB)]);
    await settle('After the duplicates of A and B');
    await pause(300); // a second stock.reserved, sent late, shows up now
    const stock3 = await stockNow();
    t.observe(3, `read the tap: A ${names(fromInventory('A'))}; B ${names(fromInventory('B'))}; apple at ${stock3.get('apple')}`);
    if (fromInventory('A', 'stock.reserved').length !== 1 || stock3.get('apple') !== 8) {
      t.fail({
        summary: `Order A was reserved ${fromInventory('A', 'stock.reserved').length} times: its order.placed, republished with a new messageId, took its apples again (apple at ${stock3.get('apple')}, not 8).`,
        expected: 'one stock.reserved for A, apple at 8',
        why: 'The inbox drops a redelivery (same messageId), but a producer that publishes again makes a new messageId. Only the business key, one reservation per order, catches that.',
        fix: 'Insert the reservation row first with ON CONFLICT (order_id) DO NOTHING; rowCount 0 means this order was handled: return.',
      });
    }
    if (fromInventory('B').length !== 1) {
      t.fail({
        summary: `Order B, rejected once, was answered again when its order.placed was republished: ${names(fromInventory('B'))}.`,
        expected: 'one stock.rejected for B, nothing more',
        why: 'Every event you emit twice is work for every service after you, and an order may flip-flop between outcomes.',
        fix: 'Record the order (even a rejected one) and return early when it is there already.',
      });
    }

    // ---- line 4: declined again, for a rejected order, for an unknown order ----
    t.provoke(4, "put into shop.inventory: D's payment.declined again (a new messageId), one for B (rejected, never reserved), one for an order nobody placed");
    const declinedD = tap.of(ids.D!, 'payment.declined')[0]!;
    const ghost = '00000000-0000-4000-8000-00000000beef';
    await injectInto(t, 'inventory', [
      republished(declinedD),
      shopEvent('payments', 'payment.declined', { orderId: ids.B, reason: 'card declined' }, ids.B!),
      shopEvent('payments', 'payment.declined', { orderId: ghost, reason: 'card declined' }, ghost),
    ]);
    await settle('After the repeated declines');
    await pause(300);
    const stock4 = await stockNow();
    const ghostEvents = tap.events.filter((e) => e.correlationId === ghost && e.producer === 'inventory');
    t.observe(4, `read the tap and the stock: D ${releasedD().length} stock.released, B ${names(fromInventory('B'))}, the unknown order ${names(ghostEvents) || 'nothing'}; apple ${stock4.get('apple')}, pear ${stock4.get('pear')}`);
    if (releasedD().length !== 1 || fromInventory('B', 'stock.released').length > 0 || ghostEvents.length > 0 || stock4.get('apple') !== 8 || stock4.get('pear') !== 3) {
      t.fail({
        summary: 'A payment.declined released stock that was not held: a second decline of D, or one for an order that never reserved anything, put items back.',
        expected: 'D released once; nothing for B or the unknown order; apple 8, pear 3',
        saw: `D: ${releasedD().length} stock.released; B: ${names(fromInventory('B'))}; unknown order: ${names(ghostEvents) || 'nothing'}; apple ${stock4.get('apple')}, pear ${stock4.get('pear')}`,
        why: 'Each release adds the items back: released twice, the shelf shows apples that do not exist, and two customers are sold the same one.',
        fix: "Release only a reservation in status 'reserved', moving it to 'released' in the same UPDATE (… WHERE order_id = $1 AND status = 'reserved' RETURNING items); no row: do nothing.",
      });
    }

    // ---- line 5: stopped between the reservation and the decline ----
    t.provoke(5, 'stopped payments, placed G (plum ×2, a declined card), waited for its stock.reserved, stopped your inventory, started payments (its decline waits in shop.inventory), then started a new inventory');
    await shop.world.stopService('payments');
    await place('G', [{ sku: 'plum', qty: 2 }], DECLINED_CARD);
    const reservedG = await t.waitFor(() => fromInventory('G', 'stock.reserved').length > 0, 20_000, 50);
    if (!reservedG) {
      t.fail({ summary: 'Order G (plum ×2, in stock) got no stock.reserved within 20 s.', expected: 'stock.reserved', fix: 'Emit stock.reserved for every order whose items are all in stock.' });
    }
    await inventory.stop();
    await shop.startService('payments');
    await t.waitFor(() => tap.of(ids.G!, 'payment.declined').length > 0, 20_000, 50);
    const restarted = await freshModule(t); // as a new process loads it: nothing kept in memory
    inventory = await startLearnerService(t, defer, 'startInventory({ amqpUrl, databaseUrl }) (a new process)', () => restarted.startInventory(deps));
    await settle('After the restart of inventory');
    const plum = (await stockNow()).get('plum');
    t.observe(5, `read the tap and the stock: G ${names(fromInventory('G'))}; plum at ${plum}`);
    if (fromInventory('G', 'stock.released').length !== 1 || plum !== 5) {
      t.fail({
        summary: `Order G was reserved, then its decline reached a NEW inventory process, which ${fromInventory('G', 'stock.released').length ? 'released it' : 'did not release it'} (plum at ${plum}, not 5).`,
        expected: 'one stock.released for G, plum back at 5',
        why: 'What a service remembers in memory dies with the process: a restart, a deploy, a crash. The reservation must be in the database, in the same transaction as the stock it took.',
        fix: "Read the reservation's items from inventory.reservations when payment.declined arrives, not from a Map.",
      });
    }

    // ---- no event failed for good ----
    const deadLetters = await t.takeMessages(deadQueueOf('inventory'), 100);
    t.observe([1, 4], `read ${deadQueueOf('inventory')}: ${deadLetters.length} event(s) that failed ${DELIVERY_LIMIT} times`);
    if (deadLetters.length > 0) {
      const first = deadLetters[0]!;
      t.fail({
        summary: `${deadLetters.length} event(s) failed ${DELIVERY_LIMIT} times in your handler and were dead-lettered, the first a ${first.properties.type} of ${labelsOf(ids).get(String(first.properties.correlationId)) ?? `an order nobody placed (${String(first.properties.correlationId)})`}.`,
        expected: `${deadQueueOf('inventory')} empty: every event handled, or deliberately ignored`,
        why: 'A handler that throws rolls back and the message comes again; after the delivery limit the quorum queue gives up on it. An event you cannot act on (a decline for an order you never reserved) is not an error: return without doing anything.',
        fix: 'Look for the case your handler does not expect (no reservation row, no stock row) and return early instead of throwing.',
      });
    }

    // ---- every order, across all services ----
    await expectConsistent(t, [1, 2, 3, 4, 5], sql, INITIAL, labelsOf(ids), (v) => ({
      summary: `The shop's final state is inconsistent: ${v.length} problem(s), the first: ${labelsOf(ids).get(v[0]!.orderId) ?? v[0]!.orderId}: ${v[0]!.problem}.`,
      why: 'A saga has no transaction around it: each service must leave its part right, or an order ends half done.',
      fix: 'Read the problems listed: each names the order and what is left.',
    }));
    await inventory.stop();
    await t.expectConnectionsClosed('stop()');
  }),
);

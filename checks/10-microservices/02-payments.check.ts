// Check 10.2: the learner's payments runs among the reference orders, inventory, shipping and
// notifications, in a database of its own; the checker taps every event on the shop exchange.
// A (a good card) and B (a declined card) go through the shop. A's and B's stock.reserved come
// again: as they were (same messageId) and republished (a new messageId). C's transaction fails
// once after its payment was written (the checker's trigger on payments.outbox): nothing of it may
// stay, and the retry charges it. Then two messages that are not events go into shop.payments, and
// D after them must still be charged. At the end the oracle judges every order.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/10-microservices/02-payments.js';
import { deadQueueOf, queueOf } from '../../chapters/10-microservices/shop/lib/consumer.js';
import { setStock } from '../../chapters/10-microservices/shop/world.js';
import {
  DECLINED_CARD,
  GOOD_CARD,
  STUCK_MS,
  expectConsistent,
  expectTable,
  expectCausedBy,
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
  injectInto,
  names,
  republished,
} from './support.js';

const SERVICES = ['orders', 'inventory', 'payments', 'shipping', 'notifications'];
const INITIAL = { book: 20 };
const FAILING_AMOUNT = 1313;

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await shopDatabase(defer);
    const sql = db.sql;
    const tap = await tapShop(t, defer);
    const shop = await startShopWorld(t, defer, db, ['payments']);
    await setStock(sql, INITIAL);
    const payments = await startLearnerService(t, defer, 'startPayments({ amqpUrl, databaseUrl })', () => t.target.startPayments({ amqpUrl: t.url, databaseUrl: db.url }));
    await expectTable(t, sql, 'payments.payments');
    const ids: Record<string, string> = {};
    const amounts: Record<string, number> = {};
    const place = async (label: string, card: string, amountCents = 2000 + label.charCodeAt(0)) => {
      amounts[label] = amountCents;
      ids[label] = await shop.world.orders!.placeOrder({ customerId: `customer-${label}`, items: [{ sku: 'book', qty: 1 }], amountCents, card });
    };
    // By the order id in the body: an event with the wrong correlationId still counts here, and is judged below.
    const fromPayments = (label: string, type?: string) => tap.events.filter((e) => e.producer === 'payments' && e.data.orderId === ids[label] && (type === undefined || e.type === type));
    const paymentRows = async (label: string) => (await sql.query<{ status: string; amount_cents: number }>('SELECT status, amount_cents FROM payments.payments WHERE order_id = $1', [ids[label]])).rows;
    const settle = async (what: string) => {
      const outcome = await waitQuiet(t, sql, SERVICES, 60_000);
      if (outcome === 'quiet') return;
      const pending = (await sql.query<{ id: string }>(`SELECT id FROM orders.orders WHERE status = 'pending'`)).rows.map((r) => labelsOf(ids).get(r.id) ?? r.id);
      const paidSilently = [];
      for (const label of Object.keys(ids)) if ((await paymentRows(label)).length > 0 && fromPayments(label).length === 0) paidSilently.push(`order ${label}`);
      t.fail({
        summary: paidSilently.length
          ? `${what}: ${paidSilently.join(', ')} has a payment row but no payment event, and stays pending: the payment was written outside the handler's transaction.`
          : `${what}: ${outcome === 'stuck' ? `nothing moved for ${STUCK_MS / 1000} s` : 'the shop did not come to rest within 60 s'}${pending.length ? `, and these orders are still pending: ${pending.join(', ')}` : ''}.`,
        expected: 'every order completed or cancelled, every queue empty',
        why: paidSilently.length
          ? 'The payment was written outside the handler\'s transaction: it stayed when that transaction failed, and the retry, finding it, emitted nothing. The order waits forever.'
          : 'An order whose stock.reserved payments never answered (no payment.captured, no payment.declined) waits forever: nothing in a choreography times it out.',
        fix: paidSilently.length
          ? 'Write with tx.client, the handler\'s transaction: the payment, the inbox entry and the event commit together or not at all.'
          : 'Record the payment and emit payment.captured or payment.declined for every order you have not charged before; let errors propagate (the library retries the message).',
      });
    };

    // ---- lines 1 and 3: a good card and a declined one ----
    t.provoke([1, 3], 'placed order A (a good card) and B (the declined card 4000000000000002)');
    await place('A', GOOD_CARD);
    await place('B', DECLINED_CARD);
    await settle('After orders A and B');
    const capturedA = fromPayments('A', 'payment.captured');
    const declinedB = fromPayments('B', 'payment.declined');
    t.observe(1, `read payments' events on the tap: A ${names(fromPayments('A'))}; B ${names(fromPayments('B'))}`);
    if (capturedA.length !== 1 || fromPayments('A', 'payment.declined').length > 0) {
      t.fail({
        summary: `Order A (a good card) got ${names(fromPayments('A')) || 'no event from payments'}, not one payment.captured.`,
        expected: 'payment.captured {orderId, paymentId, amountCents}, once',
        why: 'Shipping ships the order when payment.captured arrives.',
        fix: "Record the payment as 'captured' and tx.emit('payment.captured', { orderId, paymentId, amountCents }).",
      });
    }
    const a = capturedA[0]!.data;
    if (a.orderId !== ids.A || a.amountCents !== amounts.A || typeof a.paymentId !== 'string') {
      t.fail({
        summary: 'payment.captured does not carry what it must.',
        expected: JSON.stringify({ orderId: ids.A, paymentId: '<the payment id>', amountCents: amounts.A }),
        saw: JSON.stringify(a),
        why: 'The others read the order id and the amount from it; the payment id is what a refund would name.',
        fix: "emit('payment.captured', { orderId, paymentId, amountCents }) with the order's values.",
      });
    }
    const reason = declinedB[0]?.data.reason;
    if (declinedB.length !== 1 || fromPayments('B', 'payment.captured').length > 0 || declinedB[0]!.data.orderId !== ids.B || typeof reason !== 'string' || reason === '') {
      t.fail({
        summary: `Order B (the declined card ${DECLINED_CARD}) got ${names(fromPayments('B')) || 'no event from payments'}${declinedB[0] ? ` with ${JSON.stringify(declinedB[0].data)}` : ''}.`,
        expected: "payment.declined {orderId, reason} (a reason in words, e.g. 'card declined'), once, and no payment.captured",
        why: 'payment.declined starts the compensation: inventory puts the items back and orders cancels the order.',
        fix: `When card === DECLINED_CARD, record the payment as 'declined' and emit('payment.declined', { orderId, reason }).`,
      });
    }
    const rows = [...(await paymentRows('A')), ...(await paymentRows('B'))];
    t.observe(1, `read payments.payments: ${rows.map((r) => `${r.status} ${r.amount_cents}`).join(', ') || 'no rows'}`);
    if (rows.length !== 2 || rows.filter((r) => r.status === 'captured').length !== 1) {
      t.fail({
        summary: `payments.payments holds ${rows.length} row(s) for A and B: ${rows.map((r) => r.status).join(', ') || 'none'}.`,
        expected: "one row each: A 'captured', B 'declined'",
        why: 'The oracle and the next duplicate both read this table: a payment not recorded is a payment made again.',
        fix: 'INSERT INTO payments.payments (order_id, payment_id, amount_cents, status) … for every order, captured or declined.',
      });
    }
    const reservedA = tap.of(ids.A!, 'stock.reserved')[0];
    t.observe(3, `read the properties of A's payment.captured: correlationId ${capturedA[0]!.correlationId}, causation-id ${capturedA[0]!.causationId ?? 'none'}`);
    if (capturedA[0]!.correlationId !== ids.A) {
      t.fail({
        summary: "payment.captured does not carry the order's correlationId.",
        expected: `correlationId ${ids.A} (the order id, shared by every event of the order)`,
        saw: capturedA[0]!.correlationId || 'none',
        why: 'Tracing an order means finding every event with its correlation id: an event with another one drops out of the story.',
        fix: 'Emit with tx.emit(type, data): it copies the correlationId of the event being handled.',
      });
    }
    if (reservedA) {
      expectCausedBy(t, capturedA[0]!, reservedA, {
        summary: 'payment.captured does not name its cause: the header causation-id is not the messageId of the stock.reserved it answers.',
        why: 'Causation ids turn a pile of events into a chain: which event caused which, across services.',
        fix: 'Emit with tx.emit(type, data): it sets causation-id to the messageId of the event being handled.',
      });
    }

    // ---- line 2: the same stock.reserved again, and republished ----
    t.provoke(2, "put A's stock.reserved into shop.payments again as it was (same messageId), then A's and B's republished (new messageIds)");
    const reservedB = tap.of(ids.B!, 'stock.reserved')[0]!;
    await injectInto(t, 'payments', [asSent(reservedA!), republished(reservedA!), republished(reservedB)]);
    await settle('After the duplicates');
    await pause(300); // a second charge, sent late, shows up now
    const rowsA = await paymentRows('A');
    const rowsB = await paymentRows('B');
    t.observe(2, `read the tap and payments.payments: A ${names(fromPayments('A'))} (${rowsA.length} row(s)); B ${names(fromPayments('B'))} (${rowsB.length} row(s))`);
    if (rowsA.length !== 1 || fromPayments('A').length !== 1) {
      t.fail({
        summary: `Order A was charged ${rowsA.length} times (${fromPayments('A').length} payment events): its stock.reserved, republished with a new messageId, charged it again.`,
        expected: 'one payment row and one payment.captured for A',
        why: 'The inbox drops a redelivery (same messageId), but a producer that publishes again makes a new messageId. Only the business key, one payment per order, stops the second charge.',
        fix: 'Make order_id the primary key of payments.payments and insert with ON CONFLICT DO NOTHING; rowCount 0 means the order is charged already: return without emitting.',
      });
    }
    if (rowsB.length !== 1 || fromPayments('B').length !== 1) {
      t.fail({
        summary: `Order B (declined) was answered ${fromPayments('B').length} times: its republished stock.reserved was declined again.`,
        expected: 'one payment row and one payment.declined for B',
        why: 'A declined payment is a payment too: not recorded, it is tried again on every duplicate, and each payment.declined starts the compensation again.',
        fix: "Record declined payments as well (status 'declined'), in the same table, with the same unique order_id.",
      });
    }

    // ---- line 4: the transaction fails after the payment was written ----
    t.provoke(4, `placed C (${FAILING_AMOUNT} cents); the checker's trigger on payments.outbox fails its first payment.captured: the transaction rolls back after the payment row was written`);
    await sql.query(`CREATE SEQUENCE checker_fail_once;
      CREATE FUNCTION checker_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.type = 'payment.captured' AND NEW.data->>'amountCents' = '${FAILING_AMOUNT}' AND nextval('checker_fail_once') = 1 THEN
          RAISE EXCEPTION 'the checker made this transaction fail once' USING ERRCODE = '40001';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER checker_fail BEFORE INSERT ON payments.outbox FOR EACH ROW EXECUTE FUNCTION checker_fail();`);
    await place('C', GOOD_CARD, FAILING_AMOUNT);
    await settle('After order C');
    const failed = Number((await sql.query<{ last_value: string; is_called: boolean }>('SELECT last_value, is_called FROM checker_fail_once')).rows[0]!.is_called);
    const rowsC = await paymentRows('C');
    t.observe(4, `read the tap and payments.payments: C ${names(fromPayments('C'))} (${rowsC.length} row(s)); the trigger failed ${failed} transaction(s)`);
    if (fromPayments('C', 'payment.captured').length !== 1 || rowsC.length !== 1) {
      t.fail({
        summary: `Order C's transaction failed once, and then C got ${names(fromPayments('C')) || 'no payment event'} with ${rowsC.length} payment row(s).`,
        expected: 'one payment row and one payment.captured for C (the retry charges it)',
        why: 'A failed transaction must leave nothing behind: the library requeues the message and the retry must find a clean slate.',
        fix: 'Write with tx.client only, and let errors propagate.',
      });
    }

    // ---- line 5: messages that are not events ----
    t.provoke(5, 'put into shop.payments a message whose body is not JSON and one without a messageId, then placed D');
    const ch = await t.confirmChannel();
    ch.sendToQueue(queueOf('payments'), Buffer.from('{not json'), { messageId: 'checker-not-json', correlationId: 'checker', type: 'stock.reserved', persistent: true });
    ch.sendToQueue(queueOf('payments'), Buffer.from(JSON.stringify({ orderId: 'x', amountCents: 1, card: GOOD_CARD })), { correlationId: 'checker', type: 'stock.reserved', persistent: true });
    await ch.waitForConfirms();
    await ch.close();
    await place('D', GOOD_CARD);
    await settle('After the malformed messages and order D');
    const dead = await t.messageCount(deadQueueOf('payments'));
    const consumers = await t.consumerCount(queueOf('payments'));
    t.observe(5, `read the tap and the queues: D ${names(fromPayments('D'))}; ${dead} message(s) in ${deadQueueOf('payments')}; ${consumers} consumer(s) on ${queueOf('payments')}`);
    if (fromPayments('D', 'payment.captured').length !== 1 || consumers < 1) {
      t.fail({
        summary: `After two messages that were not events, order D got ${names(fromPayments('D')) || 'no payment event'} and shop.payments has ${consumers} consumer(s).`,
        expected: 'D charged; the two messages rejected without requeue (dead-lettered); the consumer still there',
        why: 'A message that cannot be read will never be readable: requeued, it comes back forever and blocks the queue (a poison message).',
        fix: "Consume with the library's consumeEvents()/startService(): it rejects such a message without requeue.",
      });
    }

    await expectConsistent(t, [1, 2, 4], sql, INITIAL, labelsOf(ids), (v) => ({
      summary: `The shop's final state is inconsistent: ${v.length} problem(s), the first: ${labelsOf(ids).get(v[0]!.orderId) ?? v[0]!.orderId}: ${v[0]!.problem}.`,
      why: 'A saga has no transaction around it: each service must leave its part right, or an order ends half done.',
      fix: 'Read the problems listed: each names the order and what is left.',
    }));
    await payments.stop();
    await t.expectConnectionsClosed('stop()');
  }),
);

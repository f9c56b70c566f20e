// Check 10.4: the learner's orchestrator runs in the worker, on a database of its own; the checker
// plays the participants (04-orchestrator.world.ts): it receives the commands on a queue of its
// own and answers them on the shop exchange. Ten orders, each with its own trouble: a plain one
// (placed twice, and the COMMIT of its move to 'charging' failed twice by a deferred trigger), out
// of stock, a declined card, every reply sent three times and one arriving out of order, replies
// lost (once, or always) on the reserve (whose first retry the outbox refuses, failing the sweep's
// transaction half-way) and on the charge, shipping down, a compensation whose replies are lost
// three times, and one whose reply waits while the checker stops the orchestrator and starts it
// again on the same database. At the end every saga is finished, and the participants'
// books agree with it: completed -> reserved, charged and shipped; cancelled -> nothing reserved,
// nothing charged. Then late replies for a finished saga change nothing, stop() closes everything.
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { newEvent, SHOP_EXCHANGE } from '../../chapters/10-microservices/shop/lib/envelope.js';
import { CHECKER, checkerStep, freshDatabase, rejection, withResources, type CheckDb } from '../13-capstone/support.js';
import type * as Exercise from '../../exercises/10-microservices/04-orchestrator.js';
import { COMMAND_TYPES, DECLINED_CARD, PARTICIPANTS_QUEUE, Participants, order, type CommandType, type Order } from './04-orchestrator.world.js';

type Ctx = CheckContext<typeof Exercise>;

const STEP_MS = 1500;
const ATTEMPTS = 3;
const QUEUE = 'shop.orchestrator';
const DEAD = 'shop.orchestrator.dead';
const FINAL = new Set(['completed', 'cancelled']);
/** The state a saga waits in while each forward command is unanswered. */
const STEP_STATE: Record<string, string> = { 'inventory.reserve': 'reserving', 'payment.charge': 'charging', 'shipping.schedule': 'scheduling' };

const A = order('A', 'a plain order, placed twice; its move to charging fails twice in the database');
const B = order('B', 'its item is out of stock', { outOfStock: true });
const C = order('C', 'its card is declined', { card: DECLINED_CARD });
const D = order('D', 'every reply arrives three times, and an old stock.reserved arrives again before the shipment', { duplicate: true, stale: true });
const E = order('E', 'inventory reserves it, but every reply of inventory.reserve is lost', { lose: { 'inventory.reserve': 'all' } });
const F = order('F', 'the first reply to payment.charge is lost', { lose: { 'payment.charge': 1 } });
const G = order('G', 'shipping is down: shipping.schedule is never handled', { down: 'shipping.schedule' });
const H = order('H', 'payments charges it, but every reply of payment.charge is lost', { lose: { 'payment.charge': 'all' } });
const I = order('I', "its payment.captured waits while the checker stops the orchestrator and starts it again", { hold: 'payment.charge' });
const J = order('J', 'its card is declined, and the first three replies of inventory.release are lost', { card: DECLINED_CARD, lose: { 'inventory.release': 3 } });
const ORDERS = [A, B, C, D, E, F, G, H, I, J];
const EXPECTED: Record<string, 'completed' | 'cancelled'> = { A: 'completed', B: 'cancelled', C: 'cancelled', D: 'completed', E: 'cancelled', F: 'completed', G: 'cancelled', H: 'cancelled', I: 'completed', J: 'cancelled' };

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const db = await freshDatabase(defer, 'none');
    const logged: string[] = [];
    const deps: Exercise.SagaDeps = { amqpUrl: t.url, databaseUrl: db.url, stepTimeoutMs: STEP_MS, maxAttempts: ATTEMPTS, log: (line) => void logged.push(line) };

    // The participants: the checker's queue for the commands, its confirm channel for the replies.
    const ch = await t.channel();
    await ch.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
    await ch.assertQueue(PARTICIPANTS_QUEUE, { exclusive: true });
    for (const key of COMMAND_TYPES) await ch.bindQueue(PARTICIPANTS_QUEUE, SHOP_EXCHANGE, key);
    const world = new Participants(await t.confirmChannel());
    ORDERS.forEach((o) => world.add(o));
    await world.listen(ch);

    let saga = await t.call('startOrderSaga({ amqpUrl, databaseUrl, stepTimeoutMs: 1500, maxAttempts: 3 })', () => t.target.startOrderSaga(deps), { timeoutMs: 15000 });
    let running = true;
    defer(() => (running ? rejection(() => saga.stop(), 5000) : undefined));
    const consuming = await t.waitFor(async () => (await t.consumerCount(QUEUE).catch(() => 0)) > 0, 5000, 50);
    if (!consuming) {
      t.fail({
        summary: `startOrderSaga() resolved, but nobody consumes "${QUEUE}".`,
        expected: `a consumer on "${QUEUE}", bound to 'order.placed' and to every reply`,
        why: 'The orchestrator learns of orders and of its participants\' answers from its queue only.',
        fix: "Start it with the library's startService({ service: 'orchestrator', deps, tables, keys: ['order.placed', …every reply type], handle }).",
      });
    }
    await failTwiceOnCharging(t, db, A);
    await failFirstRetry(t, db, E);

    // ---- lines 1 to 6: the orders, each with its trouble --------------------------------------
    for (const o of ORDERS) await world.send(placed(o));
    await world.send(placed(A)); // placed again: republished, with a new messageId
    await world.send(newEvent('inventory', 'stock.reserved', { orderId: 'no-such-order', items: [] }, { correlationId: 'no-such-order' }));
    t.provoke(1, `published order.placed for ten orders, and order A a second time (republished: a new messageId)`);
    t.provoke(2, "made the COMMIT of order A's move to 'charging' fail twice (a deferred trigger raises an error), and the outbox refuse the first retry of order E's inventory.reserve, so that their transactions roll back");
    t.provoke(3, 'answered every command as inventory, payments and shipping would: out of stock for order B, a declined card for orders C and J, success for the others');
    t.provoke(4, "sent every reply of order D three times (the same message twice, then republished), an old stock.reserved of D again after its charge, and a stock.reserved for an order nobody placed");
    t.provoke(5, 'lost every reply of inventory.reserve for order E and of payment.charge for order H, the first one of payment.charge for order F, and never handled shipping.schedule for order G');
    t.provoke(6, 'lost the first three replies of inventory.release for order J');

    // ---- line 7: stop() and start again in the middle of the sagas -----------------------------
    const iCharged = await t.waitFor(() => world.commands(I, 'payment.charge').length > 0, 10000, 25);
    if (!iCharged) failStuck(t, world, await states(t, db), `Order I never got to payment.charge`);
    await t.call('saga.stop() (in the middle of the sagas)', () => saga.stop(), { timeoutMs: 10000 });
    running = false;
    await world.release(I); // waits in the queue while nobody consumes it
    t.provoke(7, `stopped the orchestrator while order I waited for its payment.captured (and other sagas waited for time-outs), published that reply, and started a new orchestrator on the same database`);
    saga = await t.call('startOrderSaga(…) again, on the same database', () => t.target.startOrderSaga(deps), { timeoutMs: 15000 });
    running = true;

    // ---- the end: every saga finished, and the books agree ------------------------------------
    const settled = await t.waitFor(async () => {
      const s = await states(t, db);
      return ORDERS.every((o) => FINAL.has(s.get(o.orderId) ?? '')) ? s : undefined;
    }, 25000, 100);
    const final = settled ?? (await states(t, db));
    t.observe(1, `orchestrator.sagas holds ${final.size} row(s): ${ORDERS.map((o) => `${o.label} ${final.get(o.orderId) ?? '(none)'}`).join(', ')}`);
    const malformed = world.received.find((r) => r.problem);
    if (malformed) {
      t.fail({
        summary: `A ${malformed.type} command the orchestrator sent is not what a participant can work with: ${malformed.problem}.`,
        expected: "commands with correlationId = the order id and the data COMMANDS gives: { orderId, items } to reserve and schedule, { orderId, amountCents, card } to charge, { orderId, amountCents } to refund, { orderId } to release",
        why: 'A participant only knows what the command tells it: which order, which items, how much, and the correlationId that ties every message of the order together for tracing.',
        fix: "Send the commands with the handler's emit(COMMANDS[state].type, COMMANDS[state].data(order)); in the sweep, with newEvent('orchestrator', type, data, { correlationId: orderId }).",
      });
    }
    const wrong = ORDERS.filter((o) => final.get(o.orderId) !== EXPECTED[o.label]);
    if (wrong.length) failStates(t, world, final, wrong);
    if (final.size !== ORDERS.length) {
      t.fail({
        summary: `orchestrator.sagas holds ${final.size} rows for ${ORDERS.length} orders (and a reply for an order nobody placed).`,
        expected: 'one row per order placed, whatever else arrives',
        why: 'A reply for an unknown order has no saga to move: making one up starts a saga nobody placed.',
        fix: 'A reply whose saga row does not exist changes nothing: return.',
      });
    }

    // Line 1: one saga, one reserve, for an order placed twice.
    const aReserves = world.commands(A, 'inventory.reserve').length;
    t.observe(1, `order A, placed twice: ${aReserves} inventory.reserve command(s)`);
    if (aReserves === 0 || repeatsTooSoon(world.commands(A, 'inventory.reserve')) > 0) {
      t.fail({
        summary: `Order A was placed twice (the second order.placed republished, with a new messageId), and the participants got ${aReserves} inventory.reserve commands for it.`,
        expected: 'one saga and one inventory.reserve per order, however often order.placed arrives',
        why: "The inbox drops a message it has seen (same messageId); a republished event has a new one. Only the saga's primary key can tell that the order is the same.",
        fix: "INSERT INTO orchestrator.sagas … ON CONFLICT (order_id) DO NOTHING, and emit inventory.reserve only when the insert made a row (rowCount === 1).",
      });
    }

    // Line 2: a rolled-back change sent no command.
    const aCharges = world.commands(A, 'payment.charge');
    const { rows: refusals } = await db.sql.query<{ n: string; e: string }>('SELECT (SELECT last_value FROM checker_refusals) AS n, (SELECT last_value FROM checker_outbox_count) AS e');
    t.observe(2, `order A, whose move to 'charging' the database refused ${Math.min(2, Number(refusals[0]!.n))} time(s): ${aCharges.length} payment.charge command(s), saga ${final.get(A.orderId)}; order E's outbox took ${Number(refusals[0]!.e) - 1} inventory.reserve(s) and refused 1, the participants got ${world.commands(E, 'inventory.reserve').length}`);
    if (aCharges.length === 0 || repeatsTooSoon(aCharges) > 0) {
      t.fail({
        summary: `Order A's move to 'charging' rolled back twice (the checker made the database refuse it), and its participants got ${aCharges.length} payment.charge commands: commands left for changes that never happened.`,
        expected: `1 payment.charge command, the one of the transaction that committed (or a retry a whole stepTimeoutMs later)`,
        saw: `${aCharges.length} commands at ${aCharges.map((c) => new Date(c.at).toISOString().slice(17, 23)).join(', ')}`,
        why: 'A command published from the handler leaves at once, whatever the transaction does next. When it rolls back, the saga did not move, but the customer is charged; the next attempt charges again. Commands in the outbox leave only with a COMMIT.',
        fix: "Never publish in a handler: emit(type, data) (the library writes it to the outbox in the handler's transaction); in the sweep, addToOutbox(client, 'orchestrator', events) before its COMMIT.",
      });
    }

    booksAgree(t, world, final);
    commandCounts(t, world);

    // ---- line 4: late replies for finished sagas, and nothing left in the dead-letter queue ----
    const late = [
      newEvent('payments', 'payment.declined', { orderId: A.orderId, reason: 'late' }, { correlationId: A.orderId }),
      newEvent('shipping', 'shipment.scheduled', { orderId: A.orderId, shipmentId: 'late' }, { correlationId: A.orderId }),
      newEvent('inventory', 'stock.reserved', { orderId: C.orderId, items: C.items }, { correlationId: C.orderId }),
      newEvent('payments', 'payment.captured', { orderId: H.orderId, amountCents: H.amountCents }, { correlationId: H.orderId }),
    ];
    const lateAt = Date.now();
    for (const ev of late) await world.send(ev);
    const K = order('K', 'a plain order placed after the late replies');
    world.add(K);
    await world.send(placed(K));
    t.provoke(4, 'sent late replies to finished sagas: payment.declined and shipment.scheduled for the completed order A, stock.reserved for the cancelled order C, payment.captured for the cancelled order H; then placed order K');
    await t.waitFor(() => world.commands(K, 'inventory.reserve').length > 0, 8000, 25);
    await t.pause(700);
    const after = await states(t, db);
    const moved = [A, C, H].filter((o) => after.get(o.orderId) !== final.get(o.orderId));
    const extra = [A, C, H].flatMap((o) => world.received.filter((r) => r.orderId === o.orderId && r.at >= lateAt));
    t.observe(4, `after the late replies: A ${after.get(A.orderId)}, C ${after.get(C.orderId)}, H ${after.get(H.orderId)}; ${extra.length} new command(s) for them`);
    if (moved.length || extra.length) {
      t.fail({
        summary: `A late reply moved a finished saga: ${[...moved.map((o) => `order ${o.label} went from '${final.get(o.orderId)}' to '${after.get(o.orderId)}'`), ...extra.map((r) => `a ${r.type} command went out for order ${labelOf(r.orderId)}`)].join('; ')}.`,
        expected: "'completed' and 'cancelled' are final: a reply that comes after them changes nothing and sends nothing",
        why: 'Replies come late and out of order: after a retry, both the first and the second answer arrive. A finished saga that moves again releases the stock of a shipped order, or charges a cancelled one.',
        fix: 'Look up the reply in STEPS[saga.state].replies: completed and cancelled have no entry, so nothing answers them.',
      });
    }
    const dead = await t.messageCount(DEAD).catch(() => 0);
    t.observe(4, `"${DEAD}" holds ${dead} message(s)`);
    if (dead > 0) {
      const taken = await t.takeMessages(DEAD, 5);
      t.fail({
        summary: `${dead} message(s) ended in "${DEAD}": the orchestrator failed on them ${5} times in a row, e.g. a ${taken[0]?.properties.type ?? '?'} for order ${labelOf(String(taken[0]?.properties.correlationId))}.`,
        expected: 'every message handled: a reply the saga does not wait for is acked and ignored, not an error',
        saw: logged.slice(-3).join(' | ') || 'nothing logged',
        why: "A handler that throws rolls back and the message comes again, up to the queue's delivery limit; then it is dead-lettered. A reply to a finished saga is normal, not a failure.",
        fix: 'When there is no saga row, or STEPS[saga.state] has no entry for the reply (a finished saga), return without error.',
      });
    }

    // ---- line 7: stop() closes everything ------------------------------------------------------
    await t.call('saga.stop()', () => saga.stop(), { timeoutMs: 10000 });
    running = false;
    await t.expectConnectionsClosed('saga.stop()');
    const backends = await t.waitFor(async () => (await learnerBackends(db)) === 0, 2000, 50);
    t.observe(7, `after stop(): order I ${final.get(I.orderId)}; ${backends ? 'no' : await learnerBackends(db)} Postgres connection(s) of yours left`);
    if (!backends) {
      t.fail({
        summary: `saga.stop() returned, and ${await learnerBackends(db)} Postgres connection(s) of the orchestrator are still open.`,
        expected: 'no connection to the database left',
        why: 'A pool left open keeps the process alive and holds connections the database counts against its limit.',
        fix: 'stop(): stop the sweep (await its pass in progress), then service.stop(), which ends the pool.',
      });
    }
  }),
);

/**
 * Commands that came sooner than half a stepTimeoutMs after the one before: not retries (a retry
 * waits a whole stepTimeoutMs), so something else sent them. A slow machine can delay a reply
 * past the time-out and cause a true retry; that one comes late enough not to count.
 */
function repeatsTooSoon(cmds: { at: number }[]): number {
  return cmds.filter((c, i) => i > 0 && c.at - cmds[i - 1]!.at < STEP_MS / 2).length;
}

function placed(o: Order) {
  return newEvent('orders', 'order.placed', { orderId: o.orderId, customerId: o.customerId, items: o.items, amountCents: o.amountCents, card: o.card }, { correlationId: o.orderId });
}

const labels = new Map<string, string>();
function labelOf(orderId: string): string {
  if (labels.size === 0) for (const o of ORDERS) labels.set(o.orderId, o.label);
  return labels.get(orderId) ?? orderId;
}

/** Each saga's state, from the orchestrator's table. */
async function states(t: Ctx, db: CheckDb): Promise<Map<string, string>> {
  const { rows } = await checkerStep(t, 'read orchestrator.sagas', () => db.sql.query<{ order_id: string; state: string }>('SELECT order_id, state FROM orchestrator.sagas'), {
    why: 'The checker reads each saga from its row: orchestrator.sagas (order_id text PRIMARY KEY, state text, …) in the database you were given.',
    fix: "Create the table with the TABLES the starter gives (startService() runs it), in the schema 'orchestrator'.",
  });
  return new Map(rows.map((r) => [r.order_id, r.state]));
}

/** The checker's trigger: the COMMIT that makes order `o` 'charging' fails twice, then passes. */
async function failTwiceOnCharging(t: Ctx, db: CheckDb, o: Order) {
  await checkerStep(
    t,
    'add a trigger to orchestrator.sagas',
    () =>
      db.sql.query(`
        CREATE SEQUENCE checker_refusals;
        CREATE FUNCTION checker_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.state = 'charging' AND nextval('checker_refusals') <= 2 THEN
            RAISE EXCEPTION 'the checker makes this transaction fail (on purpose)';
          END IF;
          RETURN NULL;
        END $$;
        -- Deferred: it runs at COMMIT, after everything the handler did, and the COMMIT fails.
        CREATE CONSTRAINT TRIGGER checker_refuse AFTER INSERT OR UPDATE ON orchestrator.sagas
          DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW WHEN (NEW.order_id = '${o.orderId}') EXECUTE FUNCTION checker_refuse();`),
    {
      why: 'startOrderSaga() must have created orchestrator.sagas (order_id, state, …) before it resolves.',
      fix: "Pass the TABLES the starter gives to startService(): it creates them at start.",
    },
  );
}

/**
 * The checker's trigger on the orchestrator's outbox: the second inventory.reserve of order `o`
 * (its first retry, written by the time-out sweep) is refused, so the sweep's transaction fails
 * half-way. Rolled back, it leaves the saga as it was; the next pass tries again.
 */
async function failFirstRetry(t: Ctx, db: CheckDb, o: Order) {
  await checkerStep(
    t,
    'add a trigger to orchestrator.outbox',
    () =>
      db.sql.query(`
        CREATE SEQUENCE checker_outbox_count;
        CREATE FUNCTION checker_refuse_retry() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF nextval('checker_outbox_count') = 2 THEN
            RAISE EXCEPTION 'the checker makes this transaction fail (on purpose)';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER checker_refuse_retry BEFORE INSERT ON orchestrator.outbox
          FOR EACH ROW WHEN (NEW.correlation_id = '${o.orderId}' AND NEW.type = 'inventory.reserve') EXECUTE FUNCTION checker_refuse_retry();`),
    {
      why: "startOrderSaga() must have created the outbox (the library's startService() does) before it resolves.",
      fix: "Start the service with the library's startService({ service: 'orchestrator', … }).",
    },
  );
}

/** The connections to the check's database that are not the checker's. */
async function learnerBackends(db: CheckDb): Promise<number> {
  const { rows } = await db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name <> $2 AND pid <> pg_backend_pid()', [db.name, CHECKER]);
  return rows[0]!.n;
}

function tally(world: Participants, o: Order): string {
  const counts = new Map<string, number>();
  for (const r of world.commands(o)) counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
  return counts.size ? [...counts].map(([type, n]) => `${type} ×${n}`).join(', ') : 'no command';
}

function failStuck(t: Ctx, world: Participants, s: Map<string, string>, what: string): never {
  if (s.size === 0) {
    return t.fail({
      summary: `No order got a saga: orchestrator.sagas is empty 10 s after ${ORDERS.length} order.placed events, and the participants got ${world.received.length} command(s).`,
      expected: "a row per order (state 'reserving') and an inventory.reserve command for each",
      why: 'The saga starts with order.placed: without its row, no reply can move it, and nothing would survive a restart.',
      fix: "In the handler, for 'order.placed': INSERT INTO orchestrator.sagas (order_id, state, attempts, deadline, placed) VALUES ($1, 'reserving', 1, now() + …, $3) ON CONFLICT (order_id) DO NOTHING, then emit(COMMANDS.reserving.type, COMMANDS.reserving.data(order)).",
    });
  }
  return t.fail({
    summary: `${what} within 10 s: the sagas do not get going.`,
    saw: ORDERS.map((o) => `${o.label} ${s.get(o.orderId) ?? '(no row)'}: ${tally(world, o)}`).join('; '),
    why: 'Each reply must move its saga on, and the move must send the next command.',
    fix: "In the handler: the saga's row FOR UPDATE, next = STEPS[saga.state]?.replies[ev.type]; then UPDATE the row to next and emit COMMANDS[next]'s command.",
  });
}

/** What each order's final state says about the mistake. */
function failStates(t: Ctx, world: Participants, final: Map<string, string>, wrong: Order[]): never {
  // The headline: the restart first (it explains the most), then the time-outs, then the rest.
  const o = [I, E, H, G, J].find((x) => wrong.includes(x)) ?? wrong[0]!;
  const state = final.get(o.orderId) ?? '(no row)';
  const retried = ({ E: 'inventory.reserve', H: 'payment.charge', G: 'shipping.schedule' } as Record<string, CommandType>)[o.label];
  const tries = retried ? world.commands(o, retried).length : 0;
  const retries = !retried || state !== STEP_STATE[retried] ? '' : tries > ATTEMPTS ? `: its retries never stopped (${tries} ${retried} commands)` : tries === 1 ? `: nothing was sent again after the time-out (1 ${retried} command)` : '';
  const saw = wrong.map((w) => `order ${w.label} (${w.story}): '${final.get(w.orderId) ?? 'no row'}', expected '${EXPECTED[w.label]}'; commands: ${tally(world, w)}`).join('\n');
  const hint: Record<string, { why: string; fix: string }> = {
    E: {
      why: 'A participant that never answers must not hold the saga forever: after maxAttempts commands the saga gives up and undoes what may have happened (the reserve may have reserved).',
      fix: "A sweep every ~100 ms: SELECT … WHERE deadline < now() FOR UPDATE SKIP LOCKED; attempts < maxAttempts -> the same command again (attempts + 1, a new deadline); else -> moveTo(STEPS[state].giveUp).",
    },
    H: {
      why: 'An unanswered charge may have charged: the saga gives up on it by refunding first, then releasing the stock.',
      fix: "STEPS.charging.giveUp is 'refunding': the sweep moves the saga there, which sends payment.refund; payment.refunded -> releasing.",
    },
    G: {
      why: 'After the charge, a step that never answers (shipping is down) is given up too: refund, then release.',
      fix: "STEPS.scheduling.giveUp is 'refunding'.",
    },
    I: {
      why: 'The reply that arrived while the orchestrator was stopped waits in its queue; the new orchestrator must find the saga in its row and carry it on.',
      fix: 'Keep nothing about a saga in memory: read its state from orchestrator.sagas in each handler and in each sweep.',
    },
    J: {
      why: 'A compensation must succeed in the end: it is sent again every stepTimeoutMs, without a limit, until its participant answers.',
      fix: 'In the sweep, a state without giveUp (refunding, releasing) always gets its command again.',
    },
  };
  const specific = hint[o.label] ?? {
    why: "The saga must follow STEPS: each reply the saga waits for moves it on; out of stock and a declined card end in 'cancelled' (after releasing what was reserved).",
    fix: 'next = STEPS[saga.state]?.replies[ev.type]; if (next) moveTo(next): UPDATE the row and emit COMMANDS[next] when there is one.',
  };
  return t.fail({
    summary: `Order ${o.label} (${o.story}) ended '${state}' instead of '${EXPECTED[o.label]}'${retries}${wrong.length > 1 ? `; ${wrong.length - 1} more order(s) ended wrong too` : ''}.`,
    expected: ORDERS.map((w) => `${w.label} ${EXPECTED[w.label]}`).join(', '),
    saw,
    ...specific,
  });
}

/** The participants' books against the sagas: the saga is consistent across every service. */
function booksAgree(t: Ctx, world: Participants, final: Map<string, string>) {
  const problems: string[] = [];
  for (const o of ORDERS) {
    const h = world.holdings.get(o.orderId)!;
    if (final.get(o.orderId) === 'completed') {
      if (h.reservation !== 'held') problems.push(`order ${o.label} is completed, but its stock is ${h.reservation ?? 'not reserved'}`);
      if (h.payment !== 'captured') problems.push(`order ${o.label} is completed, but its payment is ${h.payment ?? 'not made'}`);
      if (!h.shipment) problems.push(`order ${o.label} is completed, but nothing was shipped`);
    } else {
      if (h.reservation === 'held') problems.push(`order ${o.label} is cancelled, and its stock is still reserved`);
      if (h.payment === 'captured') problems.push(`order ${o.label} is cancelled, and its customer is still charged`);
    }
  }
  t.observe([3, 5, 6], `the participants' books: ${ORDERS.map((o) => `${o.label} ${JSON.stringify(world.holdings.get(o.orderId))}`).join(', ')}`);
  if (!problems.length) return;
  const charged = problems.some((p) => p.includes('still charged'));
  const reserved = problems.some((p) => p.includes('still reserved'));
  const whyCharged = 'A charge with no answer is not a charge that did not happen: payments may have taken the money and lost the reply. Only a refund makes it certain that the customer is not charged.';
  const whyReserved = 'A saga has no rollback: what a step did stays done until a compensating command undoes it. Cancelling without releasing leaves the stock reserved for nobody.';
  const fixCharged = "Give up on an unanswered charge (or shipment) through 'refunding' (payment.refund), then 'releasing': STEPS.charging.giveUp = 'refunding'.";
  const fixReserved = "payment.declined and a reserve given up go to 'releasing' (inventory.release); only stock.released ends the saga 'cancelled'.";
  t.fail({
    summary: `The sagas ended, but the participants' books disagree: ${problems.join('; ')}.`,
    expected: 'completed: reserved, charged and shipped; cancelled: every step that may have happened undone (nothing reserved, nothing charged)',
    saw: ORDERS.filter((o) => problems.some((p) => p.includes(`order ${o.label} `))).map((o) => `order ${o.label} (${o.story}): ${tally(world, o)}`).join('\n'),
    why: [reserved || !charged ? whyReserved : '', charged ? whyCharged : ''].filter(Boolean).join(' '),
    fix: [reserved || !charged ? fixReserved : '', charged ? fixCharged : ''].filter(Boolean).join(' '),
  });
}

/** How many commands each step took: bounded retries, and no step that moved twice. */
function commandCounts(t: Ctx, world: Participants) {
  const count = (o: Order, type: CommandType) => world.commands(o, type).length;
  const expectations: { o: Order; type: CommandType; ok: (n: number) => boolean; want: string; why: string; fix: string }[] = [
    { o: B, type: 'payment.charge', ok: (n) => n === 0, want: 'none: nothing was reserved, so there is nothing to pay for', why: "stock.rejected ends the saga 'cancelled' at once: the next step must not start.", fix: "STEPS.reserving.replies['stock.rejected'] is 'cancelled', which has no command." },
    { o: B, type: 'inventory.release', ok: (n) => n === 0, want: "none: out of stock, nothing was reserved; stock.rejected ends the saga 'cancelled' at once", why: 'stock.rejected is an answer: the saga must take it, not wait for a time-out and undo a reservation that never happened.', fix: "STEPS.reserving.replies['stock.rejected'] -> 'cancelled'." },
    { o: C, type: 'payment.refund', ok: (n) => n === 0, want: "none: a declined card charged nothing; payment.declined leads to 'releasing' at once", why: 'payment.declined is an answer: the saga must take it, not wait for a time-out and refund a charge that never happened.', fix: "STEPS.charging.replies['payment.declined'] -> 'releasing'." },
    { o: E, type: 'inventory.reserve', ok: (n) => n === ATTEMPTS, want: `${ATTEMPTS} (maxAttempts), then inventory.release; the retry whose transaction the checker made fail does not count`, why: 'Retries must stop: a participant that never answers would otherwise get the command forever, and the saga would never end.', fix: 'Count the commands in the row (attempts); at maxAttempts, give up instead of sending again.' },
    { o: H, type: 'payment.charge', ok: (n) => n === ATTEMPTS, want: `${ATTEMPTS} (maxAttempts), then payment.refund`, why: 'Retries must stop, and only after maxAttempts: a time-out is no proof that the step failed.', fix: 'attempts < maxAttempts -> the same command again; else give up.' },
    { o: G, type: 'shipping.schedule', ok: (n) => n === ATTEMPTS, want: `${ATTEMPTS} (maxAttempts), then payment.refund`, why: 'Every forward step has the same bounded retries.', fix: 'attempts < maxAttempts -> the same command again; else give up.' },
    { o: J, type: 'inventory.release', ok: (n) => n >= 4, want: 'at least 4: three replies were lost, the fourth command is answered', why: 'A compensation must succeed in the end: there is no step after it to fall back on.', fix: 'In the sweep, a state without giveUp always gets its command again.' },
  ];
  for (const x of expectations) {
    const n = count(x.o, x.type);
    t.observe(x.type === 'inventory.release' ? 6 : x.o === B ? 3 : 5, `order ${x.o.label}: ${n} ${x.type} command(s)`);
    if (!x.ok(n)) {
      // Fewer retries than maxAttempts for E: the retry whose transaction failed counted anyway.
      const halfDone = x.o === E && n < ATTEMPTS;
      t.fail({
        summary: `Order ${x.o.label} (${x.o.story}) got ${n} ${x.type} command(s)${halfDone ? ': a retry whose transaction failed (the outbox refused its command) still counted as an attempt' : ''}.`,
        expected: x.want,
        saw: tally(world, x.o),
        why: halfDone ? "The sweep's changes to a saga (attempts + 1, a new deadline) and the command it sends must commit together: when one fails, neither happened, and the next pass tries again." : x.why,
        fix: halfDone ? "Run each sweep pass between BEGIN and COMMIT on one client (ROLLBACK on an error), and write its commands with addToOutbox(client, …) inside it." : x.fix,
      });
    }
  }
  // A retry comes a whole stepTimeoutMs after the command before it; a second command sooner than
  // half of that is a step that moved twice (a duplicate or late reply taken as new).
  for (const o of ORDERS) {
    for (const type of COMMAND_TYPES) {
      const at = world.commands(o, type).map((r) => r.at);
      const twice = at.findIndex((ms, i) => i > 0 && ms - at[i - 1]! < STEP_MS / 2); // see repeatsTooSoon()
      if (twice < 0) continue;
      t.observe(4, `order ${o.label}: ${at.length} ${type} commands, two of them ${at[twice]! - at[twice - 1]!} ms apart`);
      t.fail({
        summary: `Order ${o.label} (${o.story}) got ${type} twice within ${at[twice]! - at[twice - 1]!} ms: a reply moved its saga a second time.`,
        expected: `one ${type} per step, or a retry a whole stepTimeoutMs (${STEP_MS} ms) later`,
        saw: tally(world, o),
        why: 'Replies come twice (a redelivery, a republish, the answer to a retry) and out of order. Only the one the saga waits for may move it; any other changes nothing, or the next participant gets its command twice, and the saga can even go backwards.',
        fix: "Read the saga's state FOR UPDATE and move only when STEPS[saga.state].replies has the reply's type.",
      });
    }
  }
  t.observe(4, `order D (every reply three times, an old one late): ${tally(world, D)}`);
}

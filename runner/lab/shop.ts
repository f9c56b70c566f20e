// The shop lab: chapter 10's five services (world.ts) under a stream of orders with faults in it.
//   - declined cards and orders for more than the stock (sagas that end cancelled, some compensated);
//   - events published a second time, half with the same messageId (the inboxes catch them), half
//     with a new one (only the business keys can);
//   - one service stopped in the middle of the run and started again (its queue keeps its events).
// A tap (a queue of the lab's own, bound to every key) sees every event and feeds the ledger;
// at the end the oracle checks every order in every schema. runner/lab/shop-command.ts draws it.
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { SHOP_EXCHANGE, readEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import { queueOf } from '../../chapters/10-microservices/shop/lib/consumer.js';
import { SERVICES, setStock, startWorld, type ServiceName, type World } from '../../chapters/10-microservices/shop/world.js';
import { checkOrders, unfinished, type Violation } from '../../chapters/10-microservices/shop/oracle.js';
import { DECLINED_CARD } from '../../solutions/10-microservices/02-payments.js';
import type { NewOrder } from '../../solutions/10-microservices/03-orders.js';
import { Ledger, type OrderLife, type Restart } from './shop-report.js';

export interface ShopLabOptions {
  amqpUrl: string;
  databaseUrl: string;
  orders: number;
  /** Orders placed per second. */
  rate: number;
  /** The service stopped and started again half-way (default payments; never orders, which places them). */
  restart?: Exclude<ServiceName, 'orders'>;
  /** Stops placing orders and waiting: Ctrl-C. */
  signal?: AbortSignal;
  /** Service log lines (relay retries while the broker is away, and such). */
  log?: (line: string) => void;
  /** What the lab is doing now, for the live view. */
  phase?: (text: string) => void;
  /** Seeded random numbers, for tests; Math.random by default. */
  random?: () => number;
}

export interface ShopLab {
  ledger: Ledger;
  duplicates: { sameId: number; newId: number };
  restart?: Restart;
  /** Resolves when the run is over: the oracle's verdict (empty: every order is consistent). */
  done: Promise<{ violations: Violation[]; quiet: boolean }>;
}

/** The shop's catalogue: price per unit in cents. */
const CATALOGUE: Record<string, number> = { mug: 1200, tee: 2500, cap: 1800, sticker: 300, poster: 900 };
const SKUS = Object.keys(CATALOGUE);
const DECLINED_SHARE = 0.12;
const SHORT_SHARE = 0.06;
/** One event in REPUBLISH_EVERY seen on the exchange is published again. */
const REPUBLISH_EVERY = 12;

/** Starts the shop and the run; the caller reads the ledger while it goes, and awaits `done`. */
export async function startShopLab(opts: ShopLabOptions): Promise<ShopLab> {
  const random = opts.random ?? Math.random;
  const say = opts.phase ?? (() => undefined);
  const restartWhom = opts.restart ?? 'payments';
  const log = opts.log ?? (() => undefined);
  const ledger = new Ledger();
  const duplicates = { sameId: 0, newId: 0 };
  const lab: ShopLab = { ledger, duplicates, done: Promise.resolve({ violations: [], quiet: false }) };

  // Enough stock for about nine orders in ten: the last orders of a long run find shelves empty,
  // while declined orders give units back (the saga's missing isolation, in numbers).
  // An order takes 1.5 skus of 2 units on average: about 3 units, spread over the skus.
  const perSku = Math.max(3, Math.round(((opts.orders * 3) / SKUS.length) * 0.9));
  const initialStock = Object.fromEntries(SKUS.map((sku) => [sku, perSku]));

  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanUp = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  try {
    say('starting the five services');
    const world: World = await startWorld({ amqpUrl: opts.amqpUrl, databaseUrl: opts.databaseUrl, name: 'lab', log });
    cleanups.push(() => world.stop());
    const sql = new pg.Client({ connectionString: opts.databaseUrl, application_name: 'lab oracle' });
    sql.on('error', () => undefined);
    await sql.connect();
    cleanups.push(() => sql.end());
    await setStock(sql, initialStock);

    const tap = await startTap(opts.amqpUrl, ledger, duplicates, random);
    cleanups.push(() => tap.close());

    lab.done = (async () => {
      try {
        await placeOrders();
        say('waiting for the last sagas to finish');
        const quiet = await waitForQuiet();
        tap.stopRepublishing();
        say('asking the oracle');
        const violations = quiet || !opts.signal?.aborted ? await checkOrders(sql, initialStock) : [];
        return { violations, quiet };
      } finally {
        await cleanUp();
      }
    })();
    return lab;

    async function placeOrders(): Promise<void> {
      const started = Date.now();
      const inFlight = new Set<Promise<void>>();
      let placed = 0;
      let restartStarted = false;
      say('placing orders');
      while (placed < opts.orders && !opts.signal?.aborted) {
        const due = Math.min(opts.orders, Math.floor(((Date.now() - started) / 1000) * opts.rate) + 1);
        while (placed < due && inFlight.size < 50) {
          placed++;
          // A failed placeOrder() is the shop refusing an order, not an inconsistency: logged, and the run goes on.
          const p = placeOne()
            .catch((err: Error) => log(`lab: placing an order failed: ${err.message}`))
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        if (!restartStarted && placed >= opts.orders / 3) {
          restartStarted = true;
          inFlight.add(restartService().catch((err: Error) => log(`lab: restarting ${restartWhom} failed: ${err.message}`)));
        }
        await sleep(Math.max(5, 1000 / opts.rate));
      }
      await Promise.all(inFlight);
    }

    async function placeOne(): Promise<void> {
      const roll = random();
      const fault: OrderLife['fault'] = roll < DECLINED_SHARE ? 'declined card' : roll < DECLINED_SHARE + SHORT_SHARE ? 'short stock' : undefined;
      const items = pickItems(random, fault === 'short stock');
      const order: NewOrder = {
        customerId: `customer-${Math.floor(random() * 1000)}`,
        items,
        amountCents: items.reduce((sum, i) => sum + i.qty * CATALOGUE[i.sku]!, 0),
        card: fault === 'declined card' ? DECLINED_CARD : '4242424242424242',
      };
      const orders = world.orders;
      if (!orders) throw new Error('the orders service is not running');
      const at = Date.now();
      const id = await orders.placeOrder(order);
      ledger.placed(id, at, fault);
    }

    /** Stops one service for a while, as a deploy would, then starts it again. */
    async function restartService(): Promise<void> {
      const restart: Restart = { service: restartWhom, stoppedAt: Date.now(), backlog: 0 };
      lab.restart = restart;
      await world.stopService(restartWhom);
      restart.stoppedAt = Date.now();
      // Down long enough for its queue to fill: a fifth of the run, between 2 and 6 s.
      const downMs = Math.min(6000, Math.max(2000, ((opts.orders / opts.rate) * 1000) / 5));
      const until = Date.now() + downMs;
      while (Date.now() < until && !opts.signal?.aborted) {
        restart.backlog = Math.max(restart.backlog, await tap.queueLength(queueOf(restartWhom)));
        await sleep(200);
      }
      await world.startService(restartWhom);
      restart.startedAt = Date.now();
    }

    /** Until every order is final, every outbox sent and every queue empty, twice in a row. */
    async function waitForQuiet(): Promise<boolean> {
      const deadline = Date.now() + Math.max(60_000, (opts.orders / opts.rate) * 2000);
      let calm = 0;
      while (Date.now() < deadline && !opts.signal?.aborted) {
        const u = await unfinished(sql);
        let queued = 0;
        for (const s of SERVICES) queued += await tap.queueLength(queueOf(s));
        calm = u.pendingOrders === 0 && u.unsentEvents === 0 && queued === 0 ? calm + 1 : 0;
        if (calm === 1) tap.stopRepublishing(); // no new copies once everything is final
        if (calm >= 3) return true;
        await sleep(300);
      }
      return false;
    }
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/** One to three different skus, one to three units each; or far more than any shelf holds. */
function pickItems(random: () => number, short: boolean): { sku: string; qty: number }[] {
  const n = 1 + Math.floor(random() * 2);
  const skus = [...SKUS].sort(() => random() - 0.5).slice(0, n);
  return skus.map((sku, i) => ({ sku, qty: short && i === 0 ? 10_000 : 1 + Math.floor(random() * 3) }));
}

interface Tap {
  queueLength(queue: string): Promise<number>;
  stopRepublishing(): void;
  close(): Promise<void>;
}

/**
 * The lab's own connection: a server-named exclusive queue bound to '#' sees every event, and one
 * in REPUBLISH_EVERY is published again on a confirm channel, alternately with the same
 * messageId and with a new one. The copies carry the header x-lab-copy and are never copied again.
 */
async function startTap(amqpUrl: string, ledger: Ledger, duplicates: { sameId: number; newId: number }, random: () => number): Promise<Tap> {
  const connection: ChannelModel = await amqp.connect(amqpUrl, { clientProperties: { connection_name: 'lab tap' } });
  connection.on('error', () => undefined);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    const publisher: ConfirmChannel = await connection.createConfirmChannel();
    publisher.on('error', () => undefined);
    await channel.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, SHOP_EXCHANGE, '#');
    let republishing = true;
    let seen = 0;
    await channel.consume(
      queue,
      (msg: ConsumeMessage | null) => {
        if (!msg) return;
        const at = Date.now();
        let ev;
        try {
          ev = readEvent(msg);
        } catch {
          return; // not an event of the shop
        }
        ledger.event(ev.type, ev.correlationId, at);
        if (!republishing || msg.properties.headers?.['x-lab-copy'] || ++seen % REPUBLISH_EVERY !== 0) return;
        const sameId = random() < 0.5;
        const messageId = sameId ? ev.messageId : randomUUID();
        if (sameId) duplicates.sameId++;
        else duplicates.newId++;
        const headers = { ...msg.properties.headers, 'x-lab-copy': true };
        publisher.publish(SHOP_EXCHANGE, msg.fields.routingKey, msg.content, { ...msg.properties, messageId, headers, persistent: true });
      },
      { noAck: true },
    );
    const check = await connection.createChannel();
    check.on('error', () => undefined);
    return {
      async queueLength(name: string) {
        return (await check.checkQueue(name)).messageCount;
      },
      stopRepublishing() {
        republishing = false;
      },
      async close() {
        republishing = false;
        await publisher.waitForConfirms().catch(() => undefined);
        await connection.close().catch(() => undefined);
      },
    };
  } catch (err) {
    await connection.close().catch(() => undefined);
    throw err;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

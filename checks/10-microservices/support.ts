// What the chapter 10 checks share: a database of their own (on the capstone's Postgres), the
// rest of the shop running around the learner's service (world.ts), the checker's tap on every
// event, events injected into the learner's queue, quiescence, and the oracle as a verdict.
//
// Whose connections are whose. The runner counts, as the learner's, every TCP connection to the
// broker that the checker did not mark (socket-tracker.ts: t.cutConnections() cuts them,
// t.expectConnectionsClosed() counts them) and reads the frames of every AMQP connection whose
// client properties do not contain "workbook checker" (frames.ts: acks, rejects, publishes).
// The reference services are the checker's, not the learner's, so they are marked both ways:
//   - their connection names start with "workbook checker world" (ServiceDeps.name), which the
//     frame reader ignores, and which Postgres shows as their application_name;
//   - startShopWorld() runs them inside an AsyncLocalStorage scope, and every socket opened in
//     that scope (at start, and later by a relay that reconnects) is handed to ignoreSocket().
// The learner's service is started outside that scope, by the check, with no such name.
import type { Channel, ConsumeMessage } from 'amqplib';
import { AsyncLocalStorage } from 'node:async_hooks';
import dc from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';
import { ignoreSocket } from '../../runner/check/socket-tracker.js';
import { SHOP_EXCHANGE, newEvent, publishArgs, type ShopEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import { queueOf } from '../../chapters/10-microservices/shop/lib/consumer.js';
import type { ServiceDeps } from '../../chapters/10-microservices/shop/lib/service.js';
import { startWorld, type ServiceName, type World } from '../../chapters/10-microservices/shop/world.js';
import { checkOrders, unfinished, type Violation } from '../../chapters/10-microservices/shop/oracle.js';
import { freshDatabase, withResources, CHECKER, type CheckDb, type Cleanup } from '../13-capstone/support.js';

export { withResources, CHECKER, type CheckDb, type Cleanup };

/** The name the reference services' connections carry (broker and Postgres). */
export const WORLD_NAME = 'workbook checker world';
export const GOOD_CARD = '4242424242424242';
export const DECLINED_CARD = '4000000000000002';

/** An empty database of the check's own, dropped at the end. */
export function shopDatabase(defer: (c: Cleanup) => void): Promise<CheckDb> {
  return freshDatabase(defer, 'none');
}

const worldScope = new AsyncLocalStorage<true>();
let watching = false;

/** Marks every socket opened inside worldScope as the checker's (once per thread). */
function watchWorldSockets(): void {
  if (watching) return;
  watching = true;
  dc.subscribe('net.client.socket', (message) => {
    if (worldScope.getStore()) ignoreSocket((message as { socket: Socket }).socket);
  });
}

/** Deps for the reference services: logs kept in `logs` (shown only when a check asks). */
export function worldDeps(t: CheckContext<unknown>, db: CheckDb, logs: string[]): ServiceDeps {
  return { amqpUrl: t.url, databaseUrl: db.url, name: WORLD_NAME, log: (line) => logs.push(line) };
}

export interface ShopWorld {
  world: World;
  /** What the reference services logged. */
  logs: string[];
  /** Starts a reference service again (inside the world's scope). */
  startService(name: ServiceName): Promise<void>;
}

/** The reference services except `without`, stopped at the end of the check whatever happens. */
export async function startShopWorld(t: CheckContext<unknown>, defer: (c: Cleanup) => void, db: CheckDb, without: ServiceName[]): Promise<ShopWorld> {
  watchWorldSockets();
  const logs: string[] = [];
  const world = await worldScope.run(true, () => startWorld({ ...worldDeps(t, db, logs), without }));
  defer(() => world.stop());
  t.log(`started the rest of the shop (reference services: ${world.running().join(', ')})`);
  return { world, logs, startService: (name) => worldScope.run(true, () => world.startService(name)) };
}

/** An event as the checker saw it on its tap. */
export interface Seen extends ShopEvent {
  /** Its place in the tap (0, 1, …). */
  n: number;
}

export interface Tap {
  /** Every event published to the shop exchange so far, in arrival order. */
  events: Seen[];
  /** The events of one order (its correlation id), optionally only those of one type. */
  of(orderId: string, type?: string): Seen[];
}

/**
 * The checker's own queue bound to '#' on the shop exchange: a copy of every event any service
 * publishes, with its properties as the broker delivered them. Bodies that are not JSON are kept as {}.
 */
export async function tapShop(t: CheckContext<unknown>, defer: (c: Cleanup) => void): Promise<Tap> {
  const ch: Channel = await t.channel();
  defer(() => ch.close().catch(() => undefined));
  await ch.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, SHOP_EXCHANGE, '#');
  const events: Seen[] = [];
  await ch.consume(
    queue,
    (msg: ConsumeMessage | null) => {
      if (!msg) return;
      const p = msg.properties;
      let data: Record<string, unknown> = {};
      try {
        data = JSON.parse(msg.content.toString()) as Record<string, unknown>;
      } catch {
        /* kept as {} */
      }
      const causation = p.headers?.['causation-id'];
      events.push({
        n: events.length,
        type: typeof p.type === 'string' ? p.type : msg.fields.routingKey,
        data,
        messageId: String(p.messageId ?? ''),
        correlationId: String(p.correlationId ?? ''),
        causationId: typeof causation === 'string' ? causation : undefined,
        producer: String(p.appId ?? ''),
      });
    },
    { noAck: true },
  );
  return { events, of: (orderId, type) => events.filter((e) => e.correlationId === orderId && (type === undefined || e.type === type)) };
}

/** An event from `producer` in the order `orderId`, as a reference service would emit it. */
export function shopEvent(producer: string, type: string, data: Record<string, unknown>, orderId: string, causationId?: string): ShopEvent {
  return newEvent(producer, type, data, { correlationId: orderId, causationId });
}

/** Publishes events straight into one service's queue (a duplicate, a late or a reordered event): no other service sees them. */
export async function injectInto(t: CheckContext<unknown>, service: string, events: ShopEvent[]): Promise<void> {
  const ch = await t.confirmChannel();
  try {
    for (const ev of events) {
      const { content, options } = publishArgs(ev);
      ch.sendToQueue(queueOf(service), content, options);
    }
    await ch.waitForConfirms();
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** How long nothing may move, with orders still pending, before the shop counts as stuck (a generous margin: a step takes well under a second). */
export const STUCK_MS = 8000;

/**
 * Waits until the shop is quiet: no order pending, no event unpublished, the services' queues
 * empty and the inboxes unchanged over two probes: 'quiet'. 'stuck': orders still pending while
 * nothing has moved for `stuckMs` (no event waiting anywhere, no inbox growing): nobody will
 * ever answer them. 'timeout' after `timeoutMs`.
 */
export async function waitQuiet(t: CheckContext<unknown>, sql: pg.ClientBase, services: string[], timeoutMs = 30_000, stuckMs = STUCK_MS): Promise<'quiet' | 'stuck' | 'timeout'> {
  let last = '';
  let since = Date.now();
  const outcome = await t.waitFor(
    async () => {
      const u = await unfinished(sql);
      const ready = await Promise.all(services.map((s) => t.messageCount(queueOf(s)).catch(() => 0)));
      const handled = await inboxTotal(sql);
      const now = `${u.pendingOrders}/${u.unsentEvents}/${ready.join(',')}/${handled}`;
      if (now !== last) [last, since] = [now, Date.now()];
      const idle = u.unsentEvents === 0 && ready.every((n) => n === 0);
      if (idle && u.pendingOrders === 0 && Date.now() - since >= 250) return 'quiet' as const;
      if (idle && Date.now() - since >= stuckMs) return 'stuck' as const;
      return undefined;
    },
    timeoutMs,
    250,
  );
  return outcome ?? 'timeout';
}

async function inboxTotal(sql: pg.ClientBase): Promise<number> {
  const { rows } = await sql.query<{ schema: string }>(`SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'inbox'`);
  let n = 0;
  for (const { schema } of rows) n += (await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".inbox`)).rows[0]!.n;
  return n;
}

/** Fails with the oracle's findings, each order named by its label, when the shop's final state is inconsistent. */
export async function expectConsistent(
  t: CheckContext<unknown>,
  lines: ContractRef | ContractRef[],
  sql: pg.ClientBase,
  initialStock: Record<string, number>,
  labels: Map<string, string>,
  explain: (v: Violation[]) => { summary: string; why: string; fix: string },
): Promise<void> {
  const violations = await checkOrders(sql, initialStock);
  t.observe(lines, `asked the oracle: every order's state across orders, inventory, payments, shipping and notifications: ${violations.length} problem(s)`);
  if (violations.length === 0) return;
  const named = violations.map((v) => `${labels.get(v.orderId) ?? v.orderId}: ${v.problem}`);
  const e = explain(violations);
  t.fail({
    summary: e.summary,
    expected: 'every order completed (stock kept, paid once, shipped once) or cancelled with nothing left reserved or charged',
    saw: named.slice(0, 6).join('; ') + (named.length > 6 ? `; and ${named.length - 6} more` : ''),
    why: e.why,
    fix: e.fix,
  });
}

/** A pause that is not a condition (a window in which something must NOT happen). */
export const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts the learner's service through t.call and checks it can be stopped; stop it with the returned function (once). */
export async function startLearnerService<S extends { stop(): Promise<void> }>(
  t: CheckContext<unknown>,
  defer: (c: Cleanup) => void,
  label: string,
  start: () => Promise<S>,
): Promise<{ service: S; stop: () => Promise<void> }> {
  const service = await t.call(label, start, { timeoutMs: 15_000 });
  if (typeof service?.stop !== 'function') {
    t.fail({
      summary: `${label} resolved with ${service === undefined ? 'nothing' : 'an object without stop()'}.`,
      expected: 'the Running object startService() resolves with: { stop() }',
      fix: 'Return what startService({ … }) resolves with.',
    });
  }
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await t.call(`stop() of ${label}`, () => service.stop(), { timeoutMs: 15_000 });
  };
  defer(() => (stopped ? undefined : service.stop()));
  return { service, stop };
}

/** "order A", for verdicts. */
export function labelsOf(orders: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(orders).map(([label, id]) => [id, `order ${label}`]));
}

let restarts = 0;
/**
 * The code under check loaded afresh, as a new process would load it: module-level state (a Map
 * at the top of the file) starts empty. The shop's library stays the one already loaded.
 */
export async function freshModule<T>(t: CheckContext<T>): Promise<T> {
  return (await import(`${pathToFileURL(t.targetPath).href}?restart=${++restarts}`)) as T;
}

/** The types of these events, for verdicts: "stock.reserved, stock.released". */
export function names(events: Seen[]): string {
  return events.map((e) => e.type).join(', ');
}

/** The event as it was published (the same messageId): a redelivery, or a producer's retry of the same message. */
export function asSent(e: Seen): ShopEvent {
  return { type: e.type, data: e.data, messageId: e.messageId, correlationId: e.correlationId, causationId: e.causationId, producer: e.producer };
}

/** The same event published again by its producer with a new messageId (a republish the inbox cannot recognise). */
export function republished(e: Seen): ShopEvent {
  return shopEvent(e.producer, e.type, e.data, e.correlationId, e.causationId);
}

/** Fails when the service did not create `table` (its TABLES) at start. */
export async function expectTable(t: CheckContext<unknown>, sql: pg.ClientBase, table: string): Promise<void> {
  const { rows } = await sql.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table]);
  if (rows[0]?.t) return;
  t.fail({
    summary: `The service started, and the table ${table} does not exist.`,
    expected: `${table}, created by TABLES when the service starts`,
    why: 'The checker and the oracle read the service\'s state from its tables.',
    fix: 'Keep TABLES as the starter gives it (you may add constraints) and pass it to startService({ tables: TABLES, … }).',
  });
}

/** Fails unless `ev` names `cause` as its cause: its header causation-id is the messageId of the event it answers. */
export function expectCausedBy(t: CheckContext<unknown>, ev: Seen, cause: Seen, o: { summary: string; why: string; fix: string }): void {
  if (ev.causationId === cause.messageId) return;
  t.fail({ summary: o.summary, expected: `causation-id ${cause.messageId}`, saw: ev.causationId ?? 'no causation-id header', why: o.why, fix: o.fix });
}

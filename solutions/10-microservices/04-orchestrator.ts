// Exercise 10.4: the saga orchestrator: one service decides every step of an order, and undoes them
// Text: chapters/10-microservices/README.md   Check: npm run check 10.4   Hint: npm run hint 10.4
//
// The order flow of 10.1-10.3 again, orchestrated: inventory, payments and shipping do nothing by
// themselves any more, they answer commands. startOrderSaga(deps) runs the service 'orchestrator'
// (startService() of the shop's library: schema and queue of that name) and resolves with { stop }:
//   1. 'order.placed' inserts the saga's row in orchestrator.sagas (order_id = the order id, state
//      'reserving') and sends 'inventory.reserve'; the same order placed again (a republished
//      event, with a new messageId) makes no second saga and no second command,
//   2. every command goes to the outbox in the transaction that changes the saga's row: no command
//      ever leaves for a change that rolled back, and no change is kept without its command,
//   3. a reply moves the saga only if it answers the step the saga is at (STEPS): the saga takes
//      that reply's next state, and sends the next state's command (COMMANDS, with its data),
//   4. any other reply (a duplicate, a late one, one out of order, one for an unknown order)
//      changes nothing: a step never moves twice, a saga never moves backwards, and a finished
//      saga ('completed', 'cancelled') never moves again,
//   5. a step with no answer within stepTimeoutMs gets the same command again, at most maxAttempts
//      commands in all; then the saga gives up on it (STEPS' giveUp) and undoes what may have
//      happened: an unanswered reserve may have reserved, an unanswered charge may have charged,
//   6. compensations ('refunding', 'releasing') are sent again every stepTimeoutMs until answered:
//      they must succeed in the end, and the participants make them safe to repeat,
//   7. the saga lives in its row (state, attempts, deadline), nowhere else: after stop() (the
//      time-out sweep, then the service), a new startOrderSaga() on the same database carries
//      every saga on from where it was.
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { newEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';
import { addToOutbox } from '../../chapters/10-microservices/shop/lib/outbox.js';
import { startService, type ServiceDeps } from '../../chapters/10-microservices/shop/lib/service.js';

export interface SagaDeps extends ServiceDeps {
  /** How long a step waits for its reply before the command is sent again (default 5 s). */
  stepTimeoutMs?: number;
  /** Commands per step, the first included, before the saga gives up on it (default 3). */
  maxAttempts?: number;
}

export interface OrderSaga {
  stop(): Promise<void>;
}

/** What 'order.placed' carries (the orders service's event, 10.3). */
export interface PlacedOrder {
  orderId: string;
  customerId: string;
  items: { sku: string; qty: number }[];
  amountCents: number;
  card: string;
}

export type SagaState = 'reserving' | 'charging' | 'scheduling' | 'refunding' | 'releasing' | 'completed' | 'cancelled';

// #region steps
/**
 * The saga, as data. In each state the orchestrator waits for one of `replies`, which says the
 * next state. `giveUp`: where a step goes when it never answered; a compensation has none (it is
 * sent again until it is answered).
 */
export const STEPS: Record<string, { replies: Record<string, SagaState>; giveUp?: SagaState }> = {
  reserving: { replies: { 'stock.reserved': 'charging', 'stock.rejected': 'cancelled' }, giveUp: 'releasing' },
  charging: { replies: { 'payment.captured': 'scheduling', 'payment.declined': 'releasing' }, giveUp: 'refunding' },
  scheduling: { replies: { 'shipment.scheduled': 'completed' }, giveUp: 'refunding' },
  refunding: { replies: { 'payment.refunded': 'releasing' } },
  releasing: { replies: { 'stock.released': 'cancelled' } },
};

/** The command each waiting state sends, and the part of the order its participant needs. */
export const COMMANDS: Record<string, { type: string; data: (o: PlacedOrder) => object }> = {
  reserving: { type: 'inventory.reserve', data: (o) => ({ orderId: o.orderId, items: o.items }) },
  charging: { type: 'payment.charge', data: (o) => ({ orderId: o.orderId, amountCents: o.amountCents, card: o.card }) },
  scheduling: { type: 'shipping.schedule', data: (o) => ({ orderId: o.orderId, items: o.items }) },
  refunding: { type: 'payment.refund', data: (o) => ({ orderId: o.orderId, amountCents: o.amountCents }) },
  releasing: { type: 'inventory.release', data: (o) => ({ orderId: o.orderId }) },
};
// #endregion steps

const TABLES = `
  CREATE TABLE IF NOT EXISTS orchestrator.sagas (
    order_id   text PRIMARY KEY,
    state      text NOT NULL,
    attempts   int NOT NULL,
    deadline   timestamptz,
    placed     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX IF NOT EXISTS sagas_waiting ON orchestrator.sagas (deadline) WHERE deadline IS NOT NULL;`;

const REPLIES = [...new Set(Object.values(STEPS).flatMap((s) => Object.keys(s.replies)))];
const SWEEP_EVERY_MS = 100;

type Send = (type: string, data: object) => void;

export async function startOrderSaga(deps: SagaDeps): Promise<OrderSaga> {
  const { stepTimeoutMs = 5000, maxAttempts = 3 } = deps;
  const log = deps.log ?? ((line: string) => console.error(line));

  /** The saga's row takes `state` (a first attempt, a new deadline) and its command goes out with it. */
  async function moveTo(client: pg.PoolClient, order: PlacedOrder, state: SagaState, send: Send) {
    const command = COMMANDS[state];
    await client.query(
      `UPDATE orchestrator.sagas SET state = $2, attempts = 1, updated_at = now(),
         deadline = CASE WHEN $3 THEN now() + $4 * interval '1 millisecond' END WHERE order_id = $1`,
      [order.orderId, state, command !== undefined, stepTimeoutMs],
    );
    if (command) send(command.type, command.data(order));
  }

  // #region replies
  const service = await startService({
    service: 'orchestrator',
    deps,
    tables: TABLES,
    keys: ['order.placed', ...REPLIES],
    async handle(ev, { client, emit }) {
      if (ev.type === 'order.placed') {
        const order = ev.data as unknown as PlacedOrder;
        const created = await client.query(
          `INSERT INTO orchestrator.sagas (order_id, state, attempts, deadline, placed)
           VALUES ($1, 'reserving', 1, now() + $2 * interval '1 millisecond', $3) ON CONFLICT (order_id) DO NOTHING`,
          [ev.correlationId, stepTimeoutMs, JSON.stringify(order)],
        );
        if (created.rowCount === 1) emit(COMMANDS.reserving!.type, COMMANDS.reserving!.data(order));
        return;
      }
      // FOR UPDATE: a reply and the time-out sweep never move the same saga at the same moment.
      const { rows } = await client.query<{ state: string; placed: PlacedOrder }>('SELECT state, placed FROM orchestrator.sagas WHERE order_id = $1 FOR UPDATE', [ev.correlationId]);
      const saga = rows[0];
      const next = saga ? STEPS[saga.state]?.replies[ev.type] : undefined;
      if (!saga || !next) return; // not the answer this saga waits for: a duplicate, late, or unknown
      await moveTo(client, saga.placed, next, emit);
    },
  });
  // #endregion replies

  // #region sweep
  /** One pass: every saga past its deadline gets its command again, or gives up on the step. */
  async function sweep() {
    const client = await service.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ order_id: string; state: string; attempts: number; placed: PlacedOrder }>(
        `SELECT order_id, state, attempts, placed FROM orchestrator.sagas
         WHERE deadline < now() ORDER BY deadline LIMIT 100 FOR UPDATE SKIP LOCKED`,
      );
      const events: ReturnType<typeof newEvent>[] = [];
      for (const saga of rows) {
        const send: Send = (type, data) => events.push(newEvent('orchestrator', type, data as Record<string, unknown>, { correlationId: saga.order_id }));
        const giveUp = STEPS[saga.state]?.giveUp;
        if (giveUp && saga.attempts >= maxAttempts) {
          await moveTo(client, saga.placed, giveUp, send);
        } else {
          await client.query(
            `UPDATE orchestrator.sagas SET attempts = attempts + 1, updated_at = now(),
               deadline = now() + $2 * interval '1 millisecond' WHERE order_id = $1`,
            [saga.order_id, stepTimeoutMs],
          );
          const command = COMMANDS[saga.state]!;
          send(command.type, command.data(saga.placed));
        }
      }
      await addToOutbox(client, 'orchestrator', events);
      await client.query('COMMIT');
      if (events.length > 0) service.publishSoon();
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
  // #endregion sweep

  let stopping = false;
  let wake: () => void = () => undefined;
  const sweeping = (async () => {
    while (!stopping) {
      await sweep().catch((err: Error) => log(`orchestrator: time-out sweep failed: ${err.message}`));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SWEEP_EVERY_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();

  return {
    async stop() {
      stopping = true;
      wake();
      await sweeping; // a pass in progress commits first
      await service.stop();
    },
  };
}

// On its own: RABBITMQ_URL=… DATABASE_URL=… npx tsx solutions/10-microservices/04-orchestrator.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const saga = await startOrderSaga({
    amqpUrl: process.env.RABBITMQ_URL ?? 'amqp://localhost',
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://localhost/shop',
  });
  console.log('orchestrating orders; Ctrl+C to stop');
  const bye = () => void saga.stop();
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
}

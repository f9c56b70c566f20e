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
    // TODO 1: UPDATE orchestrator.sagas SET state = $2, attempts = 1, updated_at = now(), and
    //         deadline = now() + stepTimeoutMs when COMMANDS[state] exists (a state that waits for
    //         a reply), NULL when it does not (completed, cancelled: nothing to wait for).
    // TODO 2: when COMMANDS[state] exists: send(command.type, command.data(order)).
    void client, order, state, send;
  }

  const service = await startService({
    service: 'orchestrator',
    deps,
    tables: TABLES,
    keys: ['order.placed', ...REPLIES],
    async handle(ev, { client, emit }) {
      // TODO 3: 'order.placed': INSERT the saga's row (order_id = ev.correlationId, state
      //         'reserving', attempts 1, a deadline, placed = the order) ON CONFLICT (order_id) DO
      //         NOTHING; only when it made a row (rowCount === 1), emit reserving's command.
      // TODO 4: any other event is a reply: SELECT state, placed … WHERE order_id = $1 FOR UPDATE;
      //         next = STEPS[saga.state]?.replies[ev.type]; no row or no next: return (change
      //         nothing); else await moveTo(client, saga.placed, next, emit).
      void ev, client, emit, moveTo;
    },
  });

  /** One pass: every saga past its deadline gets its command again, or gives up on the step. */
  async function sweep() {
    // TODO 5: in one transaction on a client of service.pool: SELECT order_id, state, attempts,
    //         placed FROM orchestrator.sagas WHERE deadline < now() … FOR UPDATE SKIP LOCKED.
    // TODO 6: for each saga: giveUp = STEPS[state]?.giveUp; with a giveUp and attempts >=
    //         maxAttempts, moveTo(giveUp); else attempts + 1, a new deadline, and the same command
    //         again. Collect the commands with newEvent('orchestrator', type, data, { correlationId:
    //         order_id }), addToOutbox(client, 'orchestrator', events), COMMIT, then
    //         service.publishSoon(). ROLLBACK on an error.
    void maxAttempts, addToOutbox, newEvent;
  }

  // TODO 7: run sweep() every SWEEP_EVERY_MS until stop() (log a failed pass, keep going);
  //         stop(): end the loop, wait for a pass in progress, then await service.stop().
  void sweep, log;
  return {
    async stop() {
      await service.stop();
    },
  };
}

// On its own: RABBITMQ_URL=… DATABASE_URL=… npx tsx exercises/10-microservices/04-orchestrator.ts
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

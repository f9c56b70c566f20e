// The whole shop in one process: the five services (or all but the one a check puts in its
// place), each with its own schema in one database, all on one broker vhost. Checks, the
// chapter's demo and `npm run lab shop` start it; the solutions of 10.1-10.3 ARE the reference
// inventory, payments and orders services.
import type pg from 'pg';
import type { Running } from './lib/consumer.js';
import type { ServiceDeps } from './lib/service.js';
import { startInventory } from '../../../solutions/10-microservices/01-inventory.js';
import { startPayments } from '../../../solutions/10-microservices/02-payments.js';
import { startOrders, type OrdersService } from '../../../solutions/10-microservices/03-orders.js';
import { startShipping } from './shipping.js';
import { startNotifications } from './notifications.js';

export type ServiceName = 'orders' | 'inventory' | 'payments' | 'shipping' | 'notifications';
export const SERVICES: ServiceName[] = ['orders', 'inventory', 'payments', 'shipping', 'notifications'];

const starters: Record<ServiceName, (deps: ServiceDeps) => Promise<Running>> = {
  orders: startOrders,
  inventory: startInventory,
  payments: startPayments,
  shipping: startShipping,
  notifications: startNotifications,
};

export interface WorldOptions extends ServiceDeps {
  /** Services not to start (a check runs the learner's in their place). */
  without?: ServiceName[];
}

export interface World {
  /** The reference orders service, unless it is one of `without`. */
  orders?: OrdersService;
  /** The services running now. */
  running(): ServiceName[];
  /** Starts one service again (after stopService), as a restart after a crash or a deploy. */
  startService(name: ServiceName): Promise<void>;
  stopService(name: ServiceName): Promise<void>;
  /** Stops every service it runs (each one even when another fails to stop). */
  stop(): Promise<void>;
}

export async function startWorld(opts: WorldOptions): Promise<World> {
  const { without = [], ...deps } = opts;
  const running = new Map<ServiceName, Running>();
  let orders: OrdersService | undefined;
  const startOne = async (name: ServiceName) => {
    if (running.has(name)) return;
    const svc = await starters[name](deps);
    running.set(name, svc);
    if (name === 'orders') orders = svc as OrdersService;
  };
  const stopOne = async (name: ServiceName) => {
    const svc = running.get(name);
    running.delete(name);
    if (name === 'orders') orders = undefined;
    await svc?.stop();
  };
  const world: World = {
    get orders() {
      return orders;
    },
    running: () => [...running.keys()],
    startService: startOne,
    stopService: stopOne,
    async stop() {
      await Promise.allSettled([...running.keys()].map(stopOne));
    },
  };
  // Each service declares its own queue and bindings as it starts: all of them must be up before
  // the first order, or the events meant for a missing queue are dropped by the exchange.
  const started = await Promise.allSettled(SERVICES.filter((s) => !without.includes(s)).map(startOne));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await world.stop();
    throw failed.reason;
  }
  return world;
}

/** Sets the stock of each sku (the inventory service must have created its tables). */
export async function setStock(sql: pg.ClientBase, stock: Record<string, number>): Promise<void> {
  for (const [sku, available] of Object.entries(stock)) {
    await sql.query('INSERT INTO inventory.stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available', [sku, available]);
  }
}

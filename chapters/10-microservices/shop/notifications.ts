// The shop's notifications service: tells the customer how the order ended, once.
import type { Running, Tx } from './lib/consumer.js';
import type { ShopEvent } from './lib/envelope.js';
import { startService, type ServiceDeps } from './lib/service.js';

export const TABLES = `
  CREATE TABLE IF NOT EXISTS notifications.sent (
    order_id text PRIMARY KEY,                                        -- one message per order
    kind text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );`;

export function startNotifications(deps: ServiceDeps): Promise<Running> {
  return startService({ service: 'notifications', deps, tables: TABLES, keys: ['order.completed', 'order.cancelled'], handle });
}

async function handle(ev: ShopEvent, { client }: Tx): Promise<void> {
  const { orderId } = ev.data as { orderId: string };
  // A real service would send an e-mail here, after the commit, from its own outbox.
  await client.query('INSERT INTO notifications.sent (order_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING', [orderId, ev.type]);
}

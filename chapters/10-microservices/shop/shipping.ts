// The shop's shipping service: one shipment per captured payment.
import { randomUUID } from 'node:crypto';
import type { Running, Tx } from './lib/consumer.js';
import type { ShopEvent } from './lib/envelope.js';
import { startService, type ServiceDeps } from './lib/service.js';

export const TABLES = `
  CREATE TABLE IF NOT EXISTS shipping.shipments (
    order_id text PRIMARY KEY,                                        -- one shipment per order
    shipment_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );`;

export function startShipping(deps: ServiceDeps): Promise<Running> {
  return startService({ service: 'shipping', deps, tables: TABLES, keys: ['payment.captured'], handle });
}

async function handle(ev: ShopEvent, { client, emit }: Tx): Promise<void> {
  const { orderId } = ev.data as { orderId: string };
  const shipmentId = randomUUID();
  const fresh = await client.query('INSERT INTO shipping.shipments (order_id, shipment_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [orderId, shipmentId]);
  if (fresh.rowCount === 1) emit('shipment.scheduled', { orderId, shipmentId });
}

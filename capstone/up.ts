// `npm run capstone -- up [--exercise]`: Postgres, the broker, the Odoo stand-in (or your
// Odoo: ODOO_URL, ODOO_DB, ODOO_USER, ODOO_API_KEY), the relay and the receiver
// (the reference bridge, or your code from exercises/), a status line every few seconds.
// Each `up` starts from an empty database and vhost. Ctrl-C, SIGTERM, SIGHUP (the terminal
// closed) or `npm run capstone -- down` in another terminal stop everything it started.
import pc from 'picocolors';
import pg from 'pg';
import { startOdooStandIn, type OdooStandIn } from './odoo/server.js';
import { isFree } from '../runner/broker/ports.js';
import { bridgeDatabase, bridgeVhost, clearUpState, LOG_DIR, partEnv, snapshot, spawnPart, statusLine, writeUpState, type CodeFrom, type Part, type Snapshot, type UpState } from './stack.js';
import type { OdooConfig } from '../solutions/13-capstone/04-odoo-client.js';

export async function up(opts: { from: CodeFrom; statusEveryS: number }): Promise<void> {
  const say = (line: string) => console.log(`${pc.dim(new Date().toISOString().slice(11, 23))} ${pc.magenta('up'.padEnd(8))} ${line}`);

  let databaseUrl: string;
  let dropDb: (() => Promise<void>) | undefined;
  if (process.env.DATABASE_URL) {
    // Your own Postgres: install the tables and triggers there, keep whatever it holds.
    databaseUrl = process.env.DATABASE_URL;
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const mod = (await import(`../${opts.from}/13-capstone/01-outbox.ts`)) as { installOutbox(db: pg.ClientBase): Promise<void> };
      await mod.installOutbox(client);
    } finally {
      await client.end();
    }
  } else {
    const db = await bridgeDatabase('up', 'bridge', opts.from);
    databaseUrl = db.url;
    dropDb = db.drop;
  }
  const { broker, url: amqpUrl, vhost } = await bridgeVhost('capstone', true);

  let standIn: OdooStandIn | undefined;
  let odoo: OdooConfig;
  if (process.env.ODOO_URL) {
    odoo = {
      url: process.env.ODOO_URL,
      db: process.env.ODOO_DB ?? 'odoo',
      user: process.env.ODOO_USER ?? 'admin',
      apiKey: process.env.ODOO_API_KEY ?? 'admin',
    };
  } else {
    const port = (await isFree(8069)) ? 8069 : 0;
    const adminPort = (await isFree(8070)) ? 8070 : 0;
    standIn = await startOdooStandIn({ port, adminPort });
    odoo = { url: standIn.url, db: standIn.db, user: standIn.login, apiKey: standIn.apiKey };
  }

  const state: UpState = { pid: process.pid, from: opts.from, databaseUrl, amqpUrl, managementUrl: broker.managementUrl, vhost, odoo, odooAdminUrl: standIn?.adminUrl };
  writeUpState(state);
  const env = partEnv(state);

  console.log(pc.bold(`\nThe bridge is up (${opts.from === 'solutions' ? 'the reference bridge from solutions/' : 'YOUR code from exercises/'}):`));
  console.log(`  Postgres   ${databaseUrl.replace(/:[^:@/]+@/, ':***@')}   (tables customers, outbox)`);
  console.log(`  RabbitMQ   ${broker.version}, vhost "${vhost}": ${broker.managementUrl}/#/queues/${encodeURIComponent(vhost)}  (guest / guest)`);
  console.log(`  Odoo       ${odoo.url}/jsonrpc  db=${odoo.db} user=${odoo.user}${standIn ? ' (the stand-in)' : ''}`);
  if (standIn) console.log(`             faults: curl -s ${standIn.adminUrl}/faults -d '{"down":true}'   (see ${standIn.adminUrl}/)`);
  console.log(`  Logs       ${LOG_DIR}/relay.log, receiver.log (one JSON object per line)`);
  console.log(`  Try        npm run capstone -- load --rows 5000 --rate 1000     then     npm run capstone -- verify\n`);

  const parts = new Map<Part['name'], Part>();
  let stopping = false;
  const start = (name: Part['name']) => {
    const part = spawnPart(name, opts.from, env);
    parts.set(name, part);
    // Their pids, for `down` should this process be killed without a chance to stop them.
    writeUpState({ ...state, parts: Object.fromEntries([...parts].map(([n, p]) => [n, p.child.pid])) });
    void part.exited.then((code) => {
      if (stopping) return;
      if (name === 'receiver' && code === 2) {
        say(pc.red(pc.bold('the receiver STOPPED: Odoo refused its credentials. Events wait in the queue. Fix the key, then restart `up`.')));
        return;
      }
      say(pc.red(`the ${name} exited (code ${code}); starting it again in 2 s`));
      setTimeout(() => !stopping && start(name), 2000);
    });
  };
  start('relay');
  start('receiver');

  let prev: Snapshot | undefined;
  const status = setInterval(() => {
    void snapshot(state)
      .then((snap) => {
        say(pc.dim(statusLine(snap, prev)));
        prev = snap;
      })
      .catch((err) => say(pc.dim(`status unavailable: ${(err as Error).message}`)));
  }, opts.statusEveryS * 1000);

  // process.on, not once: the same signal often comes twice (from the terminal or `timeout`
  // to the whole process group, and again from npm and tsx, which pass it on). A second one
  // must not kill this process halfway through stopping its children.
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => resolve());
  });
  stopping = true;
  clearInterval(status);
  say('stopping');
  for (const p of parts.values()) p.child.kill('SIGTERM');
  const allExited = Promise.all([...parts.values()].map((p) => p.exited));
  if (!(await Promise.race([allExited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5000))]))) {
    // A part still busy after 5 s (its own shutdown stuck) is killed, never left running.
    for (const p of parts.values()) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await allExited;
  }
  await standIn?.stop();
  await dropDb?.().catch(() => undefined);
  clearUpState();
}

// `npm run capstone -- chaos`: 10,000 writes while everything that can fail, fails:
// the relay is killed with SIGKILL and started again, the broker restarts, Odoo is down
// for 30 s, and poison rows are written. Then verify: nothing lost, nothing duplicated,
// nothing stale, the poison rows dead-lettered with their reason.
import pc from 'picocolors';
import { restartBroker } from '../runner/broker/restart.js';
import { startOdooStandIn } from './odoo/server.js';
import { loadRows } from './load.js';
import { verify, formatVerify, type VerifyResult } from './verify.js';
import { bridgeDatabase, bridgeVhost, partEnv, spawnPart, statusLine, snapshot, waitQuiet, type CodeFrom, type Part, type Snapshot } from './stack.js';

export interface ChaosOptions {
  rows: number;
  from: CodeFrom;
  /** Seconds Odoo stays down. */
  odooDownS: number;
  poison: number;
  rate: number;
}

export async function chaos(opts: ChaosOptions): Promise<VerifyResult> {
  const t0 = Date.now();
  const at = () => pc.dim(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s]`);
  const say = (line: string) => console.log(`${at()} ${pc.magenta('chaos')}  ${line}`);

  say(`setting up: a fresh database, a fresh vhost, the Odoo stand-in; the ${opts.from === 'solutions' ? 'reference bridge' : 'bridge from exercises/'}`);
  const db = await bridgeDatabase('chaos', 'bridge', opts.from);
  const { broker, url: amqpUrl, vhost } = await bridgeVhost('capstone-chaos', true);
  const odoo = await startOdooStandIn({ adminPort: false });
  const odooCfg = { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey };
  const stack = { databaseUrl: db.url, amqpUrl, odoo: odooCfg };
  const env = partEnv(stack);
  say(`Postgres database ${db.name}, RabbitMQ ${broker.version} vhost "${vhost}" (${broker.description}), Odoo stand-in ${odoo.url}`);

  let relay: Part = spawnPart('relay', opts.from, env);
  const receiver: Part = spawnPart('receiver', opts.from, env);
  const timers: NodeJS.Timeout[] = [];
  const later = (s: number, fn: () => Promise<void> | void) =>
    new Promise<void>((resolve) => timers.push(setTimeout(() => void Promise.resolve(fn()).catch((err) => say(pc.red(`failed: ${(err as Error).message}`))).finally(resolve), s * 1000)));

  let prev: Snapshot | undefined;
  const status = setInterval(() => {
    void snapshot(stack)
      .then((snap) => {
        say(pc.dim(statusLine(snap, prev)));
        prev = snap;
      })
      .catch(() => undefined);
  }, 5000);

  let result: VerifyResult | undefined;
  try {
    const loadS = opts.rows / opts.rate;
    say(`writing ${opts.rows} rows (inserts and updates) at ${opts.rate}/s for ~${Math.round(loadS)} s, ${opts.poison} of them poison`);
    const load = loadRows({ databaseUrl: db.url, rows: opts.rows, rate: opts.rate, poison: opts.poison });

    const events = [
      later(Math.min(3, loadS * 0.1), () => {
        say(pc.yellow(`SIGKILL the relay (pid ${relay.child.pid}): no goodbye, a batch may be published but not marked`));
        relay.child.kill('SIGKILL');
      }),
      later(Math.min(6, loadS * 0.2), () => {
        say('starting the relay again: it drains what piled up in the outbox');
        relay = spawnPart('relay', opts.from, env);
      }),
      later(Math.min(9, loadS * 0.35), async () => {
        if (!broker.restart) {
          say(pc.yellow(`broker restart SKIPPED: the workbook did not start this broker (${broker.description}). Run with WORKBOOK_BROKER=private to get a node it may restart.`));
          return;
        }
        say(pc.yellow('restarting the broker (stop_app, start_app): every connection drops'));
        const t = Date.now();
        await restartBroker(broker);
        say(`the broker is back after ${((Date.now() - t) / 1000).toFixed(1)} s`);
      }),
      later(Math.min(14, loadS * 0.5), async () => {
        say(pc.yellow(`Odoo goes DOWN for ${opts.odooDownS} s (connections refused)`));
        await odoo.setFaults({ down: true });
        await new Promise((r) => setTimeout(r, opts.odooDownS * 1000));
        await odoo.setFaults({ down: false });
        say('Odoo is back up: the delay queues bring every event back');
      }),
    ];
    const loaded = await load;
    say(`load done: ${loaded.inserted} inserts, ${loaded.updated} updates, ${loaded.poison} poison rows in ${(loaded.ms / 1000).toFixed(1)} s${Object.keys(loaded.failed).length ? `, failed: ${JSON.stringify(loaded.failed)}` : ''}`);
    await Promise.all(events);
    say('waiting for the bridge to go quiet (outbox drained, queues empty, Odoo stable)');
    const quiet = await waitQuiet(stack, 180_000);
    if (!quiet) say(pc.red('the bridge did not go quiet within 3 minutes; verifying anyway'));
    clearInterval(status);
    result = await verify(stack);
    const line = formatVerify(result);
    say(`${result.ok ? pc.green('verify:') : pc.red('verify:')} ${pc.bold(line)}  (${result.rows} rows, ${result.contacts} contacts in Odoo)`);
    for (const [kind, list] of Object.entries(result.examples)) for (const e of list) say(pc.dim(`  ${kind}: ${e}`));
    return result;
  } finally {
    clearInterval(status);
    timers.forEach(clearTimeout);
    for (const p of [relay, receiver]) p.child.kill('SIGTERM');
    await Promise.race([Promise.all([relay.exited, receiver.exited]), new Promise((r) => setTimeout(r, 5000))]);
    await odoo.stop();
    await db.drop().catch(() => undefined);
    say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s; the vhost "${vhost}" is kept: ${broker.managementUrl}/#/queues/${encodeURIComponent(vhost)}`);
  }
}

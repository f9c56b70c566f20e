// `npm run capstone -- naive`: the original project's design under ordinary trouble, to watch it lose rows.
// The trigger NOTIFYs the whole row; the listener publishes each notification; the
// receiver acks on HTTP 200 and retries every 5 s while Odoo is unreachable.
// Meanwhile: the listener is down for a few seconds (a deploy, a crash), Odoo refuses a few
// records (HTTP 200 with an error), Odoo commits a record but its answer is lost, and a
// few rows are bigger than a NOTIFY payload may be.
import colors from 'picocolors';
import { startOdooStandIn } from './odoo/server.js';
import { loadRows } from './load.js';
import { verify, formatVerify, type VerifyResult } from './verify.js';
import { createLogger } from './log.js';
import { startNaiveListener, NAIVE_QUEUE, type NaiveListener } from './naive/listen.js';
import { startNaiveReceiver } from './naive/receiver.js';
import { bridgeDatabase, bridgeVhost, queueCounts } from './stack.js';

export interface NaiveOptions {
  rows: number;
  rate: number;
  /** Seconds the listener is down. */
  listenerDownS: number;
}

export async function naive(opts: NaiveOptions): Promise<VerifyResult & { failedWrites: Record<string, number> }> {
  const t0 = Date.now();
  const at = () => colors.dim(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s]`);
  const say = (line: string) => console.log(`${at()} ${colors.magenta('naive')}  ${line}`);

  const db = await bridgeDatabase('naive', 'naive');
  const { url: amqpUrl, vhost, broker } = await bridgeVhost('capstone-naive', true);
  const odoo = await startOdooStandIn({ adminPort: false });
  const odooCfg = { url: odoo.url, db: odoo.db, user: odoo.login, apiKey: odoo.apiKey };
  const log = createLogger('naive');
  say(`the original project's design: trigger -> NOTIFY (the row as JSON) -> listen -> queue "${NAIVE_QUEUE}" -> receiver -> Odoo (ack on HTTP 200)`);

  let listener: NaiveListener | undefined = await startNaiveListener({ databaseUrl: db.url, amqpUrl, log });
  const receiver = await startNaiveReceiver({ amqpUrl, odoo: odooCfg, log });
  try {
    const loadS = opts.rows / opts.rate;
    say(`writing ${opts.rows} rows at ${opts.rate}/s; 6 of them poison (Odoo refuses), 2 bigger than 8000 bytes`);
    const load = loadRows({ databaseUrl: db.url, rows: opts.rows, rate: opts.rate, poison: 6, big: 2 });
    const downAt = loadS * 0.3;
    await new Promise((r) => setTimeout(r, downAt * 1000));
    say(colors.yellow(`the listener stops (a deploy, a crash) for ${opts.listenerDownS} s; the application keeps writing`));
    await listener.stop();
    listener = undefined;
    await odoo.setFaults({ dropAfterCommit: 2 });
    say(colors.yellow('Odoo will lose its answer twice: the record is committed, the reply never arrives'));
    await new Promise((r) => setTimeout(r, opts.listenerDownS * 1000));
    listener = await startNaiveListener({ databaseUrl: db.url, amqpUrl, log });
    say('the listener is back: LISTEN again. What was notified meanwhile is gone');
    const loaded = await load;
    const failed = Object.entries(loaded.failed).map(([m, n]) => `${n} × "${m}"`).join(', ');
    say(`load done: ${loaded.inserted} inserts, ${loaded.updated} updates${failed ? colors.red(`; the APPLICATION's writes failed: ${failed}`) : ''}`);

    // Wait until the queue is empty and the receiver idle.
    let lastAcked = -1;
    for (let quiet = 0; quiet < 3; ) {
      await new Promise((r) => setTimeout(r, 1000));
      const counts = await queueCounts(amqpUrl, [NAIVE_QUEUE]);
      const acked = receiver.acked();
      quiet = (counts[NAIVE_QUEUE] ?? 0) === 0 && acked === lastAcked ? quiet + 1 : 0;
      lastAcked = acked;
    }
    const result = await verify({ databaseUrl: db.url, odoo: odooCfg });
    say(`${colors.red('verify:')} ${colors.bold(formatVerify(result))}  (${result.rows} rows in Postgres, ${result.contacts} contacts in Odoo)`);
    for (const [kind, list] of Object.entries(result.examples)) for (const e of list) say(colors.dim(`  ${kind}: ${e}`));
    say(`Odoo answered ${Object.values(odoo.stats.errors).reduce((a, b) => a + b, 0)} errors with HTTP 200, and the receiver acked every one of them: ${JSON.stringify(odoo.stats.errors)}`);
    say(`Explore the queue in ${broker.managementUrl}/#/queues/${encodeURIComponent(vhost)}`);
    return { ...result, failedWrites: loaded.failed };
  } finally {
    await listener?.stop();
    await receiver.stop();
    await odoo.stop();
    await db.drop().catch(() => undefined);
  }
}

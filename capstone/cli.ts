// npm run capstone -- <command>
//   up [--exercise]             Postgres + broker + Odoo stand-in + relay + receiver, with a status line
//   load --rows N [--rate R]    writes N customers (inserts and updates) into the running bridge's database
//   verify                      compares Postgres with Odoo: lost=… duplicated=… stale=… dead_lettered=…
//   chaos [--exercise]          10,000 rows while the relay is SIGKILLed, the broker restarts and Odoo is down 30 s
//   naive                       the original project's design under the same kind of trouble, to watch it lose rows
//   down                        stops everything up started (relay, receiver, stand-in) and the embedded Postgres
import { Command, Option } from 'commander';
import pc from 'picocolors';
import { NoBrokerError } from '../runner/broker/types.js';
import { readUpState, waitQuiet, statusLine, haveExercises, type CodeFrom } from './stack.js';
import { verify, formatVerify } from './verify.js';
import { loadRows } from './load.js';

const program = new Command('capstone').description('Chapter 13: a Postgres -> RabbitMQ -> Odoo bridge that loses nothing');
const fromOf = (o: { exercise?: boolean }): CodeFrom => {
  if (o.exercise && !haveExercises()) throw new Error('exercises/13-capstone/ is missing');
  return o.exercise ? 'exercises' : 'solutions';
};

function needUp() {
  const s = readUpState();
  if (!s) {
    console.error(pc.red('Nothing is running: start the bridge first with `npm run capstone -- up` (in another terminal).'));
    process.exit(1);
  }
  return s;
}

program
  .command('up')
  .description('start Postgres, the broker, the Odoo stand-in, the relay and the receiver')
  .option('--exercise', 'run YOUR relay and receiver (exercises/13-capstone) instead of the reference ones')
  .addOption(new Option('--status-every <s>', 'seconds between status lines').default('5'))
  .action(async (o: { exercise?: boolean; statusEvery: string }) => {
    const { up } = await import('./up.js');
    await up({ from: fromOf(o), statusEveryS: Number(o.statusEvery) });
  });

program
  .command('load')
  .description('write customers into the running bridge’s database')
  .requiredOption('--rows <n>', 'writes in total (inserts and updates)')
  .option('--rate <r>', 'writes per second (0 = as fast as possible)', '0')
  .option('--poison <n>', 'rows Odoo will refuse (no name, unknown country)', '0')
  .option('--big <n>', 'rows with notes over 8000 bytes', '0')
  .action(async (o: { rows: string; rate: string; poison: string; big: string }) => {
    const s = needUp();
    const r = await loadRows({
      databaseUrl: s.databaseUrl,
      rows: Number(o.rows),
      rate: Number(o.rate),
      poison: Number(o.poison),
      big: Number(o.big),
      onProgress: (n) => process.stdout.write(`\r${n} / ${o.rows} writes`),
    });
    process.stdout.write('\n');
    console.log(`${r.inserted} inserts, ${r.updated} updates, ${r.poison} poison, ${r.big} big in ${(r.ms / 1000).toFixed(1)} s (${Math.round(((r.inserted + r.updated + r.poison + r.big) * 1000) / r.ms)} writes/s)`);
    for (const [m, n] of Object.entries(r.failed)) console.log(pc.red(`  ${n} write(s) failed: ${m}`));
  });

program
  .command('verify')
  .description('compare the source table with Odoo (waits for the bridge to go quiet first)')
  .option('--wait <s>', 'seconds to wait for the bridge to go quiet', '60')
  .action(async (o: { wait: string }) => {
    const s = needUp();
    const quiet = await waitQuiet(s, Number(o.wait) * 1000, (snap, prev) => console.log(pc.dim(statusLine(snap, prev))));
    if (!quiet) console.log(pc.yellow(`the bridge is still busy after ${o.wait} s; verifying anyway`));
    const r = await verify(s);
    console.log(`${r.ok ? pc.green('OK') : pc.red('NOT OK')}  ${pc.bold(formatVerify(r))}  (${r.rows} rows, ${r.contacts} contacts in Odoo)`);
    for (const [kind, list] of Object.entries(r.examples)) for (const e of list) console.log(pc.dim(`  ${kind}: ${e}`));
    process.exitCode = r.ok ? 0 : 1;
  });

program
  .command('chaos')
  .description('10,000 rows while the relay is SIGKILLed, the broker restarts, Odoo is down 30 s, plus poison rows; then verify')
  .option('--exercise', 'run YOUR relay and receiver')
  .option('--rows <n>', 'writes in total', '10000')
  .option('--rate <r>', 'writes per second', '400')
  .option('--odoo-down <s>', 'seconds Odoo stays down', '30')
  .option('--poison <n>', 'poison rows', '5')
  .action(async (o: { exercise?: boolean; rows: string; rate: string; odooDown: string; poison: string }) => {
    const { chaos } = await import('./chaos.js');
    const r = await chaos({ from: fromOf(o), rows: Number(o.rows), rate: Number(o.rate), odooDownS: Number(o.odooDown), poison: Number(o.poison) });
    process.exitCode = r.ok ? 0 : 1;
  });

program
  .command('naive')
  .description('the original project’s design (NOTIFY with the row, ack on HTTP 200) under ordinary trouble')
  .option('--rows <n>', 'writes in total', '2000')
  .option('--rate <r>', 'writes per second', '400')
  .option('--listener-down <s>', 'seconds the listener is down', '2')
  .action(async (o: { rows: string; rate: string; listenerDown: string }) => {
    const { naive } = await import('./naive.js');
    await naive({ rows: Number(o.rows), rate: Number(o.rate), listenerDownS: Number(o.listenerDown) });
  });

program
  .command('down')
  .description('stop everything `up` started (also from another terminal), and the embedded Postgres')
  .action(async () => {
    const { down } = await import('./down.js');
    for (const line of await down()) console.log(line);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  console.error(pc.red(err instanceof NoBrokerError ? err.message : `${(err as Error).message}`));
  process.exitCode = 1;
}

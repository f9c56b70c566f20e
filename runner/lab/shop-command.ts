// npm run lab shop [-- --orders 300] [--rate 50] [--record]
// Chapter 10's shop under a stream of orders with faults (runner/lab/shop.ts), in a vhost of its
// own and a fresh database; a live view redrawn four times a second (a line every two seconds
// when stdout is not a terminal); at the end the oracle's verdict, throughput and latencies, and
// with --record the figures in BENCHMARKS.md. Exit code 1 when an order is inconsistent.
// Everything it creates (services, connections, vhost, database) goes, Ctrl-C included.
import { loadavg } from 'node:os';
import pc from 'picocolors';
import { EXIT, UserError } from '../exit-codes.js';
import { rel } from '../paths.js';
import { machineDescription, recordSection } from './benchmarks-file.js';
import { broker } from '../session.js';
import { vhostUrl } from '../broker/types.js';
import { createSandbox } from '../sandbox/sandbox.js';
import type { LabOptions } from '../commands/lab.js';
import { renderLive, renderPlain, renderShopMarkdown, renderSummary, SHOP_BEGIN, SHOP_END, summarize, type LiveState } from './shop-report.js';

export async function shopCommand(opts: LabOptions): Promise<number> {
  const orders = Number(opts.orders ?? 300);
  const rate = Number(opts.rate ?? 50);
  if (!Number.isInteger(orders) || orders <= 0) throw new UserError('--orders must be a positive whole number', EXIT.USAGE);
  if (!(rate > 0)) throw new UserError('--rate must be a positive number (orders per second)', EXIT.USAGE);

  const b = await broker();
  const { createDatabase, sharedCluster } = await import('../../capstone/pg.js');
  const { startShopLab } = await import('./shop.js');
  const tty = process.stdout.isTTY === true;

  // Ctrl-C stops the run and lets the finally blocks below clean up; the CLI's own handler would
  // exit at once and leave the database behind, so it steps aside until the lab is done.
  const abort = new AbortController();
  const others = process.listeners('SIGINT');
  process.removeAllListeners('SIGINT');
  const serviceLog: string[] = [];
  let phase = 'starting';
  const onInterrupt = () => {
    process.off('SIGINT', onInterrupt); // a second Ctrl-C ends the process at once
    abort.abort();
    // On a terminal the live view says it (a line printed now would be drawn over).
    phase = 'stopping: the services, the connections, the vhost and the database go…';
    if (!tty) console.log(pc.yellow(`Stopping: ${phase.slice('stopping: '.length)}`));
  };
  process.on('SIGINT', onInterrupt);

  const loadAtStart = loadavg()[0]!;
  const startedAt = Date.now();
  try {
    console.log(`Shop lab: ${orders} orders at ${rate}/s through five services on RabbitMQ ${b.version} (${b.description}); Postgres starts on first use.`);
    const sandbox = await createSandbox(b, 'lab-shop');
    try {
      const db = await createDatabase(await sharedCluster(), 'lab');
      try {
        const lab = await startShopLab({
          amqpUrl: vhostUrl(b, sandbox.vhost),
          databaseUrl: db.url,
          orders,
          rate,
          signal: abort.signal,
          log: (line) => serviceLog.push(line),
          phase: (text) => {
            if (!abort.signal.aborted) phase = text;
          },
        });
        console.log(pc.dim(`  vhost ${sandbox.vhost}, database ${db.name}: both are removed at the end.`));
        const state = (): LiveState => ({ startedAt, now: Date.now(), target: orders, ledger: lab.ledger, duplicates: lab.duplicates, restart: lab.restart, phase });
        let drawn = 0;
        const draw = () => {
          // A line wider than the terminal wraps, and the redraw would climb too few lines.
          const width = (process.stdout.columns ?? 80) - 1;
          const lines = renderLive(state(), true).map((l) => (l.includes('\x1b') || l.length <= width ? l : l.slice(0, width)));
          process.stdout.write((drawn ? `\x1b[${drawn}A\x1b[J` : '') + lines.join('\n') + '\n');
          drawn = lines.length;
        };
        let lastRestartNote = '';
        const plain = () => {
          console.log(renderPlain(state()));
          const r = lab.restart;
          const note = !r ? '' : r.startedAt === undefined ? `${r.service} stopped` : `${r.service} running again`;
          if (note !== lastRestartNote) console.log(`  restart: ${note}${r?.startedAt ? ` after ${((r.startedAt - r.stoppedAt) / 1000).toFixed(1)} s; up to ${r.backlog} events waited in its queue` : ''}`);
          lastRestartNote = note;
        };
        const timer = tty ? setInterval(draw, 250) : setInterval(plain, 2000);
        let result;
        try {
          result = await lab.done;
        } finally {
          clearInterval(timer);
          if (tty) draw();
          else plain();
        }
        if (abort.signal.aborted) {
          console.log(pc.yellow('Interrupted: no verdict.'));
          return 130;
        }

        const summary = summarize(lab.ledger, { rate, duplicates: lab.duplicates, restart: lab.restart, violations: result.violations.map((v) => `${v.orderId}: ${v.problem}`) });
        console.log('');
        for (const line of renderSummary(summary)) console.log(line);
        if (serviceLog.length) console.log(pc.dim(`The services logged ${serviceLog.length} line(s); the last: ${serviceLog.at(-1)}`));
        console.log('');
        if (summary.violations.length === 0) {
          console.log(pc.green(`✔ The oracle checked every order in every schema: all ${summary.orders} are consistent (completed with one reservation, one payment, one shipment and one notification; or cancelled with nothing left reserved or charged), and the stock adds up.`));
        } else {
          console.log(pc.red(`✖ ${summary.violations.length} violation(s)${result.quiet ? '' : ' (the shop never went quiet: orders still pending when the lab stopped waiting)'}:`));
          for (const v of summary.violations.slice(0, 50)) console.log(pc.red(`  - ${v}`));
          if (summary.violations.length > 50) console.log(pc.red(`  … and ${summary.violations.length - 50} more`));
        }

        if (opts.record) {
          const section = renderShopMarkdown(summary, {
            date: new Date().toISOString().slice(0, 10),
            machine: `${machineDescription()}, load average ${loadAtStart.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end`,
            version: b.version,
          });
          console.log(`Recorded in ${rel(recordSection(section, SHOP_BEGIN, SHOP_END))}.`);
        }
        return summary.violations.length === 0 ? EXIT.OK : EXIT.FAILED;
      } finally {
        await db.drop().catch(() => undefined);
      }
    } finally {
      await sandbox.dispose().catch(() => undefined);
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    for (const l of others) process.on('SIGINT', l as () => void);
  }
}

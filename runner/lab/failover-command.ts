// npm run lab failover [-- --cycles 20] [--record] [--measure-start 3 [--blank]]
// Starts the local three-node cluster when it does not run (a spinner with the elapsed time),
// runs the failover lab (failover.ts), prints a table per cycle, a chart and Jepsen-style totals,
// and with --record writes them to BENCHMARKS.md. Exit code 1 when a confirmed message was lost.
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import pc from 'picocolors';
import { EXIT, UserError } from '../exit-codes.js';
import { rel } from '../paths.js';
import { terminalTable } from '../table.js';
import type { LabOptions } from '../commands/lab.js';
import { BENCHMARK_BEGIN, BENCHMARK_END, renderChart, renderJepsen, renderMarkdown, secs, spread, tally } from './failover-report.js';
import { machineDescription, recordSection } from './benchmarks-file.js';

export async function failoverCommand(opts: LabOptions): Promise<number> {
  const cycles = Number(opts.cycles ?? 20);
  if (!Number.isInteger(cycles) || cycles <= 0) throw new UserError('--cycles must be a positive whole number', EXIT.USAGE);
  const starts = opts.measureStart === undefined ? 0 : Number(opts.measureStart);
  if (!Number.isInteger(starts) || starts < 0) throw new UserError('--measure-start must be a whole number', EXIT.USAGE);
  const { locateServer } = await import('../broker/private-node.js');
  if (!locateServer()) {
    throw new UserError(
      'The failover lab runs on the local three-node cluster, made of three rabbitmq-server nodes, and no rabbitmq-server is installed here (apt-get install rabbitmq-server, brew install rabbitmq, or set RABBITMQ_SERVER_BIN).',
      EXIT.ENVIRONMENT,
    );
  }
  const cluster = await import('../broker/cluster.js');
  const { default: ora } = await import('ora');
  const spinner = ora({ isEnabled: process.stderr.isTTY === true, stream: process.stderr });
  const say = (line: string) => {
    const spinning = spinner.isSpinning;
    if (spinning) spinner.stop();
    console.log(line);
    if (spinning) spinner.start();
  };

  const startTimes: { blank: number[]; again: number[] } = { blank: [], again: [] };
  const start = async (label: string) => {
    spinner.start(`${label}…`);
    try {
      const { ms, started } = await cluster.startCluster({ onWait: (waited, activity) => (spinner.text = `${activity}… ${(waited / 1000).toFixed(1)} s`) });
      spinner.stopAndPersist({ symbol: pc.green('✔'), text: started.length ? `The cluster is formed: three running members after ${(ms / 1000).toFixed(1)} s.` : 'The cluster was already running.' });
      return started.length === 3 ? ms : undefined;
    } catch (err) {
      spinner.stopAndPersist({ symbol: pc.red('✖'), text: 'The cluster did not form.' });
      throw new UserError(`${(err as Error).message}\n\nEach node's logs are in ${rel(cluster.clusterDir)}/node-N/log/.`, EXIT.ENVIRONMENT);
    }
  };
  for (let i = 1; i <= starts; i++) {
    await cluster.stopCluster();
    if (opts.blank) rmSync(cluster.clusterDir, { recursive: true, force: true });
    const ms = await start(`Start ${i} of ${starts}: ${opts.blank ? 'a blank cluster' : 'the stopped cluster'}`);
    if (ms !== undefined) (opts.blank ? startTimes.blank : startTimes.again).push(ms);
  }
  await start('Starting the local three-node cluster from your rabbitmq-server');

  const loadAtStart = loadavg()[0]!;
  console.log(`Failover lab: ${cycles} cycles, each killing the node of a quorum queue's leader while a publisher (confirms, resends) and a consumer run.`);
  const { runFailoverLab } = await import('./failover.js');
  spinner.start('starting the publisher and the consumer');
  let run;
  try {
    run = await runFailoverLab({ cycles, progress: (text) => (spinner.text = text), say });
  } finally {
    spinner.stop();
  }

  const { rows, totals } = tally(run.sent, run.deliveries, run.cycles);
  const table = terminalTable({
    head: ['cycle', 'killed', 'new leader', 'election', 'stall', 'restart', 'published', 'confirmed', 'lost', 'duplicated', 'recovered', 'reconnects'],
    colAligns: ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
  });
  for (const r of rows) {
    table.push([r.index, `node ${r.killed}`, r.newLeader ? `node ${r.newLeader}` : '–', secs(r.electionMs), secs(r.stallMs), secs(r.restartMs), r.published, r.confirmed, r.lost ? pc.red(String(r.lost)) : '0', r.duplicated, r.recovered, r.reconnects]);
  }
  console.log('');
  console.log(table.toString());
  console.log('');
  console.log(renderChart(rows));
  console.log('');
  const e = spread(rows.map((r) => r.electionMs));
  const s = spread(rows.map((r) => r.stallMs));
  console.log(`Election: median ${secs(e.median)}, p90 ${secs(e.p90)}, max ${secs(e.max)}.   Publish stall: median ${secs(s.median)}, p90 ${secs(s.p90)}, max ${secs(s.max)}.`);
  console.log(`Published ${totals.attempts} messages (${totals.sends} copies: ${totals.sends - totals.attempts} resent), ${totals.confirmed} confirmed, ${totals.delivered} deliveries; ${run.nacks} nacks, ${run.channelRenewals} new channel(s) opened because the old one only nacked.`);
  console.log('');
  console.log(renderJepsen(totals));
  console.log('');
  console.log(
    totals.valid
      ? pc.green(`✔ Not one confirmed message was lost. ${totals.duplicated === 1 ? '1 was' : `${totals.duplicated} were`} delivered more than once: a resend after a lost confirm, or a delivery given again after the consumer's connection died. That is the price of at-least-once: consumers must be idempotent.`)
      : pc.red(`✖ ${totals.lost} confirmed message(s) were never delivered${totals.unexpected ? `, and ${totals.unexpected} delivered message(s) were never published` : ''}.`),
  );
  if (run.notSettled > totals.lost) console.log(pc.yellow(`  ${run.notSettled - totals.lost} message(s) were still unconfirmed when the lab stopped waiting (60 s).`));

  if (opts.record) {
    const section = renderMarkdown(rows, totals, {
      date: new Date().toISOString().slice(0, 10),
      machine: `${machineDescription()}, load average ${loadAtStart.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end`,
      version: run.version,
      cycles,
      durationMs: run.durationMs,
      clusterStarts: starts ? startTimes : undefined,
      nacks: run.nacks,
      channelRenewals: run.channelRenewals,
    });
    console.log(`Recorded in ${rel(recordSection(section, BENCHMARK_BEGIN, BENCHMARK_END))}.`);
  }
  return totals.valid ? EXIT.OK : EXIT.FAILED;
}

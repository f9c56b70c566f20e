// The failover lab's bookkeeping and charts, with no I/O: what was published, confirmed and
// delivered, per message id, turned into per-cycle counts in the manner of Jepsen's queue
// checker (lost, duplicated, recovered, unexpected), a table, bars for the terminal and a
// Markdown section for BENCHMARKS.md. runner/lab/failover.ts does the breaking; this file only
// counts, so tests/failover-lab.test.ts can check the counting on made-up histories.

import { withSection } from './benchmarks-file.js';

/** One message the publisher sent, by its id (the AMQP message-id). */
export interface Sent {
  id: string;
  /** The cycle during which it was first published (1-based). */
  cycle: number;
  /** When each copy went out (ms since the epoch): the first, then each resend. */
  sends: number[];
  /** When the broker confirmed it (basic.ack), if it did. */
  confirmedAt?: number;
}

/** One delivery the consumer got. */
export interface Delivery {
  id: string;
  at: number;
  redelivered: boolean;
}

/** What happened to the cluster in one cycle, and when (ms since the epoch). */
export interface Cycle {
  index: number;
  /** The node that held the queue's leader, and was killed. */
  killed: number;
  killAt: number;
  /** The node the management API named leader after the kill, and when it was first seen. */
  newLeader?: number;
  leaderSeenAt?: number;
  /** The first confirm of a message published after the kill. */
  firstConfirmAt?: number;
  /** How long the killed node took to start again and rejoin. */
  restartMs?: number;
  /** How many times the publisher and the consumer had to connect again during the cycle. */
  publisherReconnects: number;
  consumerReconnects: number;
  /** New channels the publisher opened because the old one answered with nacks only. */
  channelRenewals?: number;
}

export interface CycleRow {
  index: number;
  killed: number;
  newLeader?: number;
  electionMs?: number;
  stallMs?: number;
  restartMs?: number;
  published: number;
  confirmed: number;
  /** Confirmed to the publisher, never delivered: must be 0. */
  lost: number;
  /** Delivered more than once. */
  duplicated: number;
  /** Resent because their first copy was not confirmed (connection lost, nack), and delivered. */
  recovered: number;
  /** Never confirmed, never delivered: the publisher could not know, and nothing arrived. */
  unconfirmedLost: number;
  reconnects: string;
  /** The publisher's own node was the one killed: it had to connect again. */
  publisherReconnected: boolean;
}

export interface Totals {
  attempts: number;
  sends: number;
  confirmed: number;
  delivered: number;
  lost: number;
  duplicated: number;
  recovered: number;
  unexpected: number;
  /** Published messages delivered at least once. */
  ok: number;
  unconfirmedLost: number;
  /** Of the duplicates: deliveries the broker flagged redelivered (a consumer's unacked message given again). */
  redeliveries: number;
  valid: boolean;
}

/** Per-cycle rows and totals. A message counts in the cycle in which it was first published. */
export function tally(sent: Sent[], deliveries: Delivery[], cycles: Cycle[]): { rows: CycleRow[]; totals: Totals } {
  const deliveredCount = new Map<string, number>();
  for (const d of deliveries) deliveredCount.set(d.id, (deliveredCount.get(d.id) ?? 0) + 1);
  const known = new Set(sent.map((s) => s.id));
  const rows: CycleRow[] = cycles.map((c) => ({
    index: c.index,
    killed: c.killed,
    newLeader: c.newLeader,
    electionMs: c.leaderSeenAt === undefined ? undefined : c.leaderSeenAt - c.killAt,
    stallMs: c.firstConfirmAt === undefined ? undefined : c.firstConfirmAt - c.killAt,
    restartMs: c.restartMs,
    published: 0,
    confirmed: 0,
    lost: 0,
    duplicated: 0,
    recovered: 0,
    unconfirmedLost: 0,
    reconnects: reconnects(c),
    publisherReconnected: c.publisherReconnects > 0,
  }));
  const rowOf = new Map(rows.map((r) => [r.index, r]));
  const totals: Totals = { attempts: sent.length, sends: 0, confirmed: 0, delivered: deliveries.length, lost: 0, duplicated: 0, recovered: 0, unexpected: 0, ok: 0, unconfirmedLost: 0, redeliveries: 0, valid: true };
  for (const s of sent) {
    const row = rowOf.get(s.cycle) ?? rowOf.get(rows.at(-1)?.index ?? -1);
    const times = deliveredCount.get(s.id) ?? 0;
    const confirmed = s.confirmedAt !== undefined;
    const flags = { lost: confirmed && times === 0, duplicated: times > 1, recovered: s.sends.length > 1 && times > 0, unconfirmedLost: !confirmed && times === 0 };
    totals.sends += s.sends.length;
    if (confirmed) totals.confirmed++;
    if (times > 0) totals.ok++;
    for (const key of ['lost', 'duplicated', 'recovered', 'unconfirmedLost'] as const) if (flags[key]) totals[key]++;
    if (!row) continue;
    row.published++;
    if (confirmed) row.confirmed++;
    for (const key of ['lost', 'duplicated', 'recovered', 'unconfirmedLost'] as const) if (flags[key]) row[key]++;
  }
  totals.unexpected = deliveries.filter((d) => !known.has(d.id)).length;
  totals.redeliveries = deliveries.filter((d) => d.redelivered).length;
  totals.valid = totals.lost === 0 && totals.unexpected === 0;
  return { rows, totals };
}

function reconnects(c: Cycle): string {
  const parts = [
    c.publisherReconnects ? `publisher ${c.publisherReconnects}` : '',
    c.channelRenewals ? `new channel ${c.channelRenewals}` : '',
    c.consumerReconnects ? `consumer ${c.consumerReconnects}` : '',
  ].filter(Boolean);
  return parts.join(', ') || 'none';
}

// ---- numbers ------------------------------------------------------------------------------

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The p-th percentile (0-100), nearest rank. */
export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const secs = (ms: number | undefined) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(2)} s`);

/** Min, median, p90 and max of the cycles that measured it. */
export function spread(values: (number | undefined)[]): { n: number; min?: number; median?: number; p90?: number; max?: number } {
  const v = values.filter((x): x is number => x !== undefined);
  return { n: v.length, min: v.length ? Math.min(...v) : undefined, median: median(v), p90: percentile(v, 90), max: v.length ? Math.max(...v) : undefined };
}

// ---- the chart ----------------------------------------------------------------------------

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** A horizontal bar `width` cells wide at most, in eighths of a cell; at least a sliver for any value above 0. */
export function bar(value: number, max: number, width: number): string {
  if (!(value > 0) || !(max > 0)) return ''.padEnd(width);
  const eighths = Math.max(1, Math.round((Math.min(value, max) / max) * width * 8));
  return ('█'.repeat(Math.floor(eighths / 8)) + EIGHTHS[eighths % 8]).padEnd(width);
}

/** Election time and publish stall of every cycle, as two bars on one line, on one scale. */
export function renderChart(rows: CycleRow[], width = 28): string {
  const max = Math.max(0, ...rows.flatMap((r) => [r.electionMs ?? 0, r.stallMs ?? 0]));
  const lines = [
    'Per cycle: election (kill → a new leader seen) and publish stall (kill → the first confirm of a message published after it), on one scale',
    '',
    `  cycle  ${'election'.padEnd(width + 9)}  stall`,
  ];
  for (const r of rows) {
    const e = `${bar(r.electionMs ?? 0, max, width)} ${secs(r.electionMs).padStart(7)}`;
    const s = `${bar(r.stallMs ?? 0, max, width)} ${secs(r.stallMs).padStart(7)}`;
    lines.push(`  ${String(r.index).padStart(5)}  ${e}  ${s}`);
  }
  return lines.join('\n');
}

// ---- Jepsen's vocabulary --------------------------------------------------------------------

/**
 * The totals as Jepsen's total-queue checker reports them: an EDN map of counts and the verdict.
 * lost: confirmed, never delivered; unexpected: delivered, never published; duplicated: delivered
 * more than once; recovered: not known to have made it when first sent (resent), and delivered.
 */
export function renderJepsen(t: Totals): string {
  const entries: [string, string | number | boolean][] = [
    [':valid?', t.valid],
    [':attempt-count', t.attempts],
    [':acknowledged-count', t.confirmed],
    [':ok-count', t.ok],
    [':lost-count', t.lost],
    [':duplicated-count', t.duplicated],
    [':recovered-count', t.recovered],
    [':unexpected-count', t.unexpected],
  ];
  const pad = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v], i) => `${i === 0 ? '{' : ' '}${k.padEnd(pad)} ${v}${i === entries.length - 1 ? '}' : ''}`).join('\n');
}

// ---- BENCHMARKS.md ------------------------------------------------------------------------

export const BENCHMARK_BEGIN = '<!-- BEGIN failover lab: written by npm run lab failover -- --record -->';
export const BENCHMARK_END = '<!-- END failover lab -->';

export interface RunInfo {
  date: string;
  machine: string;
  version: string;
  cycles: number;
  durationMs: number;
  nacks?: number;
  channelRenewals?: number;
  /** Cluster start times measured by the lab, if any (ms). */
  clusterStarts?: { blank: number[]; again: number[] };
}

/** The lab's section of BENCHMARKS.md: the run, its per-cycle table and the totals. */
export function renderMarkdown(rows: CycleRow[], totals: Totals, run: RunInfo): string {
  const e = spread(rows.map((r) => r.electionMs));
  const s = spread(rows.map((r) => r.stallMs));
  const r = spread(rows.map((x) => x.restartMs));
  const fmt = (x: ReturnType<typeof spread>) => `median ${secs(x.median)}, p90 ${secs(x.p90)} (${secs(x.min)} to ${secs(x.max)})`;
  const out = [
    BENCHMARK_BEGIN,
    '## Failover lab (chapter 8): a quorum queue through repeated leader kills',
    '',
    `\`npm run lab failover -- --cycles ${run.cycles}\` on ${run.date}: ${run.machine}, RabbitMQ ${run.version}, the local three-node cluster. ${(run.durationMs / 60000).toFixed(1)} min in all.`,
    '',
    'Each cycle kills the node that holds the queue\'s leader (SIGKILL of its Erlang VM), waits until the management API of a survivor names a new leader, waits for the first confirm of a message published after the kill, then starts the node again and waits until its replica is back online. A publisher (confirms, every unconfirmed message kept and resent, rotating over the three nodes) and a consumer (manual acks, rotating too) run throughout.',
    '',
    `| what | over ${rows.length} cycles |`,
    '|---|---|',
    `| election: kill → new leader seen | ${fmt(e)} |`,
    `| publish stall: kill → first confirm of a message published after it | ${fmt(s)} |`,
    stallBySide(rows),
    `| killed node: start → running member again | ${fmt(r)} |`,
    `| messages published (ids) / copies sent / confirmed | ${totals.attempts} / ${totals.sends} / ${totals.confirmed} |`,
    ...(run.nacks !== undefined ? [`| nacks received / new channels opened because one only nacked | ${run.nacks} / ${run.channelRenewals ?? 0} |`] : []),
    `| **lost** (confirmed, never delivered) | **${totals.lost}** |`,
    `| duplicated (delivered more than once) | ${totals.duplicated} (${totals.redeliveries} deliveries flagged redelivered) |`,
    `| recovered (resent after a lost confirm, then delivered) | ${totals.recovered} |`,
    `| unexpected (delivered, never published) | ${totals.unexpected} |`,
    `| never confirmed and never delivered | ${totals.unconfirmedLost} |`,
  ];
  if (run.clusterStarts) {
    const b = spread(run.clusterStarts.blank);
    const a = spread(run.clusterStarts.again);
    if (b.n) out.push(`| cluster start, blank (folder removed), median of ${b.n} | ${secs(b.median)} (${run.clusterStarts.blank.map((x) => secs(x)).join(', ')}) |`);
    if (a.n) out.push(`| cluster start, stopped cluster (data kept), median of ${a.n} | ${secs(a.median)} (${run.clusterStarts.again.map((x) => secs(x)).join(', ')}) |`);
  }
  out.push('', '| cycle | killed | new leader | election | stall | restart | published | confirmed | lost | duplicated | recovered | reconnects |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const x of rows) {
    out.push(`| ${x.index} | ${x.killed} | ${x.newLeader ?? '–'} | ${secs(x.electionMs)} | ${secs(x.stallMs)} | ${secs(x.restartMs)} | ${x.published} | ${x.confirmed} | ${x.lost} | ${x.duplicated} | ${x.recovered} | ${x.reconnects} |`);
  }
  out.push('', '```', renderJepsen(totals), '```', BENCHMARK_END);
  return out.join('\n');
}

/** The stall of the cycles where the publisher's node survived, and of those where it died with the leader. */
function stallBySide(rows: CycleRow[]): string {
  const side = (died: boolean) => {
    const x = spread(rows.filter((r) => r.publisherReconnected === died).map((r) => r.stallMs));
    return x.n ? `median ${secs(x.median)} (${x.n} cycle${x.n === 1 ? '' : 's'})` : 'no cycle';
  };
  return `| publish stall when the publisher's node survived / when it died too (the publisher connected again) | ${side(false)} / ${side(true)} |`;
}

/** BENCHMARKS.md with the lab's section put in place of the previous one (or at the end). */
export function replaceSection(file: string, section: string): string {
  return withSection(file, section, BENCHMARK_BEGIN, BENCHMARK_END);
}

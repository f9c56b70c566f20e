// The shop lab's bookkeeping and rendering, with no I/O: each order's life (placed, final,
// compensated), the live view's lines, the summary and the section of BENCHMARKS.md.
// runner/lab/shop.ts runs the shop and feeds this file; tests can check it on made-up runs.
import pc from 'picocolors';
import { withSection } from './benchmarks-file.js';
import { percentile } from './failover-report.js';

export type FinalState = 'completed' | 'cancelled';

/** One order as the lab saw it, from its events (all times in ms since the epoch). */
export interface OrderLife {
  id: string;
  placedAt: number;
  finalAt?: number;
  state?: FinalState;
  /** Its stock was reserved and then released: the saga ran its compensation. */
  compensated: boolean;
  /** Why the lab expects it to be cancelled, if it does: the card it was given, or the quantity. */
  fault?: 'declined card' | 'short stock';
}

/** Every order of a run, by id, and the events seen. */
export class Ledger {
  readonly orders = new Map<string, OrderLife>();
  /** Arrival times of every event the lab's tap saw, for the events-per-second figure. */
  private readonly eventTimes: number[] = [];
  eventsTotal = 0;

  placed(id: string, at: number, fault?: OrderLife['fault']): void {
    const known = this.orders.get(id);
    // An event of the order may have reached the tap before placeOrder() returned.
    if (known) Object.assign(known, { placedAt: Math.min(known.placedAt, at), fault });
    else this.orders.set(id, { id, placedAt: at, compensated: false, fault });
  }

  /** An event seen on the exchange (the tap's copy). */
  event(type: string, orderId: string, at: number): void {
    this.eventsTotal++;
    this.eventTimes.push(at);
    let order = this.orders.get(orderId);
    if (!order) {
      order = { id: orderId, placedAt: at, compensated: false };
      this.orders.set(orderId, order);
    }
    if (type === 'stock.released') order.compensated = true;
    if ((type === 'order.completed' || type === 'order.cancelled') && order.state === undefined) {
      order.state = type === 'order.completed' ? 'completed' : 'cancelled';
      order.finalAt = at;
    }
  }

  /** Events seen in the last `windowMs`, per second. */
  eventsPerSecond(now: number, windowMs = 1000): number {
    let n = 0;
    for (let i = this.eventTimes.length - 1; i >= 0 && this.eventTimes[i]! > now - windowMs; i--) n++;
    return (n * 1000) / windowMs;
  }

  counts(): { placed: number; pending: number; completed: number; cancelled: number; compensated: number } {
    let pending = 0;
    let completed = 0;
    let cancelled = 0;
    let compensated = 0;
    for (const o of this.orders.values()) {
      if (o.state === 'completed') completed++;
      else if (o.state === 'cancelled') cancelled++;
      else pending++;
      if (o.compensated) compensated++;
    }
    return { placed: this.orders.size, pending, completed, cancelled, compensated };
  }

  /** Placed → final, in ms, of every order that reached a final state. */
  latencies(): number[] {
    return [...this.orders.values()].filter((o) => o.finalAt !== undefined).map((o) => o.finalAt! - o.placedAt);
  }
}

// ---- the live view --------------------------------------------------------------------------

/** A service the lab stopped and started again. */
export interface Restart {
  service: string;
  stoppedAt: number;
  startedAt?: number;
  /** The most events its queue held while it was down. */
  backlog: number;
}

export interface LiveState {
  startedAt: number;
  now: number;
  target: number;
  ledger: Ledger;
  duplicates: { sameId: number; newId: number };
  restart?: Restart;
  /** What the lab is doing now: placing orders, waiting for the last ones… */
  phase: string;
}

const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** A bar of `width` cells for value/max (full blocks only: it is redrawn several times a second). */
function gauge(value: number, max: number, width: number): string {
  const n = max > 0 ? Math.round((Math.min(value, max) / max) * width) : 0;
  return '█'.repeat(n) + '·'.repeat(width - n);
}

/** The live view: a few lines, redrawn in place on a terminal. */
export function renderLive(s: LiveState, color = true): string[] {
  const paint = color ? pc : { green: String, red: String, yellow: String, cyan: String, dim: String, bold: String };
  const c = s.ledger.counts();
  const width = 30;
  const line = (label: string, n: number, tint: (x: string) => string) => `  ${label.padEnd(11)} ${tint(gauge(n, s.target, width))} ${String(n).padStart(6)}`;
  const lines = [
    paint.bold(`Shop lab: ${s1(s.now - s.startedAt)}, ${s.phase}`),
    line('placed', c.placed, paint.cyan),
    line('pending', c.pending, paint.yellow),
    line('completed', c.completed, paint.green),
    line('cancelled', c.cancelled, paint.red),
    `  sagas compensated (stock released): ${c.compensated}   events: ${s.ledger.eventsTotal}, ${Math.round(s.ledger.eventsPerSecond(s.now))}/s now`,
    `  published again: ${s.duplicates.sameId} with the same messageId, ${s.duplicates.newId} with a new one`,
  ];
  lines.push(`  ${restartText(s.restart, s.now)}`);
  return lines;
}

function restartText(r: Restart | undefined, now: number): string {
  if (!r) return 'restart: one service is stopped a third of the way in, then started again';
  if (r.startedAt === undefined) return `restart: ${r.service} STOPPED for ${s1(now - r.stoppedAt)}, ${r.backlog} events wait in its queue`;
  return `restart: ${r.service} was down ${s1(r.startedAt - r.stoppedAt)} (up to ${r.backlog} events queued), runs again`;
}

/** One line for a log (stdout is not a terminal). */
export function renderPlain(s: LiveState): string {
  const c = s.ledger.counts();
  return `[${s1(s.now - s.startedAt).padStart(7)}] placed ${c.placed}/${s.target}, pending ${c.pending}, completed ${c.completed}, cancelled ${c.cancelled} (compensated ${c.compensated}), ${Math.round(s.ledger.eventsPerSecond(s.now))} events/s`;
}

// ---- the summary ------------------------------------------------------------------------------

export interface Summary {
  orders: number;
  rate: number;
  completed: number;
  cancelled: number;
  compensated: number;
  pending: number;
  /** Cancelled orders the lab gave a declined card / more than the stock. */
  faults: { declined: number; short: number };
  eventsTotal: number;
  duplicates: { sameId: number; newId: number };
  restart?: Restart;
  /** First order placed → last order final. */
  durationMs: number;
  /** Orders that reached a final state, per second of durationMs. */
  throughput: number;
  p50?: number;
  p99?: number;
  max?: number;
  violations: string[];
}

export function summarize(ledger: Ledger, extra: Pick<Summary, 'rate' | 'duplicates' | 'restart' | 'violations'>): Summary {
  const orders = [...ledger.orders.values()];
  const c = ledger.counts();
  const first = Math.min(...orders.map((o) => o.placedAt));
  const finals = orders.filter((o) => o.finalAt !== undefined).map((o) => o.finalAt!);
  const durationMs = finals.length ? Math.max(...finals) - first : 0;
  const lat = ledger.latencies();
  return {
    orders: c.placed,
    completed: c.completed,
    cancelled: c.cancelled,
    compensated: c.compensated,
    pending: c.pending,
    faults: {
      declined: orders.filter((o) => o.fault === 'declined card').length,
      short: orders.filter((o) => o.fault === 'short stock').length,
    },
    eventsTotal: ledger.eventsTotal,
    durationMs,
    throughput: durationMs > 0 ? (finals.length * 1000) / durationMs : 0,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? Math.max(...lat) : undefined,
    ...extra,
  };
}

const ms = (x: number | undefined) => (x === undefined ? '–' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);

/** The summary for the terminal, after the run. */
export function renderSummary(s: Summary): string[] {
  const lines = [
    `${s.orders} orders at ${s.rate}/s: ${s.completed} completed, ${s.cancelled} cancelled (${s.compensated} of them compensated: stock reserved, then released after a declined card), ${s.pending} still pending.`,
    `Faults injected: ${s.faults.declined} declined cards, ${s.faults.short} orders for more than the stock, ${s.duplicates.sameId + s.duplicates.newId} events published again (${s.duplicates.sameId} with the same messageId, ${s.duplicates.newId} with a new one)${s.restart ? `, ${s.restart.service} stopped for ${ms((s.restart.startedAt ?? s.restart.stoppedAt) - s.restart.stoppedAt)} (up to ${s.restart.backlog} events waited in its queue)` : ''}.`,
    `Throughput ${s.throughput.toFixed(1)} orders/s to a final state (${ms(s.durationMs)} from the first order placed to the last one final); placed → final: p50 ${ms(s.p50)}, p99 ${ms(s.p99)}, max ${ms(s.max)}; ${s.eventsTotal} events.`,
  ];
  return lines;
}

// ---- BENCHMARKS.md ------------------------------------------------------------------------------

export const SHOP_BEGIN = '<!-- BEGIN shop lab: written by npm run lab shop -- --record -->';
export const SHOP_END = '<!-- END shop lab -->';

export interface RunInfo {
  date: string;
  machine: string;
  version: string;
}

export function renderShopMarkdown(s: Summary, run: RunInfo): string {
  const restart = s.restart ? `${s.restart.service}, down ${ms((s.restart.startedAt ?? s.restart.stoppedAt) - s.restart.stoppedAt)}, up to ${s.restart.backlog} events waiting in its queue` : 'none';
  return [
    SHOP_BEGIN,
    '## Shop lab (chapter 10): five services, one saga per order, under faults',
    '',
    `\`npm run lab shop -- --orders ${s.orders} --rate ${s.rate}\` on ${run.date}: ${run.machine}, RabbitMQ ${run.version}, the workbook's embedded Postgres. All five services run in one process, each with its own connections, pool, outbox relay and quorum queue.`,
    '',
    '| what | figure |',
    '|---|---|',
    `| orders placed / completed / cancelled / left pending | ${s.orders} / ${s.completed} / ${s.cancelled} / ${s.pending} |`,
    `| sagas compensated (stock reserved, then released after a declined card) | ${s.compensated} |`,
    `| faults: declined cards / orders for more than the stock | ${s.faults.declined} / ${s.faults.short} |`,
    `| events published again: same messageId / new messageId | ${s.duplicates.sameId} / ${s.duplicates.newId} |`,
    `| service stopped and started again | ${restart} |`,
    `| events on the exchange | ${s.eventsTotal} |`,
    `| throughput: orders to a final state per second | ${s.throughput.toFixed(1)} (first placed → last final: ${ms(s.durationMs)}) |`,
    `| placed → final: p50 / p99 / max | ${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)} |`,
    `| **oracle violations** | **${s.violations.length}** |`,
    SHOP_END,
  ].join('\n');
}

/** BENCHMARKS.md with the lab's section put in place of the previous one (or at the end). */
export function replaceShopSection(file: string, section: string): string {
  return withSection(file, section, SHOP_BEGIN, SHOP_END);
}

// The failover lab's counting and charts (runner/lab/failover-report.ts), on made-up histories:
// no broker, no cluster. The lab itself (npm run lab failover) needs the local cluster.
import { describe, expect, it } from 'vitest';
import {
  BENCHMARK_BEGIN,
  BENCHMARK_END,
  bar,
  median,
  percentile,
  renderChart,
  renderJepsen,
  renderMarkdown,
  replaceSection,
  spread,
  tally,
  type Cycle,
  type Delivery,
  type Sent,
} from '../runner/lab/failover-report.js';

const cycle = (index: number, killAt: number, extra: Partial<Cycle> = {}): Cycle => ({
  index,
  killed: 1,
  killAt,
  newLeader: 2,
  leaderSeenAt: killAt + 800,
  firstConfirmAt: killAt + 1500,
  restartMs: 7000,
  publisherReconnects: 0,
  consumerReconnects: 0,
  ...extra,
});
const sent = (id: string, c: number, sends: number[], confirmedAt?: number): Sent => ({ id, cycle: c, sends, confirmedAt });
const got = (id: string, redelivered = false): Delivery => ({ id, at: 0, redelivered });

describe('tally', () => {
  it('counts each message in the cycle it was first published in', () => {
    const history = [sent('a', 1, [1], 2), sent('b', 1, [3], 4), sent('c', 2, [5], 6)];
    const { rows, totals } = tally(history, [got('a'), got('b'), got('c')], [cycle(1, 0), cycle(2, 100)]);
    expect(rows.map((r) => [r.published, r.confirmed, r.lost, r.duplicated, r.recovered])).toEqual([
      [2, 2, 0, 0, 0],
      [1, 1, 0, 0, 0],
    ]);
    expect(totals).toMatchObject({ attempts: 3, sends: 3, confirmed: 3, delivered: 3, ok: 3, lost: 0, valid: true });
  });

  it('calls a confirmed message that never arrives lost, and the run invalid', () => {
    const { rows, totals } = tally([sent('a', 1, [1], 2), sent('b', 1, [3], 4)], [got('a')], [cycle(1, 0)]);
    expect(rows[0]!.lost).toBe(1);
    expect(totals).toMatchObject({ lost: 1, valid: false });
  });

  it('does not call an unconfirmed message that never arrives lost: the publisher could not know', () => {
    const { rows, totals } = tally([sent('a', 1, [1])], [], [cycle(1, 0)]);
    expect(rows[0]).toMatchObject({ lost: 0, unconfirmedLost: 1 });
    expect(totals.valid).toBe(true);
  });

  it('counts a resent message that arrived as recovered, and one that arrived twice as duplicated', () => {
    const history = [sent('a', 1, [1, 50], 60), sent('b', 1, [2, 51], 61), sent('c', 1, [3], 4)];
    const deliveries = [got('a'), got('b'), got('b'), got('c'), got('c', true)];
    const { rows, totals } = tally(history, deliveries, [cycle(1, 0)]);
    expect(rows[0]).toMatchObject({ recovered: 2, duplicated: 2, lost: 0 });
    expect(totals).toMatchObject({ sends: 5, recovered: 2, duplicated: 2, redeliveries: 1, delivered: 5, ok: 3 });
  });

  it('flags a delivery nobody published as unexpected', () => {
    const { totals } = tally([sent('a', 1, [1], 2)], [got('a'), got('zz')], [cycle(1, 0)]);
    expect(totals).toMatchObject({ unexpected: 1, valid: false });
  });

  it('measures election and stall from the kill, and keeps what was not seen undefined', () => {
    const { rows } = tally([], [], [cycle(1, 1000, { leaderSeenAt: 1900, firstConfirmAt: 3100 }), cycle(2, 5000, { leaderSeenAt: undefined, firstConfirmAt: undefined, newLeader: undefined })]);
    expect(rows.map((r) => [r.electionMs, r.stallMs])).toEqual([
      [900, 2100],
      [undefined, undefined],
    ]);
  });

  it('names the clients that had to connect again', () => {
    const { rows } = tally([], [], [cycle(1, 0, { publisherReconnects: 1 }), cycle(2, 9, { consumerReconnects: 2, publisherReconnects: 1 }), cycle(3, 20)]);
    expect(rows.map((r) => r.reconnects)).toEqual(['publisher 1', 'publisher 1, consumer 2', 'none']);
  });
});

describe('numbers', () => {
  it('median, percentile and spread', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeUndefined();
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)).toBe(9);
    expect(percentile([5], 90)).toBe(5);
    expect(spread([3, undefined, 1, 2])).toEqual({ n: 3, min: 1, median: 2, p90: 3, max: 3 });
  });
});

describe('the chart', () => {
  it('draws bars in eighths of a cell, never longer than the width, a sliver for any positive value', () => {
    expect(bar(10, 10, 4)).toBe('████');
    expect(bar(5, 10, 4)).toBe('██  ');
    expect(bar(1, 10, 4)).toBe('▍   '); // 3.2 eighths of a cell, rounded
    expect(bar(0.001, 10, 4)).toBe('▏   ');
    expect(bar(0, 10, 4)).toBe('    ');
    expect(bar(20, 10, 4)).toBe('████');
  });

  it('puts election and stall of every cycle on one line, on one scale', () => {
    const { rows } = tally([], [], [cycle(1, 0, { leaderSeenAt: 1000, firstConfirmAt: 2000 }), cycle(2, 0, { leaderSeenAt: 500, firstConfirmAt: undefined })]);
    const lines = renderChart(rows, 8).split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[3]).toContain('████    ');
    expect(lines[3]).toContain('1.00 s');
    expect(lines[3]).toContain('████████');
    expect(lines[3]).toContain('2.00 s');
    expect(lines[4]).toContain('██      ');
    expect(lines[4]).toContain('–');
  });

  it('reports the totals as Jepsen does', () => {
    const { totals } = tally([sent('a', 1, [1, 5], 6)], [got('a'), got('a')], [cycle(1, 0)]);
    const edn = renderJepsen(totals);
    expect(edn.startsWith('{:valid?')).toBe(true);
    expect(edn.trim().endsWith('}')).toBe(true);
    expect(edn).toMatch(/:lost-count\s+0/);
    expect(edn).toMatch(/:duplicated-count\s+1/);
    expect(edn).toMatch(/:recovered-count\s+1/);
  });
});

describe('BENCHMARKS.md', () => {
  const { rows, totals } = tally([sent('a', 1, [1], 2)], [got('a')], [cycle(1, 0)]);
  const section = renderMarkdown(rows, totals, { date: '2026-11-29', machine: 'a test machine', version: '3.10.8', cycles: 1, durationMs: 60_000, clusterStarts: { blank: [9000, 8000, 10000], again: [] } });

  it('writes the run, its table and the cluster start time between markers', () => {
    expect(section.startsWith(BENCHMARK_BEGIN)).toBe(true);
    expect(section.endsWith(BENCHMARK_END)).toBe(true);
    expect(section).toContain('2026-11-29');
    expect(section).toContain('| **lost** (confirmed, never delivered) | **0** |');
    expect(section).toContain('median of 3 | 9.00 s');
    expect(section).toContain('| 1 | 1 | 2 | 0.80 s | 1.50 s | 7.00 s | 1 | 1 | 0 | 0 | 0 | none |');
    expect(section).toContain("when it died too (the publisher connected again) | median 1.50 s (1 cycle) / no cycle |");
  });

  it('replaces its own section and leaves the rest of the file alone', () => {
    const first = replaceSection('# Benchmarks\n\nother figures\n', section);
    expect(first).toBe(`# Benchmarks\n\nother figures\n\n${section}\n`);
    const again = replaceSection(`${first}\n## Later section\n`, section.replace('2026-11-29', '2026-12-01'));
    expect(again).toContain('2026-12-01');
    expect(again).not.toContain('2026-11-29');
    expect(again).toContain('other figures');
    expect(again).toContain('## Later section');
  });
});

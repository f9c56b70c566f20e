// Where a check's time goes, for authors (`npm run selfcheck ID -- --timings`, the bench).
// Figures only: nothing is judged on them.
//
// The runner measures its own phases (sandbox vhost, compiling, the worker's start, teardown,
// deleting the vhost); the worker measures loading the code, proving the URL, and splits the
// check's own run into three parts that never overlap: the code under check running
// (inside t.call()), the checker waiting for the broker (t.waitFor(), t.pause()), and the
// checker's other steps (declaring, publishing, reading the broker).

/** Milliseconds per phase; and how many channels the checker opened, and how often t.waitFor() asked the broker. */
export type Timings = Partial<Record<Phase | 'channels' | 'polls', number>>;

export const PHASES = ['sandbox', 'compile', 'boot', 'load', 'connect', 'learner', 'waiting', 'checker', 'teardown', 'dispose'] as const;
export type Phase = (typeof PHASES)[number];

export const PHASE_TEXT: Record<Phase, string> = {
  sandbox: 'creating the sandbox vhost',
  compile: 'compiling (esbuild) or applying the patch',
  boot: 'starting the worker thread',
  load: 'importing the check and the code under check',
  connect: "the checker's connection (proving the URL)",
  learner: 'the code under check (inside t.call)',
  waiting: 'waiting for the broker (t.waitFor, t.pause)',
  checker: "the checker's own steps",
  teardown: 'ending the worker, collecting its output',
  dispose: 'deleting the sandbox vhost',
};

/**
 * Splits the wall time of a check into learner / waiting / checker. Calls may nest or run side
 * by side (a t.waitFor() while a t.call() is pending): time counts as the code under check's
 * while any call runs, else as waiting while any wait runs, else as the checker's.
 */
export class PhaseClock {
  private calls = 0;
  private waits = 0;
  private since = performance.now();
  readonly spent = { learner: 0, waiting: 0, checker: 0 };
  /** Channels the checker opened, and probes t.waitFor() made (each may be a round trip to the broker). */
  channels = 0;
  polls = 0;

  private tick(): void {
    const now = performance.now();
    const kind = this.calls > 0 ? 'learner' : this.waits > 0 ? 'waiting' : 'checker';
    this.spent[kind] += now - this.since;
    this.since = now;
  }

  private rounded(): Timings {
    return { learner: Math.round(this.spent.learner), waiting: Math.round(this.spent.waiting), checker: Math.round(this.spent.checker), channels: this.channels, polls: this.polls };
  }

  /** Runs `fn` as the code under check's time (kind 'learner') or as waiting. */
  async during<R>(kind: 'learner' | 'waiting', fn: () => Promise<R>): Promise<R> {
    this.tick();
    if (kind === 'learner') this.calls++;
    else this.waits++;
    try {
      return await fn();
    } finally {
      this.tick();
      if (kind === 'learner') this.calls--;
      else this.waits--;
    }
  }

  /** Starts counting from now (the check's own run begins). */
  reset(): void {
    this.since = performance.now();
    this.spent.learner = this.spent.waiting = this.spent.checker = 0;
  }

  /** Closes the current stretch and returns the split, with the counts. */
  stop(): Timings {
    this.tick();
    return this.rounded();
  }
}

/**
 * A stopwatch for one phase, in whole ms: `const done = lap(); …; timings.x = done();`
 * performance.now(), not Date.now(): some checks replace Date to pin the learner's clock.
 */
export function lap(): () => number {
  const started = performance.now();
  return () => Math.round(performance.now() - started);
}

/** Sums timings of many checks per phase. */
const KEYS = [...PHASES, 'channels', 'polls'] as const;

export function sumTimings(all: (Timings | undefined)[]): Timings {
  const sum: Timings = {};
  for (const t of all) for (const k of KEYS) if (t?.[k] !== undefined) sum[k] = (sum[k] ?? 0) + t[k]!;
  return sum;
}

/** `sandbox 40 · compile 3 · boot 120 · … (ms); 3 channels, 12 polls`: what was measured. */
export function formatTimings(t: Timings): string {
  const counts = [t.channels !== undefined ? `${t.channels} checker channels` : '', t.polls !== undefined ? `${t.polls} polls` : ''].filter(Boolean);
  return PHASES.filter((p) => t[p] !== undefined).map((p) => `${p} ${t[p]}`).join(' · ') + (counts.length ? `; ${counts.join(', ')}` : '');
}

/** The lines of a timing report over many verdicts: each phase's share, then each exercise's checks. */
export function timingReport(verdicts: { id: string; target: string; variant?: string; durationMs: number; timings?: Timings }[]): string[] {
  const total = verdicts.reduce((n, v) => n + v.durationMs, 0) || 1;
  const sum = sumTimings(verdicts.map((v) => v.timings));
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const lines = [`Time per phase, summed over ${verdicts.length} checks (${sec(total)} of check time; checks that run side by side each count their own time):`];
  for (const p of PHASES) if (sum[p] !== undefined) lines.push(`  ${p.padEnd(9)} ${sec(sum[p]!).padStart(8)} ${((100 * sum[p]!) / total).toFixed(0).padStart(3)} %  ${PHASE_TEXT[p]}`);
  const byId = new Map<string, typeof verdicts>();
  for (const v of verdicts) byId.set(v.id, [...(byId.get(v.id) ?? []), v]);
  lines.push('', 'Per exercise: checks, summed check time, the longest check, and where the time of all its checks went:');
  for (const [id, vs] of [...byId].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }))) {
    const longest = vs.reduce((a, b) => (b.durationMs > a.durationMs ? b : a));
    const s = sumTimings(vs.map((v) => v.timings));
    lines.push(`  ${id.padEnd(5)} ${String(vs.length).padStart(3)} check${vs.length === 1 ? ' ' : 's'} ${sec(vs.reduce((n, v) => n + v.durationMs, 0)).padStart(8)}  longest ${sec(longest.durationMs)} (${longest.variant ?? longest.target})  ${formatTimings(s)}`);
  }
  return lines;
}

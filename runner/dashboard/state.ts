// The class as the dashboard sees it: one cell per learner and exercise, built from the check
// events in the order the stream holds them. Plain data, sent as is to the page, which decides
// what is stuck (the page knows the time; a learner becomes stuck without any new event).
import type { CheckEvent } from '../classroom/events.js';

export interface Cell {
  learner: string;
  exercise: string;
  attempts: number;
  /** The first verdict's time (ms since 1970). */
  firstAt: number;
  lastAt: number;
  last: { verdict: CheckEvent['verdict']; summary: string; durationMs: number };
  /** When the exercise first passed, if it did. */
  passedAt?: number;
  /** Failed verdicts since the last pass (or since the first attempt): what "stuck" counts. */
  failsSincePass: number;
  /** The first of those failed verdicts. */
  failingSince?: number;
}

export interface Thresholds {
  /** Stuck after this many failed verdicts of one exercise without a pass. */
  fails: number;
  /** Stuck after failing one exercise for this many minutes without a pass. */
  minutes: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { fails: 5, minutes: 10 };

export interface Snapshot {
  className: string;
  learners: string[];
  exercises: { id: string; title: string }[];
  cells: Cell[];
  thresholds: Thresholds;
  refused: number;
}

/** A learner's clock may be wrong: a time in the future counts as now. */
const when = (at: string, now: number) => Math.min(Date.parse(at), now);

export class ClassState {
  private cells = new Map<string, Cell>();
  /** user and messageId of every event applied: a runner sends an event again when its confirm came too late. */
  private applied = new Set<string>();
  refused = 0;

  constructor(
    readonly className: string,
    readonly learners: string[],
    /** Every exercise of the workbook, in its order: the grid shows those with at least one event. */
    private readonly catalogue: { id: string; title: string }[],
    readonly thresholds: Thresholds = DEFAULT_THRESHOLDS,
  ) {}

  /** Adds one verdict; returns the learner's cell for that exercise as it is now. */
  apply(e: CheckEvent, now = Date.now()): Cell {
    const key = `${e.learner} ${e.exercise}`;
    const at = when(e.at, now);
    const cell = this.cells.get(key) ?? { learner: e.learner, exercise: e.exercise, attempts: 0, firstAt: at, lastAt: at, last: { verdict: e.verdict, summary: e.summary, durationMs: e.durationMs }, failsSincePass: 0 };
    cell.attempts++;
    cell.firstAt = Math.min(cell.firstAt, at);
    cell.lastAt = Math.max(cell.lastAt, at);
    cell.last = { verdict: e.verdict, summary: e.summary, durationMs: e.durationMs };
    if (e.verdict === 'passed') {
      cell.passedAt ??= at;
      cell.failsSincePass = 0;
      delete cell.failingSince;
    } else if (e.verdict === 'failed') {
      // skipped and broken are not the learner's mistakes: they do not count towards "stuck".
      cell.failsSincePass++;
      cell.failingSince ??= at;
    }
    this.cells.set(key, cell);
    return cell;
  }

  /** False for an event this learner's runner already sent (the same messageId): it counts once. */
  isNew(userId: string, messageId: unknown): boolean {
    if (typeof messageId !== 'string' || messageId === '') return true;
    const key = `${userId} ${messageId}`;
    if (this.applied.has(key)) return false;
    this.applied.add(key);
    return true;
  }

  snapshot(): Snapshot {
    const seen = new Set([...this.cells.values()].map((c) => c.exercise));
    return {
      className: this.className,
      learners: this.learners,
      exercises: this.catalogue.filter((e) => seen.has(e.id)),
      cells: [...this.cells.values()],
      thresholds: this.thresholds,
      refused: this.refused,
    };
  }

  title(exercise: string): string | undefined {
    return this.catalogue.find((e) => e.id === exercise)?.title;
  }
}

/** The same rule as the page's (public/dashboard.js): stuck means failing, for too long or too often. */
export function isStuck(cell: Cell, t: Thresholds, now = Date.now()): boolean {
  if (cell.last.verdict === 'passed' || cell.failsSincePass === 0) return false;
  return cell.failsSincePass >= t.fails || (cell.failingSince !== undefined && now - cell.failingSince >= t.minutes * 60_000);
}

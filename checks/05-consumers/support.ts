// Small helpers for chapter 5's checks (connection cuts and closes are in the runner's CheckContext).

/** Wall-clock time for a verdict, e.g. "12:00:01". */
export function clock(date = new Date()): string {
  return date.toISOString().slice(11, 19);
}

/** Waits `ms` (only where the broker itself needs time to pass, e.g. a TTL running out). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

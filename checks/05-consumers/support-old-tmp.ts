// Small helpers for chapter 5's checks.
import type { CheckContext } from '../../runner/check/context.js';

/** Wall-clock time for a verdict, e.g. "12:00:01". */
export function clock(date = new Date()): string {
  return date.toISOString().slice(11, 19);
}

/** Waits `ms` (only where the broker itself needs time to pass, e.g. a TTL running out). */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Closes the connection of `queue`'s consumer as an operator would ("Force Close" in the UI); fails the check when it cannot. */
export async function closeAsOperator(t: CheckContext<unknown>, queue: string): Promise<void> {
  if (!(await t.closeConnectionOfConsumer(queue, 'closed by the workbook checker, as an operator would'))) {
    t.fail({
      summary: `The checker could not close your connection: the management API did not list the consumer on "${queue}" and its connection within 8 s.`,
      why: 'The checker finds the connection to close through the management API, which lists consumers and connections only after a statistics tick.',
      fix: 'Run the check again; if it keeps failing, look at the broker with npm run doctor.',
    });
  }
}

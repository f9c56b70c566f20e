// The last lines the code under check printed (console.log, console.error) during its check,
// for the verdict. Bounded: a learner's loop that logs a million lines keeps only the last ones.
import type { Readable } from 'node:stream';

/** How many lines a verdict keeps. */
export const OUTPUT_LINES = 200;
/** Longer lines are cut (a logged Buffer or a big JSON document). */
const MAX_LINE = 500;

export class OutputTail {
  private readonly kept: string[] = [];
  private partial = '';

  /** Collects everything `streams` deliver from now on. */
  constructor(...streams: Readable[]) {
    for (const s of streams) s.on('data', (chunk: Buffer | string) => this.add(String(chunk)));
  }

  add(text: string): void {
    const parts = (this.partial + text).split(/\r?\n/);
    this.partial = parts.pop()!;
    for (const line of parts) this.keep(line);
    if (this.partial.length > MAX_LINE * 4) {
      this.keep(this.partial);
      this.partial = '';
    }
  }

  /** The lines so far, the last unfinished one included. */
  lines(): string[] {
    return (this.partial ? [...this.kept, cut(this.partial)] : this.kept).slice(-OUTPUT_LINES);
  }

  private keep(line: string): void {
    this.kept.push(cut(line));
    // Trimmed in batches: shifting one line off 200 for every line printed costs a loop that logs.
    if (this.kept.length > 2 * OUTPUT_LINES) this.kept.splice(0, this.kept.length - OUTPUT_LINES);
  }
}

function cut(line: string): string {
  return line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}… (${line.length - MAX_LINE} more characters)` : line;
}

// An exercise's contract: the numbered lines at the top of its starter, e.g.
//   //   3. wait until the broker confirms it, and reject if the broker refuses it (a nack),
// Lettered sub-lines under a number ("//      a. first stops new deliveries") are lines of their
// own, "2a". A check names the lines each of its steps provokes and observes
// (t.provoke / t.observe), and the self-check fails when a line has no such step.

export interface ContractLine {
  /** "3", or "2a" for a lettered sub-line. */
  id: string;
  /** The line's text, with its continuation lines, without the comment markers. */
  text: string;
}

/** What a check run touched: the contract lines it provoked and the ones it observed. */
export interface ContractCoverage {
  provoked: string[];
  observed: string[];
}

const NUMBERED = /^\/\/\s+(\d+)\.\s+(.*)$/;
const LETTERED = /^\/\/\s+([a-z])\.\s+(.*)$/;
const CONTINUATION = /^\/\/\s{4,}(\S.*)$/;

/** The contract lines in the leading comment block of a starter (or solution). */
export function parseContract(source: string): ContractLine[] {
  const lines: ContractLine[] = [];
  let number: string | undefined;
  for (const raw of source.split('\n')) {
    const line = raw.trimEnd();
    if (!line.startsWith('//')) break; // the header ends at the first line of code
    const numbered = NUMBERED.exec(line);
    const lettered = number !== undefined ? LETTERED.exec(line) : null;
    if (numbered) {
      number = numbered[1]!;
      lines.push({ id: number, text: numbered[2]! });
    } else if (lettered) {
      lines.push({ id: `${number}${lettered[1]}`, text: lettered[2]! });
    } else {
      const more = CONTINUATION.exec(line);
      const last = lines.at(-1);
      if (more && last) last.text += ` ${more[1]}`;
      else if (lines.length) number = undefined; // a line at the margin ends the numbered list
    }
  }
  return lines;
}

/** A line id as a check names it: 3 or '2a'. */
export type ContractRef = number | string;

export function refIds(refs: ContractRef | ContractRef[]): string[] {
  return (Array.isArray(refs) ? refs : [refs]).map(String);
}

/**
 * The contract lines a check left without a step that provokes them, or without one that
 * observes them. A line with sub-lines ("2" over "2a", "2b") is judged through its sub-lines,
 * each named on its own.
 */
export function uncovered(contract: ContractLine[], coverage: ContractCoverage): { line: ContractLine; missing: ('provoked' | 'observed')[] }[] {
  const out: { line: ContractLine; missing: ('provoked' | 'observed')[] }[] = [];
  for (const line of contract) {
    const subs = contract.filter((l) => l.id !== line.id && l.id.startsWith(line.id) && /^[a-z]$/.test(l.id.slice(line.id.length)));
    if (subs.length) continue; // judged through its sub-lines
    const missing = (['provoked', 'observed'] as const).filter((k) => !coverage[k].includes(line.id));
    if (missing.length) out.push({ line, missing });
  }
  return out;
}

// Prints verdicts for people: what was expected, what was seen, why it matters, what
// to change, where to look in the management UI, and what the checker did.
// On a terminal, each line is wrapped to its width with a hanging indent (wrap-ansi: it
// measures without the colour codes and never splits a word or a URL); in a pipe or a
// file, lines stay whole.
import pc from 'picocolors';
import wrapAnsi from 'wrap-ansi';
import type { Verdict } from './verdict.js';

const ICON: Record<Verdict['status'], string> = {
  passed: pc.green('✓'),
  failed: pc.red('✗'),
  skipped: pc.yellow('–'),
  error: pc.magenta('!'),
};

/** How many of the last lines the code under check printed a failed verdict shows (--verbose: all it kept). */
export const OUTPUT_SHOWN = 8;

export interface FormatOptions {
  /** List what the checker did (default: for a failed verdict). */
  steps?: boolean;
  /** Everything the code under check printed, for every verdict (default: its last lines, under a failed or broken one). */
  verbose?: boolean;
  /** Wrap to this many columns (default: the terminal's width; no wrapping when stdout is not a terminal). */
  width?: number;
  /** In watch mode: name the keys instead of the commands they stand for ("press h" for `npm run hint`). */
  watch?: boolean;
}

/** One line of a verdict: its indentation, and its text (which may hold colours). */
type Line = [indent: number, text: string];

export function formatVerdict(v: Verdict, opts: FormatOptions = {}): string {
  const who = v.target === 'wrong' ? `known-wrong "${v.variant}"` : v.target === 'ok' ? `alternative solution "${v.variant}"` : v.target;
  const lines: Line[] = [[0, `${ICON[v.status]} ${pc.bold(v.id)} ${v.title} ${pc.dim(`(${who}: ${v.targetPath}, ${(v.durationMs / 1000).toFixed(2)} s)`)}`]];
  const say = (text: string) => (opts.watch ? inWatchMode(text) : text);
  const f = v.finding;
  if (f) {
    lines.push([2, v.status === 'failed' ? pc.red(f.summary) : f.summary]);
    if (f.expected !== undefined) lines.push([4, `${pc.dim('expected:')} ${f.expected}`]);
    if (f.saw !== undefined) lines.push([4, `${pc.dim('saw:     ')} ${f.saw}`]);
    if (f.at) lines.push([2, `${pc.bold('At:')} ${f.at}`]);
    if (f.why) lines.push([2, `${pc.bold('Why:')} ${f.why}`]);
    if (f.fix) lines.push([2, `${pc.bold('Fix:')} ${say(f.fix)}`]);
    if (f.link) lines.push([2, `${pc.bold('Look:')} ${pc.cyan(f.link)}`]);
    if (f.report) lines.push([2, `${pc.bold('Report:')} ${f.report}`]);
  }
  lines.push(...formatOutput(v, opts.verbose ?? false));
  for (const n of v.notes) lines.push([2, `${pc.yellow('note:')} ${n}`]);
  if ((opts.steps ?? v.status === 'failed') && v.steps.length) {
    lines.push([2, pc.dim('What the checker did:')]);
    for (const s of v.steps) lines.push([4, pc.dim(s)]);
  }
  const width = opts.width ?? (process.stdout.isTTY ? process.stdout.columns : undefined);
  return lines.map(([indent, text]) => indented(indent, text, width)).join('\n');
}

/**
 * `text` at `indent`, wrapped to `width` when given: continuation lines two columns deeper,
 * so a wrapped "Why:" still reads as one paragraph under its label.
 */
export function indented(indent: number, text: string, width?: number): string {
  const pad = ' '.repeat(indent);
  if (!width || indent + text.length <= width) return pad + text;
  // Narrow terminals still get at least 30 columns of text per line.
  const [first, ...rest] = wrapAnsi(text, Math.max(30, width - indent - 2), { hard: false, trim: true }).split('\n');
  return [pad + first, ...rest.map((line) => `${pad}  ${line}`)].join('\n');
}

/** "npm run hint" (with or without an id) → the h key: watch mode has a key for it. */
function inWatchMode(text: string): string {
  return text.replace(/`?npm run hint(?: \d+\.\d+)?`? gives a hint/g, 'Press h for a hint').replace(/`?npm run hint(?: \d+\.\d+)?`?/g, 'the h key');
}

/** What the code under check printed: the last lines under a failed (or broken) verdict; all of it with --verbose. */
function formatOutput(v: Verdict, verbose: boolean): Line[] {
  const output = v.output ?? [];
  if (output.length === 0 || !(verbose || v.status === 'failed' || v.status === 'error')) return [];
  const shown = verbose ? output : output.slice(-OUTPUT_SHOWN);
  const title =
    shown.length < output.length
      ? `Your code printed (the last ${shown.length} of ${output.length} lines; --verbose shows them all):`
      : `Your code printed:`;
  return [[2, pc.dim(title)], ...shown.map((line): Line => [4, `${pc.dim('│')} ${line}`])];
}

export function summarize(verdicts: Verdict[]): string {
  const count = (s: Verdict['status']) => verdicts.filter((v) => v.status === s).length;
  const parts = [`${count('passed')} passed`, `${count('failed')} failed`];
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  if (count('error')) parts.push(`${count('error')} broken`);
  return parts.join(', ');
}

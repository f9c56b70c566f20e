// Prints verdicts for people: what was expected, what was seen, why it matters, what
// to change, where to look in the management UI, and what the checker did.
import pc from 'picocolors';
import type { Verdict } from './verdict.js';

const ICON: Record<Verdict['status'], string> = {
  passed: pc.green('✓'),
  failed: pc.red('✗'),
  skipped: pc.yellow('–'),
  error: pc.magenta('!'),
};

/** How many of the last lines the code under check printed a failed verdict shows (--verbose: all it kept). */
export const OUTPUT_SHOWN = 8;

/**
 * `steps`: list what the checker did (default: for a failed verdict). `verbose`: everything the
 * code under check printed, for every verdict (default: its last lines, under a failed or broken one).
 */
export function formatVerdict(v: Verdict, opts: { steps?: boolean; verbose?: boolean } = {}): string {
  const who = v.target === 'wrong' ? `known-wrong "${v.variant}"` : v.target === 'ok' ? `alternative solution "${v.variant}"` : v.target;
  const head = `${ICON[v.status]} ${pc.bold(v.id)} ${v.title} ${pc.dim(`(${who}: ${v.targetPath}, ${(v.durationMs / 1000).toFixed(2)} s)`)}`;
  const lines = [head];
  const f = v.finding;
  if (f) {
    lines.push(`  ${v.status === 'failed' ? pc.red(f.summary) : f.summary}`);
    if (f.expected !== undefined) lines.push(`    ${pc.dim('expected:')} ${f.expected}`);
    if (f.saw !== undefined) lines.push(`    ${pc.dim('saw:     ')} ${f.saw}`);
    if (f.at) lines.push(`  ${pc.bold('At:')} ${f.at}`);
    if (f.why) lines.push(`  ${pc.bold('Why:')} ${f.why}`);
    if (f.fix) lines.push(`  ${pc.bold('Fix:')} ${f.fix}`);
    if (f.link) lines.push(`  ${pc.bold('Look:')} ${pc.cyan(f.link)}`);
    if (f.report) lines.push(`  ${pc.bold('Report:')} ${f.report}`);
  }
  lines.push(...formatOutput(v, opts.verbose ?? false));
  for (const n of v.notes) lines.push(`  ${pc.yellow('note:')} ${n}`);
  if ((opts.steps ?? v.status === 'failed') && v.steps.length) {
    lines.push(pc.dim('  What the checker did:'));
    for (const s of v.steps) lines.push(pc.dim(`    ${s}`));
  }
  return lines.join('\n');
}

/** What the code under check printed: the last lines under a failed (or broken) verdict; all of it with --verbose. */
function formatOutput(v: Verdict, verbose: boolean): string[] {
  const output = v.output ?? [];
  if (output.length === 0 || !(verbose || v.status === 'failed' || v.status === 'error')) return [];
  const shown = verbose ? output : output.slice(-OUTPUT_SHOWN);
  const title =
    shown.length < output.length
      ? `Your code printed (the last ${shown.length} of ${output.length} lines; --verbose shows them all):`
      : `Your code printed:`;
  return [pc.dim(`  ${title}`), ...shown.map((line) => `    ${pc.dim('│')} ${line}`)];
}

export function summarize(verdicts: Verdict[]): string {
  const count = (s: Verdict['status']) => verdicts.filter((v) => v.status === s).length;
  const parts = [`${count('passed')} passed`, `${count('failed')} failed`];
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  if (count('error')) parts.push(`${count('error')} broken`);
  return parts.join(', ');
}

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

export function formatVerdict(v: Verdict, opts: { steps?: boolean } = {}): string {
  const who = v.target === 'wrong' ? `known-wrong "${v.variant}"` : v.target;
  const head = `${ICON[v.status]} ${pc.bold(v.id)} ${v.title} ${pc.dim(`(${who}: ${v.targetPath}, ${(v.durationMs / 1000).toFixed(2)} s)`)}`;
  const lines = [head];
  const f = v.finding;
  if (f) {
    lines.push(`  ${v.status === 'failed' ? pc.red(f.summary) : f.summary}`);
    if (f.expected !== undefined) lines.push(`    ${pc.dim('expected:')} ${f.expected}`);
    if (f.saw !== undefined) lines.push(`    ${pc.dim('saw:     ')} ${f.saw}`);
    if (f.why) lines.push(`  ${pc.bold('Why:')} ${f.why}`);
    if (f.fix) lines.push(`  ${pc.bold('Fix:')} ${f.fix}`);
    if (f.link) lines.push(`  ${pc.bold('Look:')} ${pc.cyan(f.link)}`);
  }
  for (const n of v.notes) lines.push(`  ${pc.yellow('note:')} ${n}`);
  if ((opts.steps ?? v.status === 'failed') && v.steps.length) {
    lines.push(pc.dim('  What the checker did:'));
    for (const s of v.steps) lines.push(pc.dim(`    ${s}`));
  }
  return lines.join('\n');
}

export function summarize(verdicts: Verdict[]): string {
  const count = (s: Verdict['status']) => verdicts.filter((v) => v.status === s).length;
  const parts = [`${count('passed')} passed`, `${count('failed')} failed`];
  if (count('skipped')) parts.push(`${count('skipped')} skipped`);
  if (count('error')) parts.push(`${count('error')} broken`);
  return parts.join(', ');
}

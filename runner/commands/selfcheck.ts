// npm run selfcheck [ID…]: the workbook's own check (for authors and instructors).
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveIds } from '../ids.js';
import { runSelfCheck, staticProblems } from '../selfcheck.js';
import { formatVerdict } from '../check/report.js';
import { EXIT } from '../exit-codes.js';
import { formatTimings, timingReport } from '../check/timings.js';

export async function selfcheckCommand(ids: string[], opts: { verbose?: boolean; timings?: boolean; concurrency?: string }): Promise<number> {
  const wb = workbook();
  const exercises = ids.length ? resolveIds(wb, ids) : wb.exercises;
  const problems = staticProblems(wb, exercises);
  const b = await broker();
  const started = Date.now();
  const cpuBefore = process.cpuUsage();
  const result = await runSelfCheck(wb, b, exercises, {
    concurrency: opts.concurrency ? Number(opts.concurrency) : undefined,
    onVerdict: (v) => {
      const expectedFail = v.target === 'exercise' || v.target === 'wrong';
      const ok = v.status === 'skipped' || (expectedFail ? v.status === 'failed' : v.status === 'passed');
      if (opts.verbose || !ok) console.log(formatVerdict(v, { steps: !ok }) + '\n');
      else console.log(pc.dim(`${pc.green('✓')} ${v.id} ${v.target}${v.variant ? ` ${v.variant}` : ''} ${v.status} as expected (${(v.durationMs / 1000).toFixed(2)} s)`));
      if (opts.timings && v.timings) console.log(pc.dim(`    ${formatTimings(v.timings)}`));
    },
  });
  if (opts.timings) {
    const cpu = process.cpuUsage(cpuBefore);
    const ms = (cpu.user + cpu.system) / 1000;
    console.log(`\n${timingReport(result.verdicts).join('\n')}`);
    console.log(`\nCPU of the runner and its check workers: ${(ms / 1000).toFixed(1)} s, ${(ms / Math.max(1, result.verdicts.length)).toFixed(0)} ms per check (the broker's own is not counted).`);
  }
  const all = [...problems, ...result.problems];
  const seconds = (Date.now() - started) / 1000;
  console.log(`\n${result.verdicts.length} checks in ${seconds.toFixed(1)} s (${((seconds / exercises.length) || 0).toFixed(2)} s per exercise) on RabbitMQ ${b.version}`);
  for (const p of all) console.log(`${pc.red('✗')} ${p.id}: ${p.problem}`);
  console.log(all.length ? pc.red(`${all.length} problem(s).`) : pc.green('The workbook checks out.'));
  return all.length ? EXIT.FAILED : EXIT.OK;
}

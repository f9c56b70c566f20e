// npm run mutation [ID…]: mutation testing of the checks (for authors). Prints, per exercise,
// the mutants of its solution that its check killed, let survive, or that are equivalent,
// then every survivor with its place and change. `-- --record` writes MUTATION.md.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveIds } from '../ids.js';
import { mutationTest, type ExerciseScore } from '../mutation/mutation.js';
import { EXIT } from '../exit-codes.js';
import { ROOT } from '../paths.js';
import { terminalTable } from '../table.js';

/** Per exercise: every non-equivalent mutant killed is the target; below 90% fails outright. */
const TARGET = 100;
const FLOOR = 90;

export async function mutationCommand(ids: string[], opts: { concurrency?: string; record?: boolean }): Promise<number> {
  const wb = workbook();
  const exercises = ids.length ? resolveIds(wb, ids) : wb.exercises;
  const b = await broker();
  const started = Date.now();
  const scores = await mutationTest(exercises, b, {
    concurrency: Number(opts.concurrency ?? 6),
    onProgress: (line) => console.log(pc.dim(line)),
  });
  const minutes = (Date.now() - started) / 60_000;
  const rows = scores.map((s) => [s.id, s.killed, s.survived, s.equivalent, s.errors, `${s.score.toFixed(1)}%`]);
  const t = terminalTable({ head: ['exercise', 'killed', 'survived', 'equivalent', 'errors', 'score'] });
  t.push(...rows);
  console.log(t.toString());
  for (const s of scores) {
    for (const m of s.mutants.filter((x) => x.status === 'survived' || x.status === 'error')) {
      console.log(`${m.status === 'survived' ? pc.red('survived') : pc.magenta('error')} ${s.id} ${m.where} ${m.mutator}: ${JSON.stringify(m.code)} → ${JSON.stringify(m.becomes)}${m.detail ? pc.dim(` (${m.detail})`) : ''}`);
    }
  }
  const total = scores.reduce((n, s) => n + s.killed + s.survived + s.equivalent + s.errors, 0);
  console.log(`\n${total} mutants of ${scores.length} solutions in ${minutes.toFixed(1)} min on RabbitMQ ${b.version}`);
  if (opts.record) {
    const file = path.join(ROOT, 'MUTATION.md');
    // A run of some exercises updates their rows and keeps the others' rows from earlier runs.
    const earlier = ids.length && existsSync(file) ? recordedRows(readFileSync(file, 'utf8')) : new Map<string, string>();
    const order = wb.exercises.map((e) => e.id);
    writeFileSync(file, record(scores, earlier, order, b.version, minutes));
    console.log('Wrote MUTATION.md');
  }
  const below = scores.filter((s) => s.score < TARGET || s.errors > 0);
  if (below.length) console.log(pc.red(`Below ${TARGET}% or with errors: ${below.map((s) => s.id).join(', ')}`));
  return scores.some((s) => s.score < FLOOR || s.errors > 0) ? EXIT.FAILED : EXIT.OK;
}

/** The table rows of an earlier MUTATION.md, by exercise id. */
function recordedRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of text.split('\n')) {
    const id = /^\| (\d+\.\d+) \|/.exec(line)?.[1];
    if (id) rows.set(id, line);
  }
  return rows;
}

function record(scores: ExerciseScore[], earlier: Map<string, string>, order: string[], version: string, minutes: number): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const rows = new Map(earlier);
  for (const s of scores) rows.set(s.id, `| ${s.id} | ${s.killed} | ${s.survived} | ${s.equivalent} | ${s.errors} | ${s.score.toFixed(1)}% |`);
  const ids = order.filter((id) => rows.has(id));
  const kept = ids.filter((id) => !scores.some((s) => s.id === id));
  const cells = ids.map((id) => rows.get(id)!.split('|').slice(2, 6).map((c) => Number(c.trim())));
  const sum = (k: number) => cells.reduce((n, c) => n + (c[k] ?? 0), 0);
  const [killed, survived, equivalent, errors] = [0, 1, 2, 3].map(sum);
  const lines = [
    '# Mutation testing of the checks',
    '',
    `\`npm run mutation -- --record\` on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} cores (${cpu}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, RabbitMQ ${version}; ${scores.length} exercise${scores.length === 1 ? '' : 's'} in ${minutes.toFixed(1)} min.`,
    ...(kept.length ? ['', `The rows of ${kept.join(', ')} are from an earlier run, kept as they were.`] : []),
    '',
    'StrykerJS mutates each exercise\'s reference solution; the exercise\'s check runs against every mutant on the live broker.',
    'Killed: the check failed the mutant (a time-out counts). Equivalent: listed, with the reason, in `checks/equivalent-mutants.yaml`.',
    'Score: killed / (killed + survived). Target: 100% per exercise, and never below 90%.',
    '',
    '| exercise | killed | survived | equivalent | errors | score |',
    '|---|---|---|---|---|---|',
    ...ids.map((id) => rows.get(id)!),
    `| all | ${killed} | ${survived} | ${equivalent} | ${errors} | ${((100 * killed) / Math.max(1, killed + survived)).toFixed(1)}% |`,
    '',
  ];
  return lines.join('\n');
}

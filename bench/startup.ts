// Start-up time of the commands a learner types, as ratios to a bare `node -e 0` measured in
// the same run. The machine may be busy (other processes, a broker), so every round runs each
// command once, in turn, and the figures are medians over many rounds: a slow moment slows
// every command of its round, not one of them.
//   a command that does not touch the broker (progress, hint, solution)   target: median ≤ 0.15 s
//   a one-exercise check (check 2.1 --solutions)                           target: median ≤ 0.5 s
// `npx tsx bench/startup.ts [--rounds N]` runs only this part, against the broker the
// workbook finds (it only checks 2.1's solution there); `npm run bench` runs it on its own broker.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from '../runner/paths.js';

export interface Timed {
  /** What was run, as a learner would type it (after `node runner/start.mjs`). */
  what: string;
  /** Wall times in ms, one per round. */
  ms: number[];
}

export interface StartupResult {
  bare: Timed;
  commands: (Timed & { target: number; ratio: number; ok: boolean })[];
  /** One row per figure, for BENCHMARKS.md's table. */
  rows: { what: string; measured: string; target: string; ok: boolean }[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

/** Wall time of one process, in ms. A check that fails (exit 1) would still be timed; anything else is an error. */
function timeProcess(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: ROOT, env }, (err, stdout, stderr) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (err && err.code !== 1) reject(new Error(`node ${args.join(' ')} failed (${err.code}): ${stdout}${stderr}`));
      else resolve(ms);
    });
  });
}

/**
 * Times bare node and the workbook's commands, interleaved, `rounds` times. `brokerEnv` points
 * `check` at a broker (RABBITMQ_URL, RABBITMQ_MANAGEMENT_URL).
 */
export async function benchStartup(brokerEnv: Record<string, string>, rounds = 21): Promise<StartupResult> {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'wb-startup-'));
  // A state dir of its own: `hint` records hints shown, `check` records nothing for solutions.
  // WORKBOOK_BROKER would make the commands look for a broker of their own instead of brokerEnv's.
  const { WORKBOOK_BROKER: _forced, ...inherited } = process.env;
  const env = { ...inherited, ...brokerEnv, WORKBOOK_STATE_DIR: stateDir };
  const commands = [
    { what: 'progress', args: ['progress'], target: 150 },
    { what: 'hint 2.1', args: ['hint', '2.1'], target: 150 },
    { what: 'solution 2.1 --force', args: ['solution', '2.1', '--force'], target: 150 },
    { what: 'check 2.1 --solutions', args: ['check', '2.1', '--solutions'], target: 500 },
  ];
  const bare: Timed = { what: 'node -e 0', ms: [] };
  const timed = commands.map((c) => ({ ...c, ms: [] as number[] }));
  try {
    // One untimed round first: it compiles what changed and fills the manifest cache, as the first command of a session does.
    for (const c of commands) await timeProcess(['runner/start.mjs', ...c.args], env);
    for (let round = 0; round < rounds; round++) {
      bare.ms.push(await timeProcess(['-e', '0'], env));
      for (const c of timed) c.ms.push(await timeProcess(['runner/start.mjs', ...c.args], env));
    }
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
  const bareMedian = median(bare.ms);
  const results = timed.map((c) => {
    const m = median(c.ms);
    return { what: c.what, ms: c.ms, target: c.target, ratio: m / bareMedian, ok: m <= c.target };
  });
  const range = (xs: number[]) => `min ${s(Math.min(...xs))}, max ${s(Math.max(...xs))}`;
  const rows = [
    { what: `bare \`node -e 0\`, the yardstick (${rounds} runs, each round interleaved with the commands below)`, measured: `median ${s(bareMedian)} (${range(bare.ms)})`, target: '', ok: true },
    ...results.map((r) => ({
      what: `\`node runner/start.mjs ${r.what}\` (${rounds} runs)`,
      measured:
        `median ${s(median(r.ms))} = **${r.ratio.toFixed(1)}×** bare node (${range(r.ms)}: ` +
        `${(Math.min(...r.ms) / bareMedian).toFixed(1)}× to ${(Math.max(...r.ms) / bareMedian).toFixed(1)}×)`,
      target: `median ≤ ${s(r.target)}`,
      ok: r.ok,
    })),
  ];
  return { bare, commands: results, rows };
}

// Run on its own: only this part, against the broker the workbook finds.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { findBroker } = await import('../runner/broker/find.js');
  const broker = await findBroker();
  const at = process.argv.indexOf('--rounds');
  const rounds = at > 0 ? Number(process.argv[at + 1]) : 21;
  const result = await benchStartup({ RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl }, rounds);
  const table = result.rows.map((r) => `| ${r.what} | ${r.measured} | ${r.target} | ${r.target ? (r.ok ? 'met' : '**missed**') : ''} |`);
  console.log(['| what | measured | target | |', '|---|---|---|---|', ...table].join('\n'));
}

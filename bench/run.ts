// npm run bench: measures the workbook's performance targets on this machine and writes
// BENCHMARKS.md. Figures, not assertions: tests never time anything.
//   1. start-up: progress, hint, solution              target: median ≤ 0.15 s, as a ratio to bare node (bench/startup.ts)
//      one exercise check through the CLI              target: median ≤ 0.5 s, as a ratio to bare node
//   2. watch mode, save → verdict                      target: median ≤ 0.5 s
//   3. private broker cold start                       target: ≤ 1.2 × bare rabbitmq-server boot
//   4. self-check of the single-node exercises         target: ≤ 1 s per exercise, amortised, on 2 cores
//      self-check of the cluster exercises (chapter 8)  a row of its own, no target: node kills are slow by nature
// It starts brokers of its own (private nodes in temp dirs) so it may restart them.
// `npm run bench -- --no-capstone` leaves out the capstone bridge's figures (bench/capstone.ts),
// `-- --no-http` chapter 9's POST /jobs designs (bench/http-jobs.ts).
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, STATE_DIR } from '../runner/paths.js';
import { loadManifest } from '../runner/manifest/load.js';
import { jobFor, keepWorkerWarm, runCheck } from '../runner/check/run.js';
import { runSelfCheck } from '../runner/selfcheck.js';
import { PHASES, PHASE_TEXT, sumTimings } from '../runner/check/timings.js';
import type { Verdict } from '../runner/check/verdict.js';
import { benchStartup } from './startup.js';
import { machineDescription } from '../runner/lab/benchmarks-file.js';
import { restartBroker } from '../runner/broker/restart.js';
import { watchExercise } from '../runner/commands/watch.js';
import { ManagementClient } from '../runner/broker/management.js';
import { freePort } from '../runner/broker/ports.js';
import { locateServer, privateBrokerInfo, type NodeState } from '../runner/broker/private-node.js';
import type { BrokerInfo } from '../runner/broker/types.js';

const execFileP = promisify(execFile);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

interface Row {
  what: string;
  measured: string;
  target: string;
  ok: boolean;
}

/** Runs a runner command; returns its wall time. A check that fails (exit 1) is fine, anything else is not. */
async function cli(args: string[], env: Record<string, string>) {
  const started = Date.now();
  await execFileP(process.execPath, ['runner/start.mjs', ...args], { cwd: ROOT, env: { ...process.env, ...env } }).catch((e: { code?: number; stderr?: string; stdout?: string }) => {
    if (e.code !== 1) throw new Error(`runner ${args.join(' ')} failed (${e.code}): ${e.stdout}${e.stderr}`);
  });
  return Date.now() - started;
}

/** State dirs of the nodes this bench started and has not stopped yet. */
const running = new Set<string>();

/** A private node of the bench's own, through the runner's CLI (also measures its cold start). */
async function startOwnBroker(stateDir: string): Promise<{ broker: BrokerInfo; ms: number }> {
  const env = { WORKBOOK_STATE_DIR: stateDir, WORKBOOK_BROKER: 'private' };
  running.add(stateDir);
  const ms = await cli(['broker', 'start'], env);
  // The node's state file says where it listens (this process's paths point elsewhere).
  const state = JSON.parse(readFileSync(path.join(stateDir, 'broker', 'node.json'), 'utf8')) as NodeState;
  const version = (await new ManagementClient(`http://localhost:${state.managementPort}`, 'guest', 'guest').overview())!.rabbitmq_version;
  // Its restart handle must use that node's cookie and directories, not this process's.
  return { broker: privateBrokerInfo(state, version, path.join(stateDir, 'broker')), ms };
}

async function stopOwnBroker(stateDir: string) {
  await cli(['broker', 'stop'], { WORKBOOK_STATE_DIR: stateDir, WORKBOOK_BROKER: 'private' });
  running.delete(stateDir);
}

/** rabbitmq-server started by hand with the same settings, timed to the same readiness signal. */
async function bareBoot(): Promise<number> {
  const server = locateServer();
  if (!server) throw new Error('rabbitmq-server is not installed');
  const dir = mkdtempSync(path.join(tmpdir(), 'wb-bare-'));
  mkdirSync(path.join(dir, 'home'));
  writeFileSync(path.join(dir, 'home', '.erlang.cookie'), 'BENCHCOOKIEBENCHCOOKIE', { mode: 0o600 });
  const [amqp, mgmt, dist] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(path.join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
  writeFileSync(path.join(dir, 'rabbitmq.conf'), `listeners.tcp.default = ${amqp}\nmanagement.tcp.port = ${mgmt}\n`);
  const node = `bare-${path.basename(dir)}@localhost`;
  const env = {
    ...process.env,
    HOME: path.join(dir, 'home'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
  };
  const started = Date.now();
  const child = spawn(server, [], { env, stdio: 'ignore', detached: true });
  child.unref();
  const client = new ManagementClient(`http://localhost:${mgmt}`, 'guest', 'guest');
  while (!(await client.overview().catch(() => undefined))) {
    if (Date.now() - started > 60_000) {
      process.kill(-child.pid!, 'SIGKILL'); // detached: its own process group
      throw new Error(`the bare rabbitmq-server did not answer within 60 s (log: ${path.join(dir, 'log')})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ms = Date.now() - started;
  await execFileP(path.join(path.dirname(server), 'rabbitmqctl'), ['-n', node, 'stop'], { env }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

/**
 * CPU time (ms) the broker's Erlang VM has used so far, from /proc (Linux); undefined elsewhere.
 * The bench's own node serves nothing else, so a difference is the self-check's.
 */
function brokerCpuMs(stateDir: string): number | undefined {
  try {
    const pid = readFileSync(path.join(stateDir, 'broker', 'node.pid'), 'utf8').trim();
    // After the command in parentheses: state is field 3, utime and stime fields 14 and 15, in clock ticks (100 per second).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Where the self-check's time went: each phase's share of the summed check time (runner/check/timings.ts). */
function phaseNotes(verdicts: Verdict[]): string[] {
  const total = verdicts.reduce((n, v) => n + v.durationMs, 0) || 1;
  const sum = sumTimings(verdicts.map((v) => v.timings));
  const parts = PHASES.filter((p) => sum[p]).map((p) => `${PHASE_TEXT[p]} ${((100 * sum[p]!) / total).toFixed(0)} %`);
  return [`Where the self-check's time went, summed over its checks (they overlap; \`npm run selfcheck ID -- --timings\` shows it per check): ${parts.join(', ')}.`];
}

async function main() {
  const rows: Row[] = [];
  const notes: string[] = [];
  const workbook = loadManifest();
  const stateDir = mkdtempSync(path.join(tmpdir(), 'wb-bench-'));

  // 3. Cold start, first: nothing else running. Alternate bare and workbook, twice each.
  const bare: number[] = [];
  const ours: number[] = [];
  for (let i = 0; i < 2; i++) {
    bare.push(await bareBoot());
    const dir = mkdtempSync(path.join(tmpdir(), 'wb-cold-'));
    ours.push((await startOwnBroker(dir)).ms);
    await stopOwnBroker(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  const ratio = median(ours) / median(bare);
  rows.push({
    what: 'private broker cold start (`node runner/start.mjs broker start`, CLI start-up included)',
    measured: `${s(median(ours))} vs bare rabbitmq-server ${s(median(bare))} (${ratio.toFixed(2)}×)`,
    target: '≤ 1.2 × bare boot',
    ok: ratio <= 1.2,
  });

  const { broker } = await startOwnBroker(stateDir);
  const env = { RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl };
  const exercise = workbook.exercise('2.1')!;

  // 1. One check, warm broker: the in-process cost, and the whole command a learner types.
  const inProcess: number[] = [];
  for (let i = 0; i < 11; i++) {
    const started = Date.now();
    await runCheck(jobFor(exercise, 'solution'), broker);
    inProcess.push(Date.now() - started);
  }
  rows.push({
    what: 'one exercise check, warm broker, in-process (`runCheck`, 2.1: sandbox vhost, worker, check, clean-up)',
    measured: `median ${s(median(inProcess))}`,
    target: '',
    ok: true,
  });
  // Start-up: the commands a learner types, as ratios to a bare node measured in the same rounds (bench/startup.ts).
  // npm itself adds about 0.2 s to each.
  rows.push(...(await benchStartup(env)).rows);

  // 2. Watch mode: save → verdict, with the warm worker watch mode keeps.
  keepWorkerWarm();
  const benchDir = path.join(STATE_DIR, 'bench');
  mkdirSync(benchDir, { recursive: true });
  const file = path.join(benchDir, '01-send.ts');
  const solution = readFileSync(exercise.solutionPath, 'utf8');
  writeFileSync(file, solution);
  const job = { ...jobFor(exercise, 'solution'), targetPath: file };
  const saves: number[] = [];
  let savedAt = 0;
  let resolveVerdict: () => void = () => undefined;
  const watcher = watchExercise(file, () => {
    void runCheck(job, broker).then(() => {
      saves.push(Date.now() - savedAt);
      resolveVerdict();
    });
  });
  await new Promise<void>((r) => watcher.once('ready', () => r()));
  for (let i = 0; i < 9; i++) {
    await new Promise((r) => setTimeout(r, 300)); // let the next warm worker start, as between two saves
    const verdict = new Promise<void>((r) => (resolveVerdict = () => r()));
    savedAt = Date.now();
    writeFileSync(file, `${solution}\n// save ${i}\n`);
    await verdict;
  }
  await watcher.close();
  rows.push({ what: 'watch mode, save → verdict (exercise 2.1)', measured: `median ${s(median(saves))}`, target: 'median ≤ 0.5 s', ok: median(saves) <= 500 });

  // 4. The full self-check on the bench's own broker (restarts allowed), amortised per exercise.
  //    Checks that break the local three-node cluster (chapter 8: node kills, elections) are slow
  //    by nature and run one at a time after the others: they get a row of their own, outside
  //    the per-exercise figure of the single-node exercises.
  const single = workbook.exercises.filter((e) => !e.cluster);
  const clustered = workbook.exercises.filter((e) => e.cluster);
  const started = Date.now();
  const cpuBefore = process.cpuUsage();
  const brokerBefore = brokerCpuMs(stateDir);
  const result = await runSelfCheck(workbook, broker, single);
  const total = Date.now() - started;
  const selfcheckCpu = process.cpuUsage(cpuBefore);
  const brokerAfter = brokerCpuMs(stateDir);
  const perExercise = total / single.length;
  rows.push({
    what: `self-check of the single-node exercises (${result.verdicts.length} checks, ${single.length} exercises, \`npm run selfcheck\` without the cluster checks)`,
    measured: `${s(total)} in all, ${s(perExercise)} per exercise`,
    target: '≤ 1 s per exercise',
    ok: perExercise <= 1000,
  });
  for (const p of result.problems) notes.push(`The self-check reported a problem during the bench run: ${p.id}: ${p.problem}`);
  notes.push(...phaseNotes(result.verdicts));
  // CPU, unlike wall time, does not depend on what else the machine runs: per check, it says what the checks cost.
  const runnerMs = (selfcheckCpu.user + selfcheckCpu.system) / 1000;
  const brokerMs = brokerBefore !== undefined && brokerAfter !== undefined ? brokerAfter - brokerBefore : undefined;
  const perCheck = (ms: number) => `${(ms / result.verdicts.length).toFixed(0)} ms per check`;
  notes.push(
    `CPU used by that self-check: runner and check workers ${s(runnerMs)} (${perCheck(runnerMs)})` +
      (brokerMs !== undefined ? `, the broker ${s(brokerMs)} (${perCheck(brokerMs)})` : '') +
      ` (the capstone's Postgres not counted); on ${cpus().length} cores that is at least ${s((runnerMs + (brokerMs ?? 0)) / cpus().length)} of wall time.`,
  );
  const restarts = single.filter((e) => e.restartsBroker).length;
  if (restarts) {
    const restartStarted = Date.now();
    await restartBroker(broker);
    notes.push(`${restarts} exercise(s) restart the broker; their checks share one restart (${s(Date.now() - restartStarted)} measured just after), which is part of the total.`);
  }
  if (clustered.length) {
    const clusterStarted = Date.now();
    const clusterResult = await runSelfCheck(workbook, broker, clustered);
    const clusterTotal = Date.now() - clusterStarted;
    const skipped = clusterResult.verdicts.filter((v) => v.status === 'skipped').length;
    rows.push({
      what: `self-check of the exercises that need the local three-node cluster (chapter 8: ${clusterResult.verdicts.length} checks, ${clustered.length} exercises), one check at a time after the others; node kills and elections make them slow by nature, so they are outside the per-exercise figure above`,
      measured: `${s(clusterTotal)} in all, ${s(clusterTotal / clustered.length)} per exercise${skipped ? ` (${skipped} skipped: no local rabbitmq-server)` : ''}`,
      target: '',
      ok: true,
    });
    for (const p of clusterResult.problems) notes.push(`The cluster self-check reported a problem during the bench run: ${p.id}: ${p.problem}`);
  }

  // Optional parts written by other chapters.
  const extra: string[] = [];
  if (existsSync(path.join(ROOT, 'bench', 'capstone.ts')) && !process.argv.includes('--no-capstone')) {
    const capstone = path.join(ROOT, 'bench', 'capstone.ts');
    const { benchCapstone } = (await import(capstone)) as { benchCapstone: () => Promise<{ lines: string[] }> };
    extra.push(...(await benchCapstone()).lines);
  }
  if (existsSync(path.join(ROOT, 'bench', 'http-jobs.ts')) && !process.argv.includes('--no-http')) {
    const httpJobs = path.join(ROOT, 'bench', 'http-jobs.ts');
    const { benchHttpJobs } = (await import(httpJobs)) as { benchHttpJobs: (o: { broker: BrokerInfo }) => Promise<{ lines: string[] }> };
    extra.push('', ...(await benchHttpJobs({ broker })).lines);
  }

  await stopOwnBroker(stateDir);
  rmSync(stateDir, { recursive: true, force: true });

  const lines = [
    '# Benchmarks',
    '',
    `Measured by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 10)}.`,
    '',
    `Machine: ${machineDescription()}, RabbitMQ ${broker.version} (private node started by the bench).`,
    '',
    '| what | measured | target | |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.what} | ${r.measured} | ${r.target} | ${r.target ? (r.ok ? 'met' : '**missed**') : ''} |`),
    '',
    ...notes.map((n) => `- ${n}`),
    ...(extra.length ? ['', ...extra] : []),
    '',
  ];
  // Sections other commands record between <!-- BEGIN … --> and <!-- END … --> markers (the
  // failover lab of chapter 8) are not this bench's: they are kept as they are.
  const benchmarks = path.join(ROOT, 'BENCHMARKS.md');
  const kept = existsSync(benchmarks) ? (readFileSync(benchmarks, 'utf8').match(/<!-- BEGIN [^\n]*-->[\s\S]*?<!-- END [^\n]*-->/g) ?? []) : [];
  writeFileSync(benchmarks, [...lines, ...kept.flatMap((section) => [section, ''])].join('\n'));
  console.log(lines.join('\n'));
  process.exit(0);
}

// A bench that fails half-way must not leave its nodes running.
await main().catch(async (err) => {
  for (const dir of running) await stopOwnBroker(dir).catch(() => undefined);
  throw err;
});

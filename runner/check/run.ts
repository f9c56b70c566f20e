// Runs checks: one worker thread per check, in a sandbox vhost of its own, within the
// exercise's time bound. Checks that restart the broker share one restart, made once
// the other checks have finished.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Exercise, VariantKind } from '../manifest/load.js';
import { compareVersions, type BrokerInfo } from '../broker/types.js';
import { restartBroker } from '../broker/restart.js';
import { managementFor } from '../broker/management.js';
import { createSandbox, forget, type Sandbox } from '../sandbox/sandbox.js';
import { rel, ROOT } from '../paths.js';
import type { FromWorker, ToWorker, WorkerJob, WorkerResult } from './protocol.js';
import type { Finding, TargetKind, Verdict } from './verdict.js';
import { keptVhosts } from './kept.js';
import { OutputTail } from './output-tail.js';
import { mapCompiledPaths } from './source-map.js';
import { buildFile, CompileError, IS_COMPILED, syncBuild } from '../build.mjs';
import { lap, type Timings } from './timings.js';
import type { Flow } from './flow.js';
import { needsAdministrator, NEEDS_ADMIN } from '../classroom/admin-only.js';

// Workers run the compiled tree (runner/build.mjs), without tsx.
const WORKER_MAIN = path.join(ROOT, 'runner', 'check', 'worker-main.ts');
// Under runner/start.mjs the tree was brought up to date at start-up; in-process use (tests, bench) does it here once.
let built = IS_COMPILED;

/** The compiled worker entry, after bringing the whole tree up to date once per process. */
function workerMain(): string {
  if (!built) {
    syncBuild();
    built = true;
  }
  return buildFile(WORKER_MAIN);
}

/**
 * Compiles what the job needs; a variant's patch is applied to the current solution first.
 * A compile error in the code under check is returned as a failed verdict's finding; a
 * variant whose patch no longer applies, as an error (the workbook is broken, not the code).
 */
async function prepare(job: CheckJob): Promise<{ checkPath: string; targetPath: string } | { status: 'failed' | 'error'; error: Finding }> {
  workerMain();
  // Variants are patches (tests give plain files instead). Their module (and the diff library) is
  // loaded only for them: a learner's check does not wait for it.
  const patch = (job.target === 'wrong' || job.target === 'ok') && job.targetPath.endsWith('.patch');
  const variants = patch ? await import('../variants.js') : undefined;
  try {
    // The learner's siblings too (e.g. an .sql file the exercise reads).
    for (const file of job.target === 'exercise' ? job.exercise.starterFiles : []) buildFile(file);
    const checkPath = buildFile(job.exercise.checkPath);
    const targetPath = variants ? variants.materialise(job.exercise, { kind: job.target as VariantKind, name: job.variant!, path: job.targetPath }) : buildFile(job.targetPath);
    return { checkPath, targetPath };
  } catch (err) {
    if (variants && err instanceof variants.PatchError) return { status: 'error', error: { summary: err.message } };
    if (!(err instanceof CompileError)) throw err;
    return {
      status: 'failed',
      error: {
        summary: `${path.relative(ROOT, err.file)} does not compile: ${err.message}`,
        why: 'Before it can check anything, the checker loads your file. A syntax error stops it there.',
        fix: `Fix the line above (your editor shows it too), or run the file on its own: npx tsx ${rel(err.file)}`,
      },
    };
  }
}

export interface CheckJob {
  exercise: Exercise;
  target: TargetKind;
  variant?: string;
  targetPath: string;
  /** Extra environment for the worker (mutation testing: which mutant is active). */
  env?: Record<string, string>;
}

/**
 * Checks that restart the broker share one restart. Their requests are coalesced: when
 * every check of the group is waiting for a restart (or has finished), and `hold` says the
 * other checks are done, the broker restarts once and they all continue.
 */
export class RestartBarrier {
  private active = 0;
  private waiting: ((r: { ok: boolean; reason?: string }) => void)[] = [];
  private restarting = false;

  /** `hold`: the restart also waits for this (the checks that must not see it have finished). */
  constructor(private readonly broker: BrokerInfo, private readonly hold: Promise<void> = Promise.resolve()) {}

  join(): void {
    this.active++;
  }

  leave(): void {
    this.active--;
    void this.maybeRestart();
  }

  request(): Promise<{ ok: boolean; reason?: string }> {
    if (!this.broker.restart) {
      return Promise.resolve({ ok: false, reason: `the workbook did not start this broker (${this.broker.description}), so it does not restart it` });
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      void this.maybeRestart();
    });
  }

  private async maybeRestart(): Promise<void> {
    if (this.restarting || this.waiting.length === 0 || this.waiting.length < this.active) return;
    this.restarting = true;
    await this.hold;
    const batch = this.waiting.splice(0);
    const result = await restartBroker(this.broker).then(
      () => ({ ok: true }),
      (err: Error) => ({ ok: false, reason: err.message }),
    );
    this.restarting = false;
    for (const resolve of batch) resolve(result);
    void this.maybeRestart();
  }
}

/**
 * A worker started ahead of time has amqplib and the check vocabulary loaded and
 * waits for its job: watch mode keeps one ready so a save gets its verdict sooner.
 */
let spare: Worker | undefined;

/**
 * A worker inherits the parent's node flags. Under tsx (bench, capstone scripts) those load
 * tsx's module hooks into every worker: twice the CPU per check, for nothing, since workers
 * run the compiled tree. Keep every other flag (e.g. --cpu-prof).
 */
const LOADER_FLAGS = new Set(['--require', '-r', '--import', '--loader', '--experimental-loader']);
const WORKER_EXEC_ARGV = process.execArgv.filter((arg, i, all) => {
  const flag = arg.split('=')[0]!;
  return !LOADER_FLAGS.has(flag) && !LOADER_FLAGS.has(all[i - 1] ?? '');
});

function startWorker(job?: WorkerJob): Worker {
  const worker = new Worker(workerMain(), { workerData: job, stdout: true, stderr: true, execArgv: WORKER_EXEC_ARGV });
  // Printed output is not judged, nor shown on the terminal: runInWorker collects the learner's
  // part for the verdict, from the moment the worker has its job (a warm spare's earlier output is not theirs).
  worker.stdout.resume();
  worker.stderr.resume();
  return worker;
}

/** Whether a used spare is replaced by a new one (watch mode), or not (a single check). */
let keepWarm = false;

/** Keep one warm worker ready from now on (it does not keep the process alive). */
export function keepWorkerWarm(): void {
  keepWarm = true;
  startSpare();
}

/**
 * Starts one worker now, for the next check: it loads while the broker is found and the
 * sandbox is made, instead of after. `npm run check ID` does this at its start.
 */
export function startSpare(): void {
  spare ??= startWorker();
  spare.unref();
}

function workerFor(job: WorkerJob): Worker {
  if (!spare) return startWorker(job);
  const worker = spare;
  worker.ref();
  worker.postMessage({ type: 'job', job } satisfies ToWorker);
  spare = undefined;
  if (keepWarm) startSpare();
  return worker;
}

export interface RunOptions {
  /** Keep the sandbox of a failed check so the learner can look at it in the UI (learner runs only). */
  keepFailedSandbox?: boolean;
  onStep?: (job: CheckJob, step: string) => void;
  /** Shared by the broker-restarting checks of one run; a lone check gets its own. */
  barrier?: RestartBarrier;
  /** Return the message flow of the code under check with its verdict: when it fails, or always (flow.ts, trace.ts). */
  recordFlow?: 'failed' | 'always';
}

/** The jobs for an exercise: its starter-or-learner file, its solution, its known-wrong variants or its alternative solutions (their patches). */
export function jobFor(exercise: Exercise, target: TargetKind, variant?: string): CheckJob {
  if (target === 'wrong' || target === 'ok') {
    const v = exercise[target].find((x) => x.name === variant);
    if (!v) throw new Error(`exercise ${exercise.id} has no ${target === 'wrong' ? 'known-wrong variant' : 'alternative solution'} "${variant}"`);
    return { exercise, target, variant, targetPath: v.path };
  }
  return { exercise, target, targetPath: target === 'solution' ? exercise.solutionPath : exercise.starterPath };
}

export async function runCheck(job: CheckJob, broker: BrokerInfo, opts: RunOptions = {}): Promise<Verdict> {
  // A classroom account is no administrator: these checks are skipped, never failed (and
  // never join the restart barrier: it restarts nothing for them).
  const adminOnly = broker.classroom && needsAdministrator(job.exercise);
  if (adminOnly) {
    return {
      id: job.exercise.id,
      title: job.exercise.title,
      target: job.target,
      variant: job.variant,
      targetPath: rel(job.targetPath),
      status: 'skipped',
      finding: { summary: `Skipped: this check ${NEEDS_ADMIN}. It needs them because ${adminOnly}.` },
      steps: [],
      notes: [],
      durationMs: 0,
    };
  }
  // Joining before the first await: a group started in one tick is complete before anyone asks to restart.
  const barrier = opts.barrier ?? new RestartBarrier(broker);
  const restarts = job.exercise.restartsBroker;
  if (restarts) barrier.join();
  try {
    if (job.exercise.cluster) {
      // Chapter 8: the check runs against the local three-node cluster, and breaks it (cluster-run.ts).
      const { runOnCluster } = await import('./cluster-run.js');
      const base = { id: job.exercise.id, title: job.exercise.title, target: job.target, variant: job.variant, targetPath: rel(job.targetPath) };
      return await runOnCluster(base, (cluster) => checkInSandbox(job, cluster, opts, barrier));
    }
    return await checkInSandbox(job, broker, opts, barrier);
  } finally {
    if (restarts) barrier.leave();
  }
}

async function checkInSandbox(job: CheckJob, broker: BrokerInfo, opts: RunOptions, barrier: RestartBarrier): Promise<Verdict> {
  const started = Date.now();
  const { exercise } = job;
  const base = {
    id: exercise.id,
    title: exercise.title,
    target: job.target,
    variant: job.variant,
    targetPath: rel(job.targetPath),
  };
  if (compareVersions(broker.version, exercise.minBroker) < 0) {
    return {
      ...base,
      status: 'skipped',
      finding: {
        summary: `This exercise needs RabbitMQ ${exercise.minBroker} or newer; your broker is ${broker.version}.`,
        fix: 'Start a 4.x broker: docker compose up -d (then npm run broker -- status).',
      },
      steps: [],
      notes: [],
      durationMs: 0,
    };
  }

  let sandbox: Sandbox;
  const made = lap();
  try {
    sandbox = await createSandbox(broker, `${exercise.id}-${job.variant ?? job.target}`);
  } catch (err) {
    return { ...base, status: 'error', finding: { summary: `Could not create a sandbox vhost: ${(err as Error).message}` }, steps: [], notes: [], durationMs: Date.now() - started };
  }
  const timings: Timings = { sandbox: made() };

  const compiling = lap();
  const compiled = await prepare(job);
  timings.compile = compiling();
  const result: WorkerResult & { output?: string[] } =
    'error' in compiled
      ? { status: compiled.status, finding: compiled.error, steps: [], notes: [] }
      : await runInWorker(job, compiled, broker, sandbox.vhost, barrier, opts.onStep, opts.recordFlow);
  Object.assign(timings, result.timings);
  const { startedAt: _, ...outcome } = result;
  const verdict: Verdict = { ...base, ...outcome, timings, vhost: sandbox.vhost, durationMs: Date.now() - started };

  // A classroom's sandbox goes back to the learner's pool: keeping it would leave one fewer for the next checks.
  if (opts.keepFailedSandbox && job.target === 'exercise' && !broker.classroom) {
    // Kept only when there is something to look at: not after a file that did not compile, nor an empty vhost.
    const keep = verdict.status === 'failed' && !('error' in compiled) && (await holdsSomething(broker, sandbox.vhost));
    await keptVhosts.replace(exercise.id, keep ? sandbox.vhost : undefined, broker);
    if (keep) {
      forget(sandbox);
      verdict.notes.push(`What your code left in the broker is kept in vhost "${sandbox.vhost}" until the next check of ${exercise.id}: ${broker.managementUrl}/#/queues/${encodeURIComponent(sandbox.vhost)}`);
      return verdict;
    }
  }
  const disposing = lap();
  // A cluster check's sandbox is deleted once the cluster is whole again (cluster-run.ts): with a node down, deleting its quorum queues waits for that node.
  if (exercise.cluster) forget(sandbox);
  else await sandbox.dispose().catch(() => undefined);
  timings.dispose = disposing();
  verdict.durationMs = Date.now() - started;
  return verdict;
}

/** True when the vhost holds a queue or an exchange of its own (the amq.* ones and the default exchange come with every vhost). */
async function holdsSomething(broker: BrokerInfo, vhost: string): Promise<boolean> {
  const mgmt = managementFor(broker);
  try {
    const [queues, exchanges] = await Promise.all([mgmt.queues(vhost), mgmt.exchanges(vhost)]);
    return queues.length > 0 || exchanges.some((x) => x.name !== '' && !x.name.startsWith('amq.'));
  } catch {
    return true; // cannot tell: keep it, as before
  }
}

/** Runs the compiled check on the compiled target in a worker; `job` names the files as the learner knows them. */
function runInWorker(
  job: CheckJob,
  compiled: { checkPath: string; targetPath: string },
  broker: BrokerInfo,
  vhost: string,
  barrier: RestartBarrier,
  onStep?: RunOptions['onStep'],
  flow?: RunOptions['recordFlow'],
): Promise<WorkerResult & { output: string[] }> {
  const { exercise } = job;
  const workerJob: WorkerJob = {
    id: exercise.id,
    checkPath: compiled.checkPath,
    targetPath: compiled.targetPath,
    sourcePath: job.targetPath,
    target: job.target,
    vhost,
    broker,
    env: job.env,
    flow,
  };
  return new Promise((resolve) => {
    const createdAt = Date.now();
    const worker = workerFor(workerJob);
    const output = new OutputTail(worker.stdout, worker.stderr);
    let lastStep = 'loading your file';
    let settled = false;
    let timer: NodeJS.Timeout;

    const settle = (result: WorkerResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(cap);
      // What the worker printed travels separately from its result: its streams end once it
      // has exited, and only then is the output complete (the last line before a throw included).
      const ending = lap();
      const drained = Promise.all([worker.terminate(), finished(worker.stdout), finished(worker.stderr)]).catch(() => undefined);
      void Promise.race([drained, sleep(1000, undefined, { ref: false })]).then(() => {
        const timings: Timings = { ...result.timings, teardown: ending() };
        if (result.startedAt) timings.boot = Math.max(0, result.startedAt - createdAt);
        resolve({ ...result, timings, output: output.lines() });
      });
    };
    // The limit is on standing still, not on the whole run: each step the check reports re-arms it.
    // Code that hangs stops the steps; a check that is merely slow (a class of 30 sharing one
    // broker's machine) keeps reporting them. A cap on the whole run still ends a check that never stops.
    const overallMs = exercise.timeoutMs * 4;
    let cap: NodeJS.Timeout | undefined;
    const armCap = () => {
      clearTimeout(cap);
      cap = setTimeout(() => settle(tooLong()), overallMs);
    };
    const tooLong = (): WorkerResult => ({
      status: 'failed',
      steps: [],
      notes: [],
      finding: {
        summary: `The check was still running after ${overallMs / 1000} s; it was at: ${lastStep}.`,
        why: 'Every step moved on, but slowly: usually work repeated without end (a message published again and again), or a machine far too busy.',
        fix: `Run it on its own to watch it: npx tsx ${rel(job.targetPath)}`,
      },
    });
    const armTimer = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        // A trace wants the flow so far: asked for briefly (a thread stuck in a loop does not answer).
        const flowSoFar = flow && !settled ? await askFlow(worker) : undefined;
        settle({
          status: 'failed',
          steps: [],
          notes: [],
          finding: {
            summary: `Your code did not finish within ${exercise.timeoutMs / 1000} s; the check was at: ${lastStep}.`,
            why: 'The checker stopped it. Usually an endless loop, or waiting for something that never happens (a message that never comes, a promise never resolved).',
            fix: `Run it on its own to watch it: npx tsx ${rel(job.targetPath)}`,
          },
          flow: flowSoFar,
        });
      }, ms);
    };
    armTimer(exercise.timeoutMs);
    armCap();

    worker.on('message', async (msg: FromWorker) => {
      if (msg.type === 'step') {
        lastStep = msg.text;
        armTimer(exercise.timeoutMs);
        onStep?.(job, msg.text);
      } else if (msg.type === 'result') {
        settle(msg.result);
      } else if (msg.type === 'restart') {
        const reply = (r: ToWorker) => worker.postMessage(r);
        if (!exercise.restartsBroker) {
          reply({ type: 'restart-result', ok: false, reason: 'the manifest does not mark this exercise restartsBroker, so it may run beside other checks' });
        } else {
          // Waiting for the restart does not count against the learner's time.
          clearTimeout(timer);
          clearTimeout(cap);
          const result = await barrier.request();
          reply({ type: 'restart-result', ...result });
          if (!settled) {
            armTimer(exercise.timeoutMs);
            armCap();
          }
        }
      }
    });
    worker.on('error', (err) => {
      settle({ status: 'error', steps: [], notes: [], finding: { summary: `The check worker crashed: ${mapCompiledPaths(err.stack ?? String(err))}` } });
    });
    worker.on('exit', (code) => {
      settle({
        status: 'failed',
        steps: [],
        notes: [],
        finding: {
          summary: `Your code ended the process (process.exit(${code})) while the check was at: ${lastStep}.`,
          why: 'Your file is imported by the checker like a library. A library must not exit the process: it hides errors and kills whatever else is running.',
          fix: 'Return from the function, or throw an error, instead of calling process.exit(). Keep process.exit for the run-on-its-own block at the bottom.',
        },
      });
    });
  });
}

/** The worker's message flow so far, if it answers within half a second. */
function askFlow(worker: Worker): Promise<Flow | undefined> {
  return new Promise((resolve) => {
    const done = (flow?: Flow) => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      resolve(flow);
    };
    const onMessage = (msg: FromWorker) => msg.type === 'flow' && done(msg.flow);
    const timer = setTimeout(done, 500);
    worker.on('message', onMessage);
    worker.postMessage({ type: 'flow' } satisfies ToWorker);
  });
}

/**
 * Runs many checks: ordinary ones `concurrency` at a time; broker-restarting ones side by
 * side with them until they ask for the restart, which waits until the ordinary ones are done.
 */
export async function runChecks(
  jobs: CheckJob[],
  broker: BrokerInfo,
  opts: RunOptions & { concurrency?: number; onVerdict?: (v: Verdict) => void } = {},
): Promise<Verdict[]> {
  // In a classroom, no more at once than the learner has sandbox vhosts (more would only wait for one).
  const concurrency = Math.min(opts.concurrency ?? Math.max(2, availableParallelism()), broker.classroom?.pool.length ?? Infinity);
  const results = new Map<CheckJob, Verdict>();
  // Long checks first (their time bound says which), so they do not end up alone at the end.
  const shared = jobs.filter((j) => !j.exercise.restartsBroker && !j.exercise.cluster).sort((a, b) => b.exercise.timeoutMs - a.exercise.timeoutMs);
  const alone = jobs.filter((j) => j.exercise.restartsBroker);
  // Checks that kill nodes of the local cluster: one at a time, after all the others.
  const clustered = jobs.filter((j) => j.exercise.cluster && !j.exercise.restartsBroker);

  const record = (job: CheckJob, v: Verdict) => {
    results.set(job, v);
    opts.onVerdict?.(v);
  };
  let sharedDone: () => void = () => undefined;
  const barrier = new RestartBarrier(broker, new Promise<void>((resolve) => (sharedDone = resolve)));
  // Broker-restarting checks start now, all together; the restart waits for the others to finish.
  const restarting = alone.map(async (job) => record(job, await runCheck(job, broker, { ...opts, barrier })));

  let next = 0;
  const lane = async () => {
    while (next < shared.length) {
      const job = shared[next++]!;
      record(job, await runCheck(job, broker, opts));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, shared.length) }, lane));
  sharedDone();
  await Promise.all(restarting);
  for (const job of clustered) record(job, await runCheck(job, broker, opts));
  return jobs.map((j) => results.get(j)!);
}


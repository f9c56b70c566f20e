// Runs checks: one worker thread per check, in a sandbox vhost of its own, within the
// exercise's time bound. Checks that restart the broker run alone, after the others.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { Exercise } from '../manifest/load.js';
import { compareVersions, type BrokerInfo } from '../broker/types.js';
import { restartBroker } from '../broker/restart.js';
import { createSandbox, forget, type Sandbox } from '../sandbox/sandbox.js';
import { rel } from '../paths.js';
import type { FromWorker, ToWorker, WorkerJob, WorkerResult } from './protocol.js';
import type { TargetKind, Verdict } from './verdict.js';
import { keptVhosts } from './kept.js';

const BOOT = new URL('./worker-boot.mjs', import.meta.url);

export interface CheckJob {
  exercise: Exercise;
  target: TargetKind;
  variant?: string;
  targetPath: string;
}

export interface RunOptions {
  /** Keep the sandbox of a failed check so the learner can look at it in the UI (learner runs only). */
  keepFailedSandbox?: boolean;
  onStep?: (job: CheckJob, step: string) => void;
}

/** The jobs for an exercise: its starter-or-learner file, its solution, or its known-wrong variants. */
export function jobFor(exercise: Exercise, target: TargetKind, variant?: string): CheckJob {
  if (target === 'wrong') {
    const w = exercise.wrong.find((x) => x.name === variant);
    if (!w) throw new Error(`exercise ${exercise.id} has no known-wrong variant "${variant}"`);
    return { exercise, target, variant, targetPath: w.path };
  }
  return { exercise, target, targetPath: target === 'solution' ? exercise.solutionPath : exercise.starterPath };
}

export async function runCheck(job: CheckJob, broker: BrokerInfo, opts: RunOptions = {}): Promise<Verdict> {
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
  try {
    sandbox = await createSandbox(broker, `${exercise.id}-${job.variant ?? job.target}`);
  } catch (err) {
    return { ...base, status: 'error', finding: { summary: `Could not create a sandbox vhost: ${(err as Error).message}` }, steps: [], notes: [], durationMs: Date.now() - started };
  }

  const result = await runInWorker(job, broker, sandbox.vhost, opts);
  const verdict: Verdict = { ...base, ...result, vhost: sandbox.vhost, durationMs: Date.now() - started };

  if (opts.keepFailedSandbox && job.target === 'exercise') {
    await keptVhosts.replace(exercise.id, verdict.status === 'failed' ? sandbox.vhost : undefined, broker);
    if (verdict.status === 'failed') {
      forget(sandbox);
      verdict.notes.push(`What your code left in the broker is kept in vhost "${sandbox.vhost}" until the next check of ${exercise.id}: ${broker.managementUrl}/#/queues/${encodeURIComponent(sandbox.vhost)}`);
      return verdict;
    }
  }
  await sandbox.dispose().catch(() => undefined);
  return verdict;
}

function runInWorker(job: CheckJob, broker: BrokerInfo, vhost: string, opts: RunOptions): Promise<WorkerResult> {
  const { exercise } = job;
  const workerJob: WorkerJob = {
    id: exercise.id,
    checkPath: exercise.checkPath,
    targetPath: job.targetPath,
    target: job.target,
    vhost,
    broker,
  };
  return new Promise((resolve) => {
    const worker = new Worker(BOOT, { workerData: workerJob, stdout: true, stderr: true });
    // The learner's console output is not judged; keep it out of the verdict display.
    worker.stdout.resume();
    worker.stderr.resume();
    let lastStep = 'loading your file';
    let settled = false;
    let timer: NodeJS.Timeout;

    const settle = (result: WorkerResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    const armTimer = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        settle({
          status: 'failed',
          steps: [],
          notes: [],
          finding: {
            summary: `Your code did not finish within ${exercise.timeoutMs / 1000} s; the check was at: ${lastStep}.`,
            why: 'The checker stopped it. Usually an endless loop, or waiting for something that never happens (a message that never comes, a promise never resolved).',
            fix: `Run it on its own to watch it: npx tsx ${rel(job.targetPath)}`,
          },
        });
      }, ms);
    };
    armTimer(exercise.timeoutMs);

    worker.on('message', async (msg: FromWorker) => {
      if (msg.type === 'step') {
        lastStep = msg.text;
        opts.onStep?.(job, msg.text);
      } else if (msg.type === 'result') {
        settle(msg.result);
      } else if (msg.type === 'restart') {
        const reply = (r: ToWorker) => worker.postMessage(r);
        if (!exercise.restartsBroker) {
          reply({ type: 'restart-result', ok: false, reason: 'the manifest does not mark this exercise restartsBroker, so it may run beside other checks' });
        } else if (!broker.restart) {
          reply({ type: 'restart-result', ok: false, reason: `the workbook did not start this broker (${broker.description}), so it does not restart it` });
        } else {
          // A restart takes several seconds; it does not count against the learner's time.
          clearTimeout(timer);
          try {
            await restartBroker(broker);
            reply({ type: 'restart-result', ok: true });
          } catch (err) {
            reply({ type: 'restart-result', ok: false, reason: (err as Error).message });
          }
          armTimer(exercise.timeoutMs);
        }
      }
    });
    worker.on('error', (err) => {
      settle({ status: 'error', steps: [], notes: [], finding: { summary: `The check worker crashed: ${err.stack ?? err}` } });
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

/** Runs many checks: ordinary ones `concurrency` at a time, broker-restarting ones alone at the end. */
export async function runChecks(
  jobs: CheckJob[],
  broker: BrokerInfo,
  opts: RunOptions & { concurrency?: number; onVerdict?: (v: Verdict) => void } = {},
): Promise<Verdict[]> {
  const concurrency = opts.concurrency ?? Math.max(2, availableParallelism());
  const results = new Map<CheckJob, Verdict>();
  const shared = jobs.filter((j) => !j.exercise.restartsBroker);
  const alone = jobs.filter((j) => j.exercise.restartsBroker);

  let next = 0;
  const lane = async () => {
    while (next < shared.length) {
      const job = shared[next++]!;
      const v = await runCheck(job, broker, opts);
      results.set(job, v);
      opts.onVerdict?.(v);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, shared.length) }, lane));
  for (const job of alone) {
    const v = await runCheck(job, broker, opts);
    results.set(job, v);
    opts.onVerdict?.(v);
  }
  return jobs.map((j) => results.get(j)!);
}

export const workerBootPath = path.resolve(BOOT.pathname);

// The trace of a learner's failed check, for the web reader (/trace/ID): the message flow of
// their code beside the flow of the reference solution under the same check, run right after
// in a fresh sandbox. The last one per exercise, in .workbook/traces/ID.json. The learner's
// verdict never waits for the reference run: the commands print it first.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { STATE_DIR } from '../paths.js';
import type { BrokerInfo } from '../broker/types.js';
import type { Exercise } from '../manifest/load.js';
import type { Flow } from './flow.js';
import type { Verdict } from './verdict.js';

export const TRACES_DIR = path.join(STATE_DIR, 'traces');

export interface TraceSide {
  status: Verdict['status'];
  summary?: string;
  flow?: Flow;
}

export interface Trace {
  id: string;
  title: string;
  /** When the learner's check ran (ISO). */
  at: string;
  learner: TraceSide & { targetPath: string };
  /** running until the reference run is done; skipped (with why) for exercises it cannot run beside others. */
  reference: (TraceSide & { state: 'done' }) | { state: 'running' } | { state: 'skipped'; reason: string };
}

function fileFor(id: string, dir: string): string | undefined {
  return /^\d+\.\d+$/.test(id) ? path.join(dir, `${id}.json`) : undefined;
}

export function readTrace(id: string, dir = TRACES_DIR): Trace | undefined {
  const file = fileFor(id, dir);
  if (!file) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Trace;
  } catch {
    return undefined;
  }
}

export function hasTrace(id: string, dir = TRACES_DIR): boolean {
  const file = fileFor(id, dir);
  return file !== undefined && existsSync(file);
}

function write(trace: Trace, dir: string): void {
  mkdirSync(dir, { recursive: true });
  const file = fileFor(trace.id, dir)!;
  // Whole or not at all: the reader may read it while it is written.
  writeFileSync(`${file}.tmp`, JSON.stringify(trace));
  renameSync(`${file}.tmp`, file);
}

/** Why the reference run is not made for this exercise, or undefined when it is. */
export function referenceSkipped(exercise: Exercise): string | undefined {
  if (exercise.restartsBroker) return 'its check restarts the broker, so it does not run a second time beside your other checks';
  if (exercise.cluster) return 'its check stops nodes of the local cluster, which takes a minute and must not run beside your next check';
  return undefined;
}

/**
 * Saves the trace of a failed check that recorded its flow (RunOptions.recordFlow) and runs the
 * reference solution through the same check to complete it. Takes the flow off the verdict (it
 * is not for the terminal nor --json). Undefined when there is nothing to trace.
 */
export async function traceFailedCheck(exercise: Exercise, verdict: Verdict, broker: BrokerInfo, run: (exercise: Exercise) => Promise<Verdict>, dir = TRACES_DIR): Promise<Trace | undefined> {
  const flow = verdict.flow;
  delete verdict.flow;
  // Code that sent nothing (a starter that throws, a file that does not load) has no flow to compare.
  if (verdict.status !== 'failed' || !flow?.events.length) return undefined;
  const skipped = referenceSkipped(exercise);
  const trace: Trace = {
    id: exercise.id,
    title: exercise.title,
    at: new Date().toISOString(),
    learner: { status: verdict.status, summary: verdict.finding?.summary, targetPath: verdict.targetPath, flow },
    reference: skipped ? { state: 'skipped', reason: skipped } : { state: 'running' },
  };
  write(trace, dir);
  if (skipped) return trace;
  let reference: Verdict;
  try {
    reference = await run(exercise);
  } catch (err) {
    reference = { id: exercise.id, title: exercise.title, target: 'solution', targetPath: '', status: 'error', finding: { summary: (err as Error).message }, steps: [], notes: [], durationMs: 0 };
  }
  trace.reference = { state: 'done', status: reference.status, summary: reference.finding?.summary, flow: reference.flow };
  // A newer failed check of the same exercise may have written its own trace meanwhile: keep that one.
  if (readTrace(exercise.id, dir)?.at === trace.at) write(trace, dir);
  return trace;
}

/** The reference run for traceFailedCheck: the solution through the same check, in a sandbox of its own, its flow recorded. */
export async function runReference(exercise: Exercise, broker: BrokerInfo): Promise<Verdict> {
  const { jobFor, runCheck } = await import('./run.js');
  return runCheck(jobFor(exercise, 'solution'), broker, { recordFlow: 'always' });
}

/** Starts the trace of a failed check in the background (its promise never rejects); undefined when there is nothing to trace. */
export function startTrace(exercise: Exercise, verdict: Verdict, broker: BrokerInfo): Promise<Trace | undefined> | undefined {
  if (verdict.status !== 'failed' || !verdict.flow?.events.length) {
    delete verdict.flow;
    return undefined;
  }
  return traceFailedCheck(exercise, verdict, broker, (e) => runReference(e, broker)).catch(() => undefined);
}

// Messages between the runner and a check worker.
import type { BrokerInfo } from '../broker/types.js';
import type { Finding, TargetKind, Verdict } from './verdict.js';
import type { Timings } from './timings.js';
import type { Flow } from './flow.js';

export interface WorkerJob {
  id: string;
  checkPath: string;
  /** The compiled file the worker imports (under .workbook/build/). */
  targetPath: string;
  /** The file it was compiled from, as the learner knows it: for messages ("npx tsx …", reports). */
  sourcePath: string;
  target: TargetKind;
  vhost: string;
  broker: BrokerInfo;
  /** Set in the worker's process.env before the code under check is imported (mutation testing picks its mutant this way). */
  env?: Record<string, string>;
  /** Return the message flow of the code under check (flow.ts): when it fails, or always (the reference run of a trace). */
  flow?: 'failed' | 'always';
}

export type WorkerResult = Pick<Verdict, 'status' | 'steps' | 'notes' | 'contract'> & {
  finding?: Finding;
  /** The worker's phases (timings.ts), and when its code began to run (epoch ms: the runner derives the start-up from it). */
  timings?: Timings;
  startedAt?: number;
  flow?: Flow;
};

export type FromWorker =
  | { type: 'step'; text: string }
  | { type: 'restart' }
  | { type: 'result'; result: WorkerResult }
  | { type: 'flow'; flow: Flow };

export type ToWorker = { type: 'restart-result'; ok: boolean; reason?: string } | { type: 'job'; job: WorkerJob } | { type: 'flow' };

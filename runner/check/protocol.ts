// Messages between the runner and a check worker.
import type { BrokerInfo } from '../broker/types.js';
import type { Finding, TargetKind, Verdict } from './verdict.js';

export interface WorkerJob {
  id: string;
  checkPath: string;
  targetPath: string;
  target: TargetKind;
  vhost: string;
  broker: BrokerInfo;
}

export type WorkerResult = Pick<Verdict, 'status' | 'steps' | 'notes'> & { finding?: Finding };

export type FromWorker =
  | { type: 'step'; text: string }
  | { type: 'restart' }
  | { type: 'result'; result: WorkerResult };

export type ToWorker = { type: 'restart-result'; ok: boolean; reason?: string } | { type: 'job'; job: WorkerJob };

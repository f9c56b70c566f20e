// What a check concludes, in a form that crosses from the check worker to the runner
// (plain data) and prints both for people and as --json.
import type { ContractCoverage } from './contract.js';
import type { Timings } from './timings.js';
import type { Flow } from './flow.js';
export interface Finding {
  /** One sentence a beginner understands: what went wrong. */
  summary: string;
  expected?: string;
  saw?: string;
  /** Why it matters, in a sentence or two. */
  why?: string;
  /** What to change. */
  fix?: string;
  /** Management UI page of the object in question. */
  link?: string;
  /** Where the code under check threw, in the learner's own file: exercises/02-hello-world/01-send.ts:18:11. */
  at?: string;
  /** A bug in the check (status error): the saved report with the details, for the workbook's authors. */
  report?: string;
}

/** exercise: the learner's file (or the starter); wrong: a known-wrong variant; ok: an alternative solution. */
export type TargetKind = 'exercise' | 'solution' | 'wrong' | 'ok';

export interface Verdict {
  id: string;
  title: string;
  target: TargetKind;
  /** For known-wrong variants and alternative solutions: the variant's name. */
  variant?: string;
  targetPath: string;
  /** passed | failed (the code under check is wrong) | skipped (broker lacks a feature) | error (environment or check broke). */
  status: 'passed' | 'failed' | 'skipped' | 'error';
  finding?: Finding;
  /** What the checker did, in order, with wall-clock times, e.g. "12:00:01.120 closed your connection". */
  steps: string[];
  notes: string[];
  durationMs: number;
  vhost?: string;
  /** The contract lines the check provoked and observed (the self-check needs every line in both). */
  contract?: ContractCoverage;
  /** What the code under check printed (console.log, console.error) during the check: its last lines. */
  output?: string[];
  /** Where the check's time went, per phase (timings.ts). */
  timings?: Timings;
  /** The message flow of the code under check, when the run asked for it (RunOptions.recordFlow); the trace takes it from here. */
  flow?: Flow;
}

/** Thrown by a check to fail with a finding. */
export class CheckFailure extends Error {
  constructor(readonly finding: Finding) {
    super(finding.summary);
  }
}

/** Thrown by a check when the broker lacks what the exercise needs. */
export class CheckSkipped extends Error {}

// Mutation testing of the checks: StrykerJS mutates each exercise's reference solution, and
// the exercise's own check runs against every mutant on the live broker (stryker-runner.mjs).
// A mutant the check lets pass is a hole in the check, unless it is listed as equivalent in
// checks/equivalent-mutants.yaml: a change nobody can observe, with the reason why.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import type { LogLevel, MutantResult, PartialStrykerOptions } from '@stryker-mutator/api/core';
import type { Exercise } from '../manifest/load.js';
import type { BrokerInfo } from '../broker/types.js';
import { paths, ROOT, STATE_DIR } from '../paths.js';

export const EQUIVALENTS_FILE = path.join(paths.checks, 'equivalent-mutants.yaml');

const EquivalentSchema = z.array(
  z.object({
    id: z.string(),
    /** The code as the solution writes it, exactly. */
    code: z.string(),
    /** What Stryker turns it into, exactly as Stryker prints it. */
    becomes: z.string(),
    /** One line: why no check can tell the difference. */
    why: z.string().min(10),
    /** When `code` occurs on several lines: the (trimmed) source line of this one. */
    line: z.string().optional(),
  }),
);
export type Equivalent = z.infer<typeof EquivalentSchema>[number];

export function loadEquivalents(file = EQUIVALENTS_FILE): Equivalent[] {
  return EquivalentSchema.parse(parse(readFileSync(file, 'utf8')) ?? []);
}

export interface Mutant {
  id: string;
  /** file:line:column, 1-based, relative to the project. */
  where: string;
  mutator: string;
  code: string;
  becomes: string;
  status: 'killed' | 'survived' | 'equivalent' | 'error';
  /** The verdict that killed it, or the error. */
  detail?: string;
}

export interface ExerciseScore {
  id: string;
  killed: number;
  survived: number;
  equivalent: number;
  errors: number;
  /** killed / (killed + survived), in percent; equivalents and errors left out. */
  score: number;
  mutants: Mutant[];
}

/**
 * The lines Stryker may mutate: the whole file down to the "run it on its own" block at the
 * bottom, which the check never runs (it imports the module).
 */
export function mutableRange(file: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const end = lines.findIndex((l) => l.startsWith('// On its own') || l.startsWith('if (import.meta.url'));
  return `${path.relative(ROOT, file)}:1-${end > 0 ? end : lines.length}`;
}

function strykerOptions(exercises: Exercise[], concurrency: number): PartialStrykerOptions {
  return {
    testRunner: 'workbook',
    plugins: [path.join(ROOT, 'runner', 'mutation', 'stryker-runner.mjs')],
    mutate: exercises.map((e) => mutableRange(e.solutionPath)),
    coverageAnalysis: 'off',
    concurrency,
    // A line every few seconds: how many mutants are done, killed and survived so far.
    reporters: ['progress-append-only'],
    // One folder per run: Stryker removes its temp folder when it ends, and runs may overlap.
    tempDirName: path.join('.stryker-tmp', String(process.pid)),
    cleanTempDir: true,
    // The broker's data, progress and compiled trees stay out of the sandbox copy.
    ignorePatterns: ['.stryker-tmp', '.workbook', 'bench', 'BENCHMARKS.md', 'tests', 'checks/*/wrong', 'checks/*/ok'],
    logLevel: 'error' as LogLevel,
    fileLogLevel: 'off' as LogLevel,
    allowConsoleColors: false,
    // The runner has its own time bound per check; Stryker's is a backstop.
    timeoutMS: 30_000,
    dryRunTimeoutMinutes: 10,
    disableTypeChecks: true,
  };
}

/**
 * Runs Stryker over the exercises' solutions. Exercises whose check restarts the broker, or breaks
 * the local cluster, get a run of their own, one mutant at a time (a restart must not happen under
 * another check, and two checks must not kill nodes at once).
 */
export async function mutationTest(exercises: Exercise[], broker: BrokerInfo, opts: { concurrency: number; onProgress?: (line: string) => void }): Promise<ExerciseScore[]> {
  const { Stryker } = await import('@stryker-mutator/core');
  const groups = [
    { exercises: exercises.filter((e) => !e.restartsBroker && !e.cluster), concurrency: opts.concurrency },
    // Checks that restart the broker, or kill nodes of the local cluster (chapter 8): one at a time.
    { exercises: exercises.filter((e) => e.restartsBroker || e.cluster), concurrency: 1 },
  ].filter((g) => g.exercises.length);
  const results: MutantResult[] = [];
  for (const group of groups) {
    opts.onProgress?.(`mutating ${group.exercises.map((e) => e.id).join(', ')} (${group.concurrency} at a time)…`);
    process.env.WORKBOOK_MUTATION_BROKER = JSON.stringify(broker);
    // The sandbox is a copy of the project without .workbook: its checks use this project's
    // state (the capstone's Postgres among it), not a fresh one per sandbox.
    process.env.WORKBOOK_STATE_DIR = STATE_DIR;
    process.env.WORKBOOK_MUTATION_IDS = group.exercises.map((e) => e.id).join(',');
    const stryker = new Stryker(strykerOptions(group.exercises, group.concurrency));
    results.push(...(await stryker.runMutationTest()));
  }
  return score(exercises, results, loadEquivalents());
}

/** Sorts Stryker's results by exercise, and sets equivalents apart. */
export function score(exercises: Exercise[], results: MutantResult[], equivalents: Equivalent[]): ExerciseScore[] {
  return exercises.map((e) => {
    const source = readFileSync(e.solutionPath, 'utf8').split('\n');
    const mutants = results
      .filter((r) => path.resolve(ROOT, r.fileName) === e.solutionPath)
      .map((r): Mutant => {
        const code = slice(source, r.location);
        const becomes = r.replacement ?? '';
        const line = source[r.location.start.line - 1]!.trim();
        const equivalent = equivalents.some((q) => q.id === e.id && q.code === code && q.becomes === becomes && (q.line === undefined || q.line === line));
        const status: Mutant['status'] =
          r.status === 'Killed' || r.status === 'Timeout' ? 'killed'
          : r.status === 'Survived' || r.status === 'NoCoverage' ? (equivalent ? 'equivalent' : 'survived')
          : 'error';
        return {
          id: r.id,
          where: `${path.relative(ROOT, e.solutionPath)}:${r.location.start.line}:${r.location.start.column}`,
          mutator: r.mutatorName,
          code,
          becomes,
          status,
          detail: r.statusReason,
        };
      });
    const count = (s: Mutant['status']) => mutants.filter((m) => m.status === s).length;
    const killed = count('killed');
    const survived = count('survived');
    return { id: e.id, killed, survived, equivalent: count('equivalent'), errors: count('error'), score: killed + survived ? (100 * killed) / (killed + survived) : 100, mutants };
  });
}

/** The source text at a Stryker location (1-based lines, 1-based columns, as in its report). */
function slice(lines: string[], loc: MutantResult['location']): string {
  const { start, end } = loc;
  if (start.line === end.line) return lines[start.line - 1]!.slice(start.column - 1, end.column - 1);
  const middle = lines.slice(start.line, end.line - 1);
  return [lines[start.line - 1]!.slice(start.column - 1), ...middle, lines[end.line - 1]!.slice(0, end.column - 1)].join('\n');
}

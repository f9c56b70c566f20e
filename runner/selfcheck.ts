// The workbook's own check, like rustlings' `dev check`: for every exercise (or the ids
// given), the manifest entry is complete, the starter has a TODO and fails its check,
// the solution passes, every known-wrong variant fails with the expected message, and
// every alternative solution passes.
// `npm test` runs it; authors run it with `npm run selfcheck [ids]`.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Exercise, Workbook } from './manifest/load.js';
import type { BrokerInfo } from './broker/types.js';
import { jobFor, runChecks, type CheckJob } from './check/run.js';
import type { Verdict } from './check/verdict.js';
import { rel } from './paths.js';
import { applyVariant, PatchError, variantsOf } from './variants.js';
import { parseContract, uncovered } from './check/contract.js';

export interface Problem {
  id: string;
  problem: string;
}

/** Static rules, no broker needed. */
export function staticProblems(workbook: Workbook, exercises: Exercise[] = workbook.exercises): Problem[] {
  const problems: Problem[] = [];
  const add = (id: string, problem: string) => problems.push({ id, problem });
  for (const c of workbook.chapters) {
    if (!existsSync(c.textPath)) add(`chapter ${c.number}`, `missing chapter text ${rel(c.textPath)}`);
  }
  for (const e of exercises) {
    for (const [what, file] of [['starter', e.starterPath], ['solution', e.solutionPath], ['check', e.checkPath]] as const) {
      if (!existsSync(file)) add(e.id, `missing ${what} ${rel(file)}`);
    }
    if (!existsSync(e.starterPath) || !existsSync(e.solutionPath)) continue;
    // Every variant's patch is there and applies to the solution as it is now.
    for (const v of variantsOf(e)) {
      try {
        applyVariant(e, v);
      } catch (err) {
        if (!(err instanceof PatchError)) throw err;
        add(e.id, err.message);
      }
    }
    const starter = readFileSync(e.starterPath, 'utf8');
    const solution = readFileSync(e.solutionPath, 'utf8');
    if (!starter.includes('TODO')) add(e.id, `${rel(e.starterPath)} has no TODO`);
    if (solution.includes('TODO')) add(e.id, `${rel(e.solutionPath)} still has a TODO`);
    const a = exportedNames(starter).join(', ');
    const b = exportedNames(solution).join(', ');
    if (a !== b) add(e.id, `starter exports [${a}] but the solution exports [${b}]`);
    const contract = parseContract(starter);
    if (contract.length === 0) add(e.id, `${rel(e.starterPath)} has no numbered contract lines ("//   1. …") in its header`);
    if (JSON.stringify(contract) !== JSON.stringify(parseContract(solution))) add(e.id, `the contract lines of ${rel(e.solutionPath)} differ from the starter's`);
    const chapter = workbook.chapter(e.chapter)!;
    if (existsSync(chapter.textPath) && !readFileSync(chapter.textPath, 'utf8').includes(`Exercise ${e.id}`)) {
      add(e.id, `chapter text ${rel(chapter.textPath)} does not present "Exercise ${e.id}"`);
    }
  }
  // Files nobody lists are forgotten work or leftovers.
  for (const c of workbook.chapters) {
    const listed = new Set(c.exercises.flatMap((e) => variantsOf(e).map((v) => v.path)));
    for (const kind of ['wrong', 'ok']) {
      const dir = path.join(path.dirname(c.exercises[0]?.checkPath ?? c.textPath), kind);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) if (!listed.has(path.join(dir, f))) add(`chapter ${c.number}`, `${rel(path.join(dir, f))} is not listed in the manifest`);
    }
  }
  return problems;
}

function exportedNames(source: string): string[] {
  return [...source.matchAll(/^export\s+(?:async\s+)?(?:function\*?|const|let|class|interface|type)\s+(\w+)/gm)].map((m) => m[1]!).sort();
}

/**
 * Lanes for the self-check: most of a check is waiting on the broker (redeliveries, "nothing
 * else arrives" windows), so more lanes than cores pay off. Measured on 2 cores, 200 checks:
 * 10 lanes 31.3 s, 16 lanes 27.5 s, 24 lanes 27.5 s.
 */
export const SELFCHECK_CONCURRENCY = 16;

export interface SelfCheckResult {
  verdicts: Verdict[];
  problems: Problem[];
}

/** Every target of every exercise against the live broker, judged against what the manifest expects. */
export async function runSelfCheck(workbook: Workbook, broker: BrokerInfo, exercises: Exercise[] = workbook.exercises, opts: { concurrency?: number; onVerdict?: (v: Verdict) => void } = {}): Promise<SelfCheckResult> {
  const jobs: CheckJob[] = exercises.flatMap((e) => [jobFor(e, 'exercise'), jobFor(e, 'solution'), ...variantsOf(e).map((v) => jobFor(e, v.kind, v.name))]);
  const verdicts = await runChecks(jobs, broker, { concurrency: opts.concurrency ?? SELFCHECK_CONCURRENCY, onVerdict: opts.onVerdict });
  const problems: Problem[] = [];
  for (const v of verdicts) {
    const problem = judge(workbook, v);
    if (problem) problems.push({ id: v.id, problem });
  }
  return { verdicts, problems };
}

/** Contract lines the check never provoked or never observed while it judged the solution. */
function contractProblem(workbook: Workbook, v: Verdict): string | undefined {
  const exercise = workbook.exercise(v.id)!;
  const contract = parseContract(readFileSync(exercise.starterPath, 'utf8'));
  const holes = uncovered(contract, v.contract ?? { provoked: [], observed: [] });
  if (holes.length === 0) return undefined;
  const list = holes.map((h) => `line ${h.line.id} ("${h.line.text.slice(0, 60)}${h.line.text.length > 60 ? '…' : ''}") never ${h.missing.join(' nor ')}`);
  return `the check leaves contract lines without a step: ${list.join('; ')}`;
}

/** What is wrong with a verdict, from the self-check's point of view (undefined: as expected). */
export function judge(workbook: Workbook, v: Verdict): string | undefined {
  if (v.status === 'skipped') return undefined; // the broker lacks a feature: nothing to judge
  if (v.status === 'error') return `${v.target} ${v.variant ?? ''}: the check broke: ${v.finding?.summary}`;
  if (v.target === 'solution') return v.status === 'passed' ? contractProblem(workbook, v) : `the solution fails: ${v.finding?.summary}`;
  if (v.target === 'exercise') return v.status === 'failed' ? undefined : 'the starter passes its check';
  if (v.target === 'ok') {
    const ok = workbook.exercise(v.id)!.ok.find((o) => o.name === v.variant)!;
    return v.status === 'passed' ? undefined : `alternative solution "${v.variant}" (${ok.style}) fails: ${v.finding?.summary}`;
  }
  const wrong = workbook.exercise(v.id)!.wrong.find((w) => w.name === v.variant)!;
  if (v.status !== 'failed') return `known-wrong "${v.variant}" (${wrong.mistake}) passes its check`;
  const summary = (v.finding?.summary ?? '').toLowerCase();
  if (!wrong.expect.some((e) => summary.includes(e.toLowerCase()))) {
    return `known-wrong "${v.variant}" fails, but its verdict does not mention ${wrong.expect.map((e) => `"${e}"`).join(' or ')}: ${v.finding?.summary}`;
  }
  return undefined;
}

// Known-wrong variants and alternative solutions are stored as patches against the
// reference solution (checks/NN-slug/wrong/<stem>.<name>.patch, checks/NN-slug/ok/…), so a
// reader sees the mistake and nothing else, and every variant follows the changes of its
// solution. A patch is applied to the *current* solution when its check runs; one that no
// longer applies is reported as such, never guessed around (no fuzz).
//
// A patch may also change the solution's siblings with the same stem (13.1's
// 01-outbox.sql): the variant gets its own copy beside them (01-outbox.<name>.sql) and
// reads it through the same './01-outbox.sql' reference, rewritten.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { applyPatch, FILE_HEADERS_ONLY, formatPatch, parsePatch, structuredPatch } from 'diff';
import type { Exercise, VariantKind } from './manifest/load.js';
import { builtPath, compileText } from './build.mjs';
import { rel, ROOT } from './paths.js';

export interface Variant {
  kind: VariantKind;
  name: string;
  /** Its patch. */
  path: string;
}

/** The exercise's known-wrong variants, then its alternative solutions. */
export function variantsOf(exercise: Exercise): Variant[] {
  return [...exercise.wrong.map((w) => ({ kind: 'wrong' as const, name: w.name, path: w.path })), ...exercise.ok.map((o) => ({ kind: 'ok' as const, name: o.name, path: o.path }))];
}

/** A patch that is missing, unreadable, or no longer applies to the solution. */
export class PatchError extends Error {}

/** `known-wrong variant "no-confirm"`, `alternative solution "ok-publish-delivery-mode"` */
export function describeVariant(v: Pick<Variant, 'kind' | 'name'>): string {
  return `${v.kind === 'wrong' ? 'known-wrong variant' : 'alternative solution'} "${v.name}"`;
}

/** The files a patch may change: the solution and its siblings with the same stem (e.g. 01-outbox.sql). */
export function solutionFiles(exercise: Exercise): string[] {
  const dir = path.dirname(exercise.solutionPath);
  const own = (f: string) => f.startsWith(`${exercise.stem}.`) && !f.slice(exercise.stem.length + 1).includes('.');
  return [exercise.solutionPath, ...readdirSync(dir).filter((f) => own(f) && f !== path.basename(exercise.solutionPath)).sort().map((f) => path.join(dir, f))];
}

/** A file of the variant, beside the solution's: 01-send.ts -> 01-send.no-confirm.ts */
export function besideSolution(file: string, name: string): string {
  const ext = path.extname(file);
  return path.join(path.dirname(file), `${path.basename(file, ext)}.${name}${ext}`);
}

/** How patches name a file: relative to the project, with forward slashes. */
const patchName = (file: string) => path.relative(ROOT, file).split(path.sep).join('/');

/** The files the patch changes, each with its text once patched (unchanged files are left out). */
export function applyVariant(exercise: Exercise, variant: Variant): Map<string, string> {
  if (!existsSync(variant.path)) throw new PatchError(`the patch of ${describeVariant(variant)} is missing: ${rel(variant.path)}`);
  const allowed = new Map(solutionFiles(exercise).map((f) => [patchName(f), f]));
  let patches: ReturnType<typeof parsePatch>;
  try {
    patches = parsePatch(readFileSync(variant.path, 'utf8'));
  } catch (err) {
    throw new PatchError(`the patch of ${describeVariant(variant)} cannot be read (${rel(variant.path)}): ${(err as Error).message}`);
  }
  const patched = new Map<string, string>();
  for (const p of patches.filter((p) => p.hunks.length > 0)) {
    const file = allowed.get(p.oldFileName ?? '');
    if (!file) {
      throw new PatchError(`the patch of ${describeVariant(variant)} (${rel(variant.path)}) changes ${p.oldFileName}, which is not a file of the solution of ${exercise.id}`);
    }
    const text = applyPatch(readFileSync(file, 'utf8'), p);
    if (text === false) {
      throw new PatchError(`the patch of ${describeVariant(variant)} no longer applies to ${rel(file)}; regenerate it: npm run variant -- open ${exercise.id} ${variant.name}, redo the change, then save`);
    }
    patched.set(file, text);
  }
  if (patched.size === 0) throw new PatchError(`the patch of ${describeVariant(variant)} (${rel(variant.path)}) changes nothing`);
  return patched;
}

/**
 * Writes the variant beside the compiled solution, so that its relative imports resolve
 * exactly as the solution's do, and returns its compiled path. Only when the patch or a
 * solution file is newer than what was written last time.
 * Throws PatchError, or build.mjs's CompileError for a patched file that does not compile.
 */
export function materialise(exercise: Exercise, variant: Variant): string {
  const source = besideSolution(exercise.solutionPath, variant.name);
  const out = builtPath(source);
  if (upToDate(out, [variant.path, ...solutionFiles(exercise)])) return out;
  const patched = applyVariant(exercise, variant);
  let code = patched.get(exercise.solutionPath) ?? readFileSync(exercise.solutionPath, 'utf8');
  for (const [file, text] of patched) {
    if (file === exercise.solutionPath) continue;
    const own = besideSolution(file, variant.name);
    compileText(text, own, builtPath(own));
    code = code.replaceAll(`'./${path.basename(file)}'`, `'./${path.basename(own)}'`);
  }
  compileText(code, source, out); // last: its time stamp says the whole variant is written
  return out;
}

function upToDate(out: string, sources: string[]): boolean {
  if (!existsSync(out)) return false;
  const written = statSync(out).mtimeMs;
  return sources.every((s) => existsSync(s) && statSync(s).mtimeMs <= written);
}

/** A unified diff from the solution's files to `edited` (file -> new text); empty when nothing differs. */
export function makePatch(edited: Map<string, string>): string {
  const patches = [...edited]
    .map(([file, text]) => structuredPatch(patchName(file), patchName(file), readFileSync(file, 'utf8'), text, undefined, undefined, { context: 3 }))
    .filter((p) => p.hunks.length > 0);
  return patches.length ? formatPatch(patches, FILE_HEADERS_ONLY) : '';
}

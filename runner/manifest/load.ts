// Loads manifest.yaml, validates it and derives every path from the ids, so
// the manifest never repeats a path and a reader can find any file from an id:
//   2.1 -> chapters/02-hello-world/README.md, exercises/02-hello-world/01-send.ts,
//          solutions/02-hello-world/01-send.ts, checks/02-hello-world/01-send.check.ts,
//          checks/02-hello-world/wrong/01-send.<variant>.patch, checks/02-hello-world/ok/01-send.ok-<style>.patch
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { paths } from '../paths.js';
import { manifestSchemas, type ChapterData, type ExerciseData, type OkVariant, type WrongVariant } from './schema.js';
import { cacheKey, readCached, writeCached } from './cache.js';

export interface Chapter extends Omit<ChapterData, 'exercises'> {
  dir: string; // e.g. "02-hello-world"
  textPath: string;
  demoPath: string;
  exercises: Exercise[];
}

/** A known-wrong variant or an alternative solution: a patch against the reference solution. */
export type VariantKind = 'wrong' | 'ok';

export interface Exercise extends Omit<ExerciseData, 'wrong' | 'ok'> {
  chapter: number;
  chapterDir: string;
  stem: string; // "01-send"
  starterPath: string;
  /** Every file the learner edits: the starter and its siblings with the same stem (e.g. 01-outbox.sql). */
  starterFiles: string[];
  solutionPath: string;
  checkPath: string;
  /** Each with the path of its patch. */
  wrong: (WrongVariant & { path: string })[];
  ok: (OkVariant & { path: string })[];
}

export interface Workbook {
  chapters: Chapter[];
  exercises: Exercise[];
  exercise(id: string): Exercise | undefined;
  chapter(n: number): Chapter | undefined;
}

export class ManifestError extends Error {}

export function loadManifest(file = paths.manifest): Workbook {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ManifestError(`Cannot read ${file}: ${(err as Error).message}`);
  }
  const key = cacheKey(text);
  const cached = readCached(key);
  if (cached) return buildWorkbook(cached);
  const chapters = validate(file, text);
  const workbook = buildWorkbook(chapters); // throws for duplicate ids: such a manifest is never cached
  writeCached(key, chapters);
  return workbook;
}

/** Parses and validates the manifest's text. yaml is loaded here, when the cache missed (see cache.ts). */
function validate(file: string, text: string): ChapterData[] {
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new ManifestError(`Cannot read ${file}: ${(err as Error).message}`);
  }
  const { z, ManifestSchema } = manifestSchemas();
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ManifestError(`${file} is invalid:\n${z.prettifyError(parsed.error)}`);
  }
  return parsed.data.chapters;
}

function buildWorkbook(data: ChapterData[]): Workbook {
  // One listing per exercises folder, shared by its exercises (for their sibling files).
  const listings = new Map<string, string[]>();
  const listing = (dir: string) => {
    if (!listings.has(dir)) listings.set(dir, existsSync(dir) ? readdirSync(dir) : []);
    return listings.get(dir)!;
  };
  const chapters = data.map((c) => toChapter(c, listing));
  const exercises = chapters.flatMap((c) => c.exercises);
  const seen = new Set<string>();
  for (const c of chapters) {
    for (const e of c.exercises) {
      if (seen.has(e.id)) throw new ManifestError(`Exercise id ${e.id} appears twice in the manifest.`);
      seen.add(e.id);
      if (!e.id.startsWith(`${c.number}.`)) {
        throw new ManifestError(`Exercise ${e.id} is listed under chapter ${c.number}; its id must start with "${c.number}."`);
      }
    }
  }
  const byId = new Map(exercises.map((e) => [e.id, e]));
  return {
    chapters,
    exercises,
    exercise: (id) => byId.get(id),
    chapter: (n) => chapters.find((c) => c.number === n),
  };
}

function toChapter(c: ChapterData, listing: (dir: string) => string[]): Chapter {
  const dir = `${String(c.number).padStart(2, '0')}-${c.slug}`;
  return {
    ...c,
    dir,
    textPath: path.join(paths.chapters, dir, 'README.md'),
    demoPath: path.join(paths.chapters, dir, 'demo.ts'),
    exercises: c.exercises.map((e) => toExercise(c.number, dir, e, listing)),
  };
}

function toExercise(chapter: number, dir: string, e: ExerciseData, listing: (dir: string) => string[]): Exercise {
  const stem = e.file.replace(/\.ts$/, '');
  const exerciseDir = path.join(paths.exercises, dir);
  const siblings = listing(exerciseDir).filter((f) => f.startsWith(`${stem}.`) && f !== e.file);
  return {
    ...e,
    chapter,
    chapterDir: dir,
    stem,
    starterPath: path.join(exerciseDir, e.file),
    starterFiles: [path.join(exerciseDir, e.file), ...siblings.sort().map((f) => path.join(exerciseDir, f))],
    solutionPath: path.join(paths.solutions, dir, e.file),
    checkPath: path.join(paths.checks, dir, `${stem}.check.ts`),
    wrong: e.wrong.map((w) => ({ ...w, path: variantPatchPath(dir, stem, 'wrong', w.name) })),
    ok: e.ok.map((o) => ({ ...o, path: variantPatchPath(dir, stem, 'ok', o.name) })),
  };
}

/** checks/02-hello-world/wrong/01-send.no-confirm.patch, checks/02-hello-world/ok/01-send.ok-….patch */
export function variantPatchPath(chapterDir: string, stem: string, kind: VariantKind, name: string): string {
  return path.join(paths.checks, chapterDir, kind, `${stem}.${name}.patch`);
}

// Maps error stacks and locations from the compiled tree (.workbook/build/…/01-send.js:13:11)
// back to the TypeScript files people edit (exercises/…/01-send.ts:18:11), with the inline
// source maps esbuild writes into every compiled file (runner/build.mjs).
//
// On demand, only when a verdict quotes an error: `node --enable-source-maps` would parse the
// map of every module at every worker start, and most checks never quote a stack.
import { readFileSync, statSync } from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILD = `${path.sep}.workbook${path.sep}build${path.sep}`;
// A compiled file as stack frames and Node's messages name it: a file:// URL or a path, maybe with :line:column.
const COMPILED = /(file:\/\/[^\s()'"]+?|\/[^\s()'"]*?)\.js(?![\w.])(?::(\d+)(?::(\d+))?)?/g;
const INLINE_MAP = /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/;

interface Mapped {
  map: SourceMap;
  /** The TypeScript file, absolute. */
  source: string;
}

const maps = new Map<string, { mtimeMs: number; mapped: Mapped | undefined }>();

/** The source map of a compiled file, read once per version of the file. */
function mappedFile(file: string): Mapped | undefined {
  let mtimeMs: number;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
  const cached = maps.get(file);
  if (cached?.mtimeMs === mtimeMs) return cached.mapped;
  let mapped: Mapped | undefined;
  try {
    const m = INLINE_MAP.exec(readFileSync(file, 'utf8'));
    if (m) {
      const payload = JSON.parse(Buffer.from(m[1]!, 'base64').toString('utf8'));
      mapped = { map: new SourceMap(payload), source: payload.sources[0] };
    }
  } catch {
    mapped = undefined; // no usable map: the compiled location is shown as it is
  }
  maps.set(file, { mtimeMs, mapped });
  return mapped;
}

export interface Location {
  /** The TypeScript file, absolute. */
  source: string;
  line?: number;
  column?: number;
}

/** Where a position in a compiled file comes from (1-based line and column, like stack frames). */
export function originalLocation(compiled: string, line?: number, column?: number): Location | undefined {
  if (!compiled.includes(BUILD)) return undefined;
  const mapped = mappedFile(compiled);
  if (!mapped) return undefined;
  if (line === undefined) return { source: mapped.source };
  const entry = mapped.map.findEntry(line - 1, (column ?? 1) - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number };
  if (entry.originalSource === undefined || entry.originalLine === undefined) return { source: mapped.source };
  return { source: entry.originalSource, line: entry.originalLine + 1, column: column === undefined ? undefined : (entry.originalColumn ?? 0) + 1 };
}

/** A location as people read it and editors open it: exercises/02-hello-world/01-send.ts:18:11. */
export function formatLocation(l: Location): string {
  const file = path.relative(process.cwd(), l.source) || l.source;
  return [file, l.line, l.column].filter((x) => x !== undefined).join(':');
}

/** The text (a message, a stack) with every compiled file and position replaced by the TypeScript one. */
export function mapCompiledPaths(text: string): string {
  return text.replace(COMPILED, (whole, file: string, line?: string, column?: string) => {
    const l = originalLocation(toPath(file) + '.js', line ? Number(line) : undefined, column ? Number(column) : undefined);
    return l ? formatLocation(l) : whole;
  });
}

export interface Frame extends Location {
  /** In the code under check: not the runner's, not a check's own files. */
  learner: boolean;
}

/** The frames of an error's stack that are in the project's compiled code, mapped, innermost first. */
export function projectFrames(err: unknown): Frame[] {
  const stack = err instanceof Error ? (err.stack ?? '') : '';
  const frames: Frame[] = [];
  for (const m of stack.matchAll(COMPILED)) {
    const compiled = toPath(m[1]!) + '.js';
    const l = originalLocation(compiled, m[2] ? Number(m[2]) : undefined, m[3] ? Number(m[3]) : undefined);
    if (l) frames.push({ ...l, learner: isLearnerCode(compiled, l.source) });
  }
  return frames;
}

/** Where the code under check threw `err`, e.g. "exercises/02-hello-world/01-send.ts:18:11", or undefined. */
export function learnerLocation(err: unknown): string | undefined {
  const frame = projectFrames(err).find((f) => f.learner && f.line !== undefined);
  return frame && formatLocation(frame);
}

/** True when the innermost project frame of `err` is in the code under check: the learner's code threw it. */
export function thrownByLearnerCode(err: unknown): boolean {
  return projectFrames(err)[0]?.learner ?? false;
}

// The runner and the checks' own files (any *.check.ts, and checks/NN-slug/support.ts) are not
// the learner's; the known-wrong variants under checks/NN-slug/wrong/ stand in for a learner's file.
function isLearnerCode(compiled: string, source: string): boolean {
  const root = compiled.slice(0, compiled.indexOf(BUILD));
  const rel = path.relative(root, source).split(path.sep).join('/');
  return !rel.startsWith('runner/') && !rel.endsWith('.check.ts') && !/^checks\/[^/]+\/[^/]+$/.test(rel);
}

function toPath(fileOrUrl: string): string {
  if (!fileOrUrl.startsWith('file://')) return fileOrUrl;
  try {
    return fileURLToPath(fileOrUrl);
  } catch {
    return fileOrUrl;
  }
}

// Check workers run plain JavaScript. Loading TypeScript through tsx inside a worker
// costs about 0.2 s of CPU each time (tsx starts a module-hooks thread per worker), more
// than the rest of a typical check. So, before a worker starts, the runner mirrors the
// folders a check can touch into node_modules/.cache/rabbitmq-workbook/ (inside the
// project, so packages still resolve): .ts files compiled by esbuild, other files (SQL)
// copied, each only when its source changed. Relative imports already end in .js, so the
// compiled tree runs as it is; a file that does not compile gets a verdict of its own.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { transformSync } from 'esbuild';
import { ROOT } from '../paths.js';

export const BUILD_DIR = path.join(ROOT, 'node_modules', '.cache', 'rabbitmq-workbook');

/** What a check worker may import, directly or through the checks. */
const MIRRORED = ['runner', 'checks', 'exercises', 'solutions', 'capstone', 'chapters', 'tests/fixtures', 'types'];

export class CompileError extends Error {
  constructor(readonly file: string, message: string) {
    super(message);
  }
}

/** Brings the mirror up to date. Cheap when nothing changed (one stat per file). */
export function syncBuild(): void {
  // Inside node_modules, Node does not look further up for "type": "module".
  const pkg = path.join(BUILD_DIR, 'package.json');
  if (!existsSync(pkg)) writeAtomic(pkg, '{ "type": "module" }\n');
  for (const dir of MIRRORED) syncDir(path.join(ROOT, dir));
}

/** The compiled path of a source file; files outside the project get a place of their own. */
export function builtPath(source: string): string {
  const rel = path.relative(ROOT, source);
  const inside = !rel.startsWith('..') && !path.isAbsolute(rel);
  const target = inside ? rel : path.join('_outside', createHash('sha1').update(path.dirname(source)).digest('hex').slice(0, 8), path.basename(source));
  return path.join(BUILD_DIR, target.replace(/\.ts$/, '.js'));
}

/** Compiles one file (if changed) and returns its compiled path. Throws CompileError with esbuild's message. */
export function buildFile(source: string): string {
  const out = builtPath(source);
  if (!source.endsWith('.ts')) {
    if (isStale(source, out)) writeAtomic(out, readFileSync(source));
    return out;
  }
  if (!isStale(source, out)) return out;
  let code: string;
  try {
    code = transformSync(readFileSync(source, 'utf8'), {
      loader: 'ts',
      format: 'esm',
      target: 'node20',
      sourcemap: 'inline',
      sourcefile: source,
    }).code;
  } catch (err) {
    const first = (err as { errors?: { text: string; location?: { line: number; column: number } }[] }).errors?.[0];
    const where = first?.location ? `${path.relative(process.cwd(), source)}:${first.location.line}:${first.location.column + 1}: ` : '';
    throw new CompileError(source, `${where}${first?.text ?? (err as Error).message}`);
  }
  writeAtomic(out, code);
  return out;
}

function syncDir(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') syncDir(full);
    } else if (!entry.name.endsWith('.md') && !entry.name.endsWith('.d.ts')) {
      try {
        buildFile(full);
      } catch (err) {
        // A learner file that does not compile is reported when its check runs, not here.
        if (!(err instanceof CompileError)) throw err;
      }
    }
  }
}

function isStale(source: string, out: string): boolean {
  if (!existsSync(out)) return true;
  return statSync(source).mtimeMs > statSync(out).mtimeMs;
}

/** Write to a temp file, then rename: runner processes side by side never read half a file. */
function writeAtomic(file: string, content: string | Buffer): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

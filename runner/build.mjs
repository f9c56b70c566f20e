// Compiles the project's TypeScript into .workbook/build/ (inside the project, so packages
// still resolve from its node_modules), each file only when its source changed: .ts files
// by esbuild, other files (SQL) copied. Relative imports already end in .js, so the
// compiled tree runs as it is.
//
// Why: loading TypeScript through tsx costs about 0.2 s of CPU per process and per worker
// thread (tsx starts a module-hooks thread), more than a typical check. The CLI
// (runner/start.mjs) and every check worker run the compiled tree instead.
//
// Plain JavaScript, because it runs before anything is compiled.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transformSync } from 'esbuild';

// Always under the project itself (not WORKBOOK_STATE_DIR): packages must resolve from here.
const CACHE = path.join('.workbook', 'build');
const here = path.dirname(fileURLToPath(import.meta.url));
const compiled = here.indexOf(path.sep + CACHE);

/** The project root, whether this file runs from runner/ or from its compiled copy. */
export const ROOT = compiled >= 0 ? here.slice(0, compiled) : path.resolve(here, '..');
export const BUILD_DIR = path.join(ROOT, CACHE);
/** True when this code runs from the compiled tree. */
export const IS_COMPILED = compiled >= 0;

/** What the CLI and check workers may import, directly or through checks. */
const MIRRORED = ['runner', 'checks', 'exercises', 'solutions', 'capstone', 'chapters', 'tests/fixtures'];

export class CompileError extends Error {
  /** @param {string} file @param {string} message */
  constructor(file, message) {
    super(message);
    this.file = file;
  }
}

/**
 * Brings the compiled tree up to date. Cheap when nothing changed (one stat per file).
 * It only writes the compiled copies of source files and never deletes: the variants that
 * runner/variants.ts materialises beside the compiled solutions have no source of their own.
 */
export function syncBuild() {
  // Say "ES modules" here, whatever the folders above say.
  const pkg = path.join(BUILD_DIR, 'package.json');
  if (!existsSync(pkg)) writeAtomic(pkg, '{ "type": "module" }\n');
  for (const dir of MIRRORED) syncDir(path.join(ROOT, dir));
}

/**
 * The compiled path of a source file; files outside the project get a place of their own.
 * @param {string} source
 */
export function builtPath(source) {
  const rel = path.relative(ROOT, source);
  const inside = !rel.startsWith('..') && !path.isAbsolute(rel);
  const target = inside ? rel : path.join('_outside', createHash('sha1').update(path.dirname(source)).digest('hex').slice(0, 8), path.basename(source));
  return path.join(BUILD_DIR, target.replace(/\.ts$/, '.js'));
}

/**
 * Compiles (or copies) one file when it changed, and returns its compiled path.
 * Throws CompileError with esbuild's message, and where, for a file that does not compile.
 * @param {string} source
 */
export function buildFile(source) {
  const out = builtPath(source);
  if (!isStale(source, out)) return out;
  compileText(readFileSync(source), source, out);
  return out;
}

/**
 * Compiles (or copies) text that is no file of the project to `out`: a known-wrong variant
 * made from its patch (runner/variants.ts). `source` names it in messages and source maps.
 * @param {string | Buffer} text @param {string} source @param {string} out
 */
export function compileText(text, source, out) {
  if (!source.endsWith('.ts')) {
    writeAtomic(out, text);
    return;
  }
  let code;
  try {
    // Inline source maps: `node --enable-source-maps` then shows TypeScript lines in stack traces.
    // Off by default: parsing every module's map costs check workers time on each start.
    code = transformSync(text.toString(), { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', sourcefile: source }).code;
  } catch (err) {
    const first = err.errors?.[0];
    const where = first?.location ? `${path.relative(process.cwd(), source)}:${first.location.line}:${first.location.column + 1}: ` : '';
    throw new CompileError(source, `${where}${first?.text ?? err.message}`);
  }
  writeAtomic(out, code);
}

/** @param {string} dir */
function syncDir(dir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== '.workbook') syncDir(full);
    } else if (!entry.name.endsWith('.md') && !entry.name.endsWith('.d.ts') && !entry.name.endsWith('.d.mts')) {
      try {
        buildFile(full);
      } catch (err) {
        // A learner's file that does not compile is reported when its check runs, not here.
        if (!(err instanceof CompileError)) throw err;
      }
    }
  }
}

/** @param {string} source @param {string} out */
function isStale(source, out) {
  return !existsSync(out) || statSync(source).mtimeMs > statSync(out).mtimeMs;
}

/** Write to a temp file, then rename: processes side by side never read half a file. */
function writeAtomic(file, content) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

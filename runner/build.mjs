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
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// esbuild is loaded when a file needs compiling, not at every start: loading it (and the
// worker thread its synchronous API starts) costs more than a whole `npm run progress`.
const require = createRequire(import.meta.url);
/** @type {typeof import('esbuild') | undefined} */
let esbuild;

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
/**
 * Files no compiled code reads: text, type declarations, and the variants' patches (read from
 * checks/ itself; there are hundreds, and copying them made every start walk twice as much).
 */
const SKIPPED = ['.md', '.d.ts', '.d.mts', '.patch'];
/** What the CLI itself imports: enough for commands that run no check, demo or lab. */
export const RUNNER_ONLY = ['runner'];

export class CompileError extends Error {
  /** @param {string} file @param {string} message */
  constructor(file, message) {
    super(message);
    this.file = file;
  }
}

/**
 * Brings the compiled tree (or the folders `dirs` of it) up to date. Cheap when nothing
 * changed (two stats per file). It only writes the compiled copies of source files and never
 * deletes: the variants that runner/variants.ts materialises beside the compiled solutions
 * have no source of their own.
 * @param {string[]} [dirs]
 */
export function syncBuild(dirs = MIRRORED) {
  // Say "ES modules" here, whatever the folders above say.
  const pkg = path.join(BUILD_DIR, 'package.json');
  if (!existsSync(pkg)) writeAtomic(pkg, '{ "type": "module" }\n');
  for (const dir of dirs) syncDir(path.join(ROOT, dir), path.join(BUILD_DIR, dir));
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
    esbuild ??= /** @type {typeof import('esbuild')} */ (require('esbuild'));
    code = esbuild.transformSync(text.toString(), { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', sourcefile: source }).code;
  } catch (err) {
    const first = err.errors?.[0];
    const where = first?.location ? `${path.relative(process.cwd(), source)}:${first.location.line}:${first.location.column + 1}: ` : '';
    throw new CompileError(source, `${where}${first?.text ?? err.message}`);
  }
  writeAtomic(out, code);
}

/**
 * Paths are joined by hand here, not with path.join: this walk visits every file of the
 * project at each start of a check, and path.join and path.relative were most of its time.
 * @param {string} dir @param {string} outDir
 */
function syncDir(dir, outDir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const name = entry.name;
    const full = dir + path.sep + name;
    if (entry.isDirectory()) {
      if (name !== 'node_modules' && name !== '.workbook') syncDir(full, outDir + path.sep + name);
    } else if (!SKIPPED.some((ending) => name.endsWith(ending))) {
      const out = outDir + path.sep + (name.endsWith('.ts') ? `${name.slice(0, -3)}.js` : name);
      if (!isStale(full, out)) continue;
      try {
        compileText(readFileSync(full), full, out);
      } catch (err) {
        // A learner's file that does not compile is reported when its check runs, not here.
        if (!(err instanceof CompileError)) throw err;
      }
    }
  }
}

/** @param {string} source @param {string} out */
function isStale(source, out) {
  const built = statSync(out, { throwIfNoEntry: false });
  return !built || statSync(source).mtimeMs > built.mtimeMs;
}

/**
 * Write to a temp file, then rename: processes side by side never read half a file.
 * @param {string} file @param {string | Buffer} content
 */
export function writeAtomic(file, content) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

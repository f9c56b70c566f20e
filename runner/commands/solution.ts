// npm run solution ID: the reference solution, once the exercise has passed (or with --force).
import { existsSync, readFileSync } from 'node:fs';
import pc from 'picocolors';
import { workbook } from '../session.js';
import { resolveOne } from '../ids.js';
import { loadProgress, statusOf } from '../progress.js';
import { highlightCode } from '../chapter/highlight.js';
import { rel } from '../paths.js';
import { EXIT } from '../exit-codes.js';

export function solutionCommand(id: string, opts: { force?: boolean }): number {
  const exercise = resolveOne(workbook(), id);
  if (statusOf(loadProgress(), exercise.id) !== 'passed' && !opts.force) {
    console.log(`Exercise ${exercise.id} has not passed yet. Try it first (npm run watch ${exercise.id}), ask for a hint (npm run hint ${exercise.id}),`);
    console.log(`or look anyway: npm run solution ${exercise.id} -- --force`);
    return EXIT.FAILED;
  }
  console.log(pc.bold(`Reference solution for ${exercise.id} ${exercise.title}`) + pc.dim(`  (${rel(exercise.solutionPath)})`));
  // Highlighted on its own, not through the Markdown renderer: loading marked-terminal would triple this command's time.
  console.log(codeListing(readFileSync(exercise.solutionPath, 'utf8'), 'ts'));
  // Alternative solutions are stored as what they change in this one.
  for (const ok of exercise.ok.filter((o) => existsSync(o.path))) {
    console.log(pc.bold(`Also correct: ${ok.style}`) + pc.dim(`  (${rel(ok.path)})`));
    console.log(codeListing(readFileSync(ok.path, 'utf8'), 'diff'));
  }
  console.log(pc.dim(`Compare with yours: diff ${rel(exercise.solutionPath)} ${rel(exercise.starterPath)}`));
  return EXIT.OK;
}

/** Code indented under its heading, highlighted when colours are on. */
function codeListing(code: string, lang: string): string {
  const lines = highlightCode(code.replace(/\s+$/, ''), lang).split('\n');
  return '\n' + lines.map((line) => (line ? `  ${line}` : line)).join('\n') + '\n';
}

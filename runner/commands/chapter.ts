// npm run chapter N: the chapter's text (in a pager when it is longer than the terminal), its
// exercises with their status, then its live demo.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveChapter } from '../ids.js';
import { expandIncludes } from '../chapter/includes.js';
import { renderMarkdown } from '../chapter/render.js';
import { knownAddresses, localize } from '../chapter/addresses.js';
import { page } from '../chapter/pager.js';
import { runDemo } from '../chapter/demo.js';
import { loadProgress, statusOf } from '../progress.js';
import { rel } from '../paths.js';
import { EXIT } from '../exit-codes.js';

export async function chapterCommand(arg: string, opts: { demo?: boolean; text?: boolean; pager?: boolean }): Promise<number> {
  const chapter = resolveChapter(workbook(), arg);
  if (opts.text !== false) {
    // Localized before the includes are expanded: code shown from real files stays exactly as it is.
    const markdown = expandIncludes(localize(readFileSync(chapter.textPath, 'utf8'), knownAddresses()), path.dirname(chapter.textPath));
    const text = renderMarkdown(markdown);
    if (opts.pager === false) console.log(text);
    else await page(text);
    // After the pager: this stays on the screen.
    if (chapter.exercises.length) {
      const progress = loadProgress();
      console.log(pc.bold(`Exercises of chapter ${chapter.number}`));
      for (const e of chapter.exercises) {
        const s = statusOf(progress, e.id);
        const mark = s === 'passed' ? pc.green('✓') : s === 'failed' ? pc.red('✗') : pc.dim('·');
        console.log(`  ${mark} ${e.id.padEnd(5)} ${e.title}  ${pc.dim(rel(e.starterPath))}`);
      }
      console.log(pc.dim(`  Start with: npm run watch ${chapter.exercises.find((e) => statusOf(progress, e.id) !== 'passed')?.id ?? chapter.exercises[0]!.id}`));
    }
  }
  if (opts.demo === false) return EXIT.OK;
  const b = await broker();
  await runDemo(chapter, b, (line) => console.log(line));
  return EXIT.OK;
}

// npm run chapter N: the chapter's text, its exercises with their status, then its live demo.
import { readFileSync } from 'node:fs';
import pc from 'picocolors';
import { broker, workbook } from '../session.js';
import { resolveChapter } from '../ids.js';
import { expandIncludes } from '../chapter/includes.js';
import { renderMarkdown } from '../chapter/render.js';
import { runDemo } from '../chapter/demo.js';
import { loadProgress, statusOf } from '../progress.js';
import { rel } from '../paths.js';
import { EXIT } from '../exit-codes.js';
import path from 'node:path';

export async function chapterCommand(arg: string, opts: { demo?: boolean; text?: boolean }): Promise<number> {
  const chapter = resolveChapter(workbook(), arg);
  if (opts.text !== false) {
    const markdown = expandIncludes(readFileSync(chapter.textPath, 'utf8'), path.dirname(chapter.textPath));
    console.log(renderMarkdown(markdown));
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

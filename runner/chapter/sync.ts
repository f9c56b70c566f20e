// npm run chapters:sync: writes the included code into every chapter's Markdown, so the
// text on GitHub shows exactly the code that runs. `npm test` fails when one is stale.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { loadManifest } from '../manifest/load.js';
import { expandIncludes } from './includes.js';

/** Chapters whose Markdown differs from its expansion. With `write`, fixes them. */
export function staleChapters(write: boolean): string[] {
  const stale: string[] = [];
  for (const chapter of loadManifest().chapters) {
    if (!existsSync(chapter.textPath)) continue;
    const text = readFileSync(chapter.textPath, 'utf8');
    const expanded = expandIncludes(text, path.dirname(chapter.textPath));
    if (expanded !== text) {
      stale.push(chapter.textPath);
      if (write) writeFileSync(chapter.textPath, expanded);
    }
  }
  return stale;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const fixed = staleChapters(true);
  console.log(fixed.length ? `Updated ${fixed.length} chapter(s):\n${fixed.join('\n')}` : 'Every chapter is up to date.');
}

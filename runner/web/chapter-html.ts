// A chapter's Markdown as HTML for the web reader: the same source as the terminal's, with
// the same code includes and the same broker addresses (runner/chapter/), code highlighted
// by the same highlight.js grammars, and each "Exercise N.M" heading followed by that
// exercise's status and the commands to work on it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Marked } from 'marked';
import { expandIncludes } from '../chapter/includes.js';
import { knownAddresses, localize, type Addresses } from '../chapter/addresses.js';
import { highlightHtml } from '../chapter/highlight.js';
import type { Chapter } from '../manifest/load.js';
import { escapeHtml as esc } from './html.js';

/** GitHub's heading anchors, so that links written for GitHub (#troubleshooting) work here too. */
export function slug(text: string): string {
  return text.toLowerCase().trim().replace(/<[^>]*>/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

/** A link between chapters (../02-hello-world/README.md#x) to the reader's page for that chapter. */
export function chapterLink(href: string): string {
  const m = /(?:^|\/)(\d\d)-[a-z0-9-]+\/README\.md(#.*)?$/.exec(href);
  return m ? `/chapters/${Number(m[1])}${m[2] ?? ''}` : href;
}

export function chapterHtml(chapter: Chapter, exerciseBlock: (id: string) => string, addresses: Addresses | undefined = knownAddresses()): string {
  // Localized before the includes are expanded, as in the terminal: included code stays exactly as it is.
  const markdown = expandIncludes(localize(readFileSync(chapter.textPath, 'utf8'), addresses), path.dirname(chapter.textPath));
  const marked = new Marked();
  marked.use({
    renderer: {
      code(code: string, info: string | undefined) {
        const lang = (info ?? '').trim().split(/\s+/)[0] ?? '';
        const html = highlightHtml(code, lang) ?? esc(code);
        return `<pre><code class="hljs${lang ? ` language-${esc(lang)}` : ''}">${html}</code></pre>\n`;
      },
      heading(text: string, level: number, raw: string) {
        const exercise = /^Exercise (\d+\.\d+)\b/.exec(raw)?.[1];
        const id = slug(raw);
        // "#exercise-31" reaches an exercise from the chapter list, whatever its title.
        const short = exercise ? `<a id="exercise-${exercise.replace('.', '')}"></a>` : '';
        return `${short}<h${level} id="${esc(id)}"><a class="anchor" href="#${esc(id)}">#</a> ${text}</h${level}>\n${exercise ? exerciseBlock(exercise) : ''}`;
      },
      link(href: string, title: string | null | undefined, text: string) {
        return `<a href="${esc(chapterLink(href))}"${title ? ` title="${esc(title)}"` : ''}>${text}</a>`;
      },
    },
  });
  return marked.parse(markdown, { async: false }) as string;
}

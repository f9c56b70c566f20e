// Syntax highlighting for code shown in the terminal (chapter text, solutions), with
// highlight.js's core and only the grammars the workbook shows, each loaded on first use.
//
// Why not marked-terminal's own highlighting (cli-highlight): it loads all 190 grammars of
// highlight.js (about 0.2 s, longer than the rest of `npm run solution`), guesses a language
// for blocks that name none, and prints "Could not find the language …" for an info string
// such as `ts file=demo.ts region=send`.
import { createRequire } from 'node:module';
import pc from 'picocolors';
import type hljsCore from 'highlight.js';

const require = createRequire(import.meta.url);

/** A fenced block's info string ("ts file=demo.ts region=send") to its language ("ts"). */
export function fenceLanguage(info: string | undefined): string {
  return (info ?? '').trim().split(/\s+/)[0]!.toLowerCase();
}

/** Names used in fences → highlight.js grammar files. */
const GRAMMARS: Record<string, string> = {
  ts: 'typescript',
  typescript: 'typescript',
  js: 'javascript',
  javascript: 'javascript',
  sh: 'bash',
  bash: 'bash',
  shell: 'bash',
  console: 'bash',
  sql: 'sql',
  json: 'json',
  yaml: 'yaml',
  yml: 'yaml',
  diff: 'diff',
  patch: 'diff',
  ini: 'ini',
  conf: 'ini',
};

/** highlight.js token classes → colours (cli-highlight's default theme, in picocolors). */
const STYLE: Record<string, (s: string) => string> = {
  keyword: pc.blue,
  built_in: pc.cyan,
  type: pc.cyan,
  literal: pc.blue,
  number: pc.green,
  regexp: pc.red,
  string: pc.red,
  class: pc.blue,
  function: pc.yellow,
  comment: pc.green,
  doctag: pc.green,
  meta: pc.gray,
  tag: pc.gray,
  name: pc.blue,
  attr: pc.cyan,
  emphasis: pc.italic,
  strong: pc.bold,
  link: pc.underline,
  addition: pc.green,
  deletion: pc.red,
};

type HLJS = typeof hljsCore;
let hljs: HLJS | undefined;

function grammar(lang: string): string | undefined {
  const name = GRAMMARS[lang];
  if (!name) return undefined;
  hljs ??= require('highlight.js/lib/core') as HLJS;
  if (!hljs.getLanguage(name)) hljs.registerLanguage(name, require(`highlight.js/lib/languages/${name}`) as Parameters<HLJS['registerLanguage']>[1]);
  return name;
}

/**
 * `code` with ANSI colours for `lang`, when colours are on and the language is one the
 * workbook shows; otherwise as it is.
 */
export function highlightCode(code: string, lang: string | undefined): string {
  if (!pc.isColorSupported) return code;
  const name = grammar(fenceLanguage(lang));
  if (!name) return code;
  return colorize(hljs!.highlight(code, { language: name, ignoreIllegals: true }).value);
}

/** highlight.js's HTML (`<span class="hljs-…">`) for the web reader; undefined for a language the workbook does not highlight. */
export function highlightHtml(code: string, lang: string | undefined): string | undefined {
  const name = grammar(fenceLanguage(lang));
  return name ? hljs!.highlight(code, { language: name, ignoreIllegals: true }).value : undefined;
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#x27;': "'", '&#39;': "'" };

/** highlight.js's HTML (nested `<span class="hljs-…">`) to ANSI colours, one line at a time so that indenting a line never colours it. */
function colorize(html: string): string {
  const open: (string | undefined)[] = [];
  let out = '';
  for (const [token, cls] of html.matchAll(/<span class="([^"]*)">|<\/span>|[^<]+/g)) {
    if (cls !== undefined) {
      open.push(/hljs-([\w-]+)/.exec(cls)?.[1]);
    } else if (token === '</span>') {
      open.pop();
    } else {
      const text = token.replace(/&(amp|lt|gt|quot|#x27|#39);/g, (e) => ENTITIES[e]!);
      // The innermost class with a colour wins (a string inside a template literal…).
      const style = [...open].reverse().map((c) => (c ? STYLE[c] : undefined)).find(Boolean);
      out += style ? text.split('\n').map((line) => (line ? style(line) : line)).join('\n') : text;
    }
  }
  return out;
}

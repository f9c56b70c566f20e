// Renders a chapter's Markdown for the terminal (marked + marked-terminal), with tables
// wrapped to the terminal's width: marked-terminal draws every cell on one line, so a
// table with a long column runs far past the right edge.
import { Marked, type Tokens } from 'marked';
import TerminalRenderer from 'marked-terminal';
import pc from 'picocolors';
import { TABLE_STYLE } from '../table.js';
import { fenceLanguage, highlightCode } from './highlight.js';

// marked-terminal's Renderer method names, as its own markedTerminal() lists them.
const METHODS = ['text', 'code', 'blockquote', 'html', 'heading', 'hr', 'list', 'listitem', 'checkbox', 'paragraph', 'table', 'tablerow', 'tablecell', 'strong', 'em', 'codespan', 'br', 'del', 'link', 'image'];

export function renderMarkdown(markdown: string, width = Math.min(process.stdout.columns || 100, 100)): string {
  // marked-terminal's types lag behind its code; it is used here as its own markedTerminal() uses it.
  const terminal = new (TerminalRenderer as unknown as new (o: object) => Record<string, (...a: unknown[]) => string> & { tableSettings: object; options: unknown; parser: unknown })({ width, reflowText: true, tab: 2 });
  const tableWidths: number[][] = [];
  const renderer: Record<string, (...a: unknown[]) => string> = {};
  for (const name of METHODS) {
    renderer[name] = function (this: { options: unknown; parser: unknown }, ...args: unknown[]) {
      // marked 12 passes (text, info string); a token object in later versions.
      if (name === 'code') return typeof args[0] === 'object' ? codeBlock((args[0] as Tokens.Code).text, (args[0] as Tokens.Code).lang) : codeBlock(args[0] as string, args[1] as string | undefined);
      // An HTML comment is invisible in Markdown (a note to authors): marked-terminal prints it as it is.
      if (name === 'html' && /^\s*<!--[\s\S]*-->\s*$/.test(typeof args[0] === 'object' ? (args[0] as Tokens.HTML).text : String(args[0]))) return '';
      terminal.options = this.options;
      terminal.parser = this.parser;
      if (name === 'table') {
        const colWidths = tableWidths.shift();
        terminal.tableSettings = { style: TABLE_STYLE, ...(colWidths ? { colWidths, wordWrap: true, wrapOnWordBoundary: true } : {}) };
      }
      return terminal[name]!(...args);
    };
  }
  const marked = new Marked({
    // Tables are seen here, in document order, before any is drawn.
    walkTokens: (token) => {
      if (token.type === 'table') tableWidths.push(columnWidths(token as Tokens.Table, width));
    },
  });
  marked.use({ renderer, useNewRenderer: true } as never);
  return marked.parse(markdown, { async: false }) as string;
}

/** A fenced block, highlighted by its language (see highlight.ts), indented like the text. */
function codeBlock(text: string, info: string | undefined): string {
  const highlighted = highlightCode(text, fenceLanguage(info));
  // A block in no language we highlight stands apart from the text in one colour, as marked-terminal shows it.
  const code = highlighted === text && pc.isColorSupported ? pc.yellow(text) : highlighted;
  return code.split('\n').map((line) => (line ? `  ${line}` : line)).join('\n') + '\n\n';
}

/** cli-table3 column widths (padding included) that fit `width`: narrow columns keep their size, wide ones share the rest. */
export function columnWidths(table: Tokens.Table, width: number): number[] {
  const rows = [table.header, ...table.rows];
  const natural = table.header.map((_, i) => Math.max(3, ...rows.map((r) => plain(r[i]?.text ?? '').length)) + 2);
  // Indentation and borders, and a margin: cli-table3 widens a column a little when a coloured word will not break.
  let room = width - 10 - (natural.length + 1);
  if (natural.reduce((a, b) => a + b, 0) <= room) return natural;
  const out = new Array<number>(natural.length).fill(0);
  let open = natural.map((_, i) => i);
  // Water-filling: give each column at most an equal share of what is left, narrowest first.
  while (open.length) {
    const share = Math.floor(room / open.length);
    const fits = open.filter((i) => natural[i]! <= share);
    if (!fits.length) {
      for (const i of open) out[i] = Math.max(8, share);
      break;
    }
    for (const i of fits) {
      out[i] = natural[i]!;
      room -= natural[i]!;
    }
    open = open.filter((i) => !fits.includes(i));
  }
  return out;
}

function plain(text: string): string {
  return text.replace(/[*`_]/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
}

// Renders a chapter's Markdown for the terminal (marked + marked-terminal).
import { Marked } from 'marked';
import { markedTerminal } from 'marked-terminal';

export function renderMarkdown(markdown: string, width = Math.min(process.stdout.columns || 100, 100)): string {
  const marked = new Marked();
  // marked-terminal's types lag behind marked's extension API.
  marked.use(markedTerminal({ width, reflowText: true, tab: 2 }) as never);
  return marked.parse(markdown, { async: false }) as string;
}

// Code in a chapter is included from real files, so the text and the code that runs
// never drift. A fenced block whose info string names a file is filled from that file:
//
//   ```ts file=demo.ts region=send
//   (replaced by the lines between "// #region send" and "// #endregion" in demo.ts)
//   ```
//
// The path is relative to the chapter's folder. `npm run chapters:sync` writes the
// expanded code back into the Markdown (so it reads well on GitHub too), and a test
// fails when a chapter is out of date.
import { readFileSync } from 'node:fs';
import path from 'node:path';

const FENCE = /^```(\w+)([^\n]*\bfile=([^\s]+)[^\n]*)\n([\s\S]*?)^```$/gm;

export function expandIncludes(markdown: string, chapterDir: string): string {
  return markdown.replace(FENCE, (_all, lang: string, info: string, file: string) => {
    const region = info.match(/\bregion=([\w-]+)/)?.[1];
    const code = readRegion(path.join(chapterDir, file), region);
    return '```' + lang + info + '\n' + code + '\n```';
  });
}

/** The whole file, or the lines of one `// #region name` … `// #endregion` block, dedented. */
export function readRegion(file: string, region?: string): string {
  const text = readFileSync(file, 'utf8').replace(/\s+$/, '');
  if (!region) return text;
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === `// #region ${region}`);
  if (start < 0) throw new Error(`${file} has no "// #region ${region}"`);
  const end = lines.findIndex((l, i) => i > start && l.trim().startsWith('// #endregion'));
  if (end < 0) throw new Error(`${file}: region "${region}" has no "// #endregion"`);
  const body = lines.slice(start + 1, end);
  const indent = Math.min(...body.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return body.map((l) => l.slice(indent)).join('\n');
}

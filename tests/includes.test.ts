import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expandIncludes, readRegion } from '../runner/chapter/includes.js';
import { staleChapters } from '../runner/chapter/sync.js';

describe('code included in chapters', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wb-include-'));
  writeFileSync(path.join(dir, 'demo.ts'), 'const a = 1;\n// #region two\n  if (a) {\n    go();\n  }\n// #endregion\nconst b = 2;\n');

  it('fills a fenced block from a region of a file, dedented', () => {
    expect(readRegion(path.join(dir, 'demo.ts'), 'two')).toBe('if (a) {\n  go();\n}');
    const md = 'Text\n\n```ts file=demo.ts region=two\nstale code\n```\n\nMore\n';
    expect(expandIncludes(md, dir)).toBe('Text\n\n```ts file=demo.ts region=two\nif (a) {\n  go();\n}\n```\n\nMore\n');
  });

  it('names the file and region that is missing', () => {
    expect(() => readRegion(path.join(dir, 'demo.ts'), 'nope')).toThrow(/has no "\/\/ #region nope"/);
  });

  it('every chapter shows exactly the code that runs (npm run chapters:sync fixes drift)', () => {
    expect(staleChapters(false)).toEqual([]);
  });
});

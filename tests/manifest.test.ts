import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadManifest, ManifestError } from '../runner/manifest/load.js';
import { staticProblems } from '../runner/selfcheck.js';

function manifestFile(yaml: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'wb-manifest-')), 'manifest.yaml');
  writeFileSync(file, yaml);
  return file;
}

describe('the manifest', () => {
  it('loads, and derives every path from the ids', () => {
    const wb = loadManifest();
    const e = wb.exercise('2.1')!;
    expect(e.starterPath).toMatch(/exercises\/02-hello-world\/01-send\.ts$/);
    expect(e.solutionPath).toMatch(/solutions\/02-hello-world\/01-send\.ts$/);
    expect(e.checkPath).toMatch(/checks\/02-hello-world\/01-send\.check\.ts$/);
    expect(e.wrong[0]!.path).toMatch(/checks\/02-hello-world\/wrong\/01-send\.[a-z-]+\.patch$/);
    expect(e.ok[0]!.path).toMatch(/checks\/02-hello-world\/ok\/01-send\.ok-[a-z-]+\.patch$/);
    expect(wb.chapter(2)!.textPath).toMatch(/chapters\/02-hello-world\/README\.md$/);
  });

  it('is complete: files, TODOs, hints, matching exports, chapter text (the static part of the self-check)', () => {
    expect(staticProblems(loadManifest())).toEqual([]);
  });

  it('rejects an exercise without hints or known-wrong variants, saying where', () => {
    const file = manifestFile(`chapters:\n  - number: 1\n    slug: x\n    title: X\n    exercises:\n      - id: "1.1"\n        file: 01-a.ts\n        title: A\n        hints: []\n        wrong: []\n`);
    expect(() => loadManifest(file)).toThrow(ManifestError);
    expect(() => loadManifest(file)).toThrow(/hint/);
  });

  it('rejects an id that does not belong to its chapter, and duplicate ids', () => {
    const exercise = (id: string) =>
      `      - id: "${id}"\n        file: 01-a.ts\n        title: A\n        hints: [h]\n        wrong: [{ name: a, mistake: m, expect: e }, { name: b, mistake: m, expect: e }]\n`;
    const head = 'chapters:\n  - number: 1\n    slug: x\n    title: X\n    exercises:\n';
    expect(() => loadManifest(manifestFile(head + exercise('2.1')))).toThrow(/must start with "1\."/);
    expect(() => loadManifest(manifestFile(head + exercise('1.1') + exercise('1.1')))).toThrow(/twice/);
  });

  it('keeps "ok-" for alternative solutions: their names start with it, known-wrong names do not', () => {
    const exercise = (variants: string) =>
      `chapters:\n  - number: 1\n    slug: x\n    title: X\n    exercises:\n      - id: "1.1"\n        file: 01-a.ts\n        title: A\n        hints: [h]\n${variants}`;
    const wrong = (a: string) => `        wrong: [{ name: ${a}, mistake: m, expect: e }, { name: b, mistake: m, expect: e }]\n`;
    expect(() => loadManifest(manifestFile(exercise(wrong('ok-a'))))).toThrow(/not starting with "ok-"/);
    expect(() => loadManifest(manifestFile(exercise(wrong('a') + '        ok: [{ name: other, style: s }]\n')))).toThrow(/starts with "ok-"/);
    expect(loadManifest(manifestFile(exercise(wrong('a') + '        ok: [{ name: ok-other, style: s }]\n'))).exercise('1.1')!.ok[0]!.name).toBe('ok-other');
  });

  it('validates again whenever the manifest changed (the validated result is cached by its text)', () => {
    const head = 'chapters:\n  - number: 1\n    slug: x\n    title: X\n    exercises:\n      - id: "1.1"\n        file: 01-a.ts\n        title: A\n';
    const file = manifestFile(head + '        hints: [h]\n        wrong: [{ name: a, mistake: m, expect: e }, { name: b, mistake: m, expect: e }]\n');
    expect(loadManifest(file).exercise('1.1')!.wrong[0]!.expect).toEqual(['e']);
    expect(loadManifest(file).exercise('1.1')!.timeoutMs).toBe(10_000); // from the cache, defaults applied
    writeFileSync(file, head + '        hints: []\n        wrong: []\n');
    expect(() => loadManifest(file)).toThrow(/hint/);
  });

  it('says which file cannot be read', () => {
    expect(() => loadManifest('/nonexistent/manifest.yaml')).toThrow(/Cannot read \/nonexistent\/manifest.yaml/);
  });
});

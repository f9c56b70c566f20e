// Known-wrong variants and alternative solutions are patches against the solution: made
// from an edited copy, applied to the solution as it is now, refused when they no longer
// apply, and written beside the compiled solution so that relative imports still resolve.
import { mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Exercise } from '../runner/manifest/load.js';
import { applyVariant, makePatch, materialise, PatchError, type Variant } from '../runner/variants.js';
import { builtPath } from '../runner/build.mjs';

const SOLUTION = ['// header', "import { readFile } from 'node:fs/promises';", '', 'export async function send(): Promise<string> {', "  const persistent = true;", "  return `${persistent} ${await readFile(new URL('./01-send.sql', import.meta.url), 'utf8')}`;", '}', ''].join('\n');

/** A solution of its own in a temporary folder: 01-send.ts and its sibling 01-send.sql. */
function fixture(): { exercise: Exercise; variant: Variant; ts: string; sql: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'wb-variant-'));
  const ts = path.join(dir, '01-send.ts');
  const sql = path.join(dir, '01-send.sql');
  writeFileSync(ts, SOLUTION);
  writeFileSync(sql, 'SELECT 1;\n');
  const exercise = { id: '2.1', stem: '01-send', solutionPath: ts } as Exercise;
  return { exercise, ts, sql, variant: { kind: 'wrong', name: 'not-persistent', path: path.join(dir, '01-send.not-persistent.patch') } };
}

const later = (file: string) => utimesSync(file, new Date(), new Date(Date.now() + 5000));

describe('variant patches', () => {
  it('hold only what differs from the solution, and apply to it', () => {
    const { exercise, variant, ts } = fixture();
    const patch = makePatch(new Map([[ts, SOLUTION.replace('persistent = true', 'persistent = false')]]));
    expect(patch.split('\n').filter((l) => /^[-+] /.test(l))).toEqual(['-  const persistent = true;', '+  const persistent = false;']);
    writeFileSync(variant.path, patch);
    expect(applyVariant(exercise, variant).get(ts)).toContain('persistent = false');
    // A change elsewhere in the solution moves the lines; the patch still finds them.
    writeFileSync(ts, `// a longer header\n${SOLUTION}`);
    expect(applyVariant(exercise, variant).get(ts)).toContain('persistent = false');
  });

  it('say so when they no longer apply to the solution, naming it', () => {
    const { exercise, variant, ts } = fixture();
    writeFileSync(variant.path, makePatch(new Map([[ts, SOLUTION.replace('persistent = true', 'persistent = false')]])));
    writeFileSync(ts, SOLUTION.replace('persistent = true', 'persistent = Boolean(1)'));
    expect(() => applyVariant(exercise, variant)).toThrow(PatchError);
    expect(() => applyVariant(exercise, variant)).toThrow(/known-wrong variant "not-persistent" no longer applies to .*01-send\.ts; regenerate it/);
  });

  it('are written beside the compiled solution, and again when the solution changes', async () => {
    const { exercise, variant, ts } = fixture();
    writeFileSync(variant.path, makePatch(new Map([[ts, SOLUTION.replace('persistent = true', 'persistent = false')]])));
    const out = materialise(exercise, variant);
    expect(path.dirname(out)).toBe(path.dirname(builtPath(ts)));
    expect(readFileSync(out, 'utf8')).toContain('persistent = false');
    writeFileSync(ts, `${SOLUTION}export const changed = true;\n`);
    later(ts);
    expect(readFileSync(materialise(exercise, variant), 'utf8')).toContain('changed = true');
  });

  it("may change the solution's siblings: the variant reads its own copy", async () => {
    const { exercise, variant, sql } = fixture();
    writeFileSync(variant.path, makePatch(new Map([[sql, 'SELECT 2;\n']])));
    const out = materialise(exercise, variant);
    expect(readFileSync(path.join(path.dirname(out), '01-send.not-persistent.sql'), 'utf8')).toBe('SELECT 2;\n');
    expect(await (await import(pathToFileURL(out).href)).send()).toBe('true SELECT 2;\n');
  });
});

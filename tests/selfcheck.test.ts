// The workbook checks itself against the live broker: for every exercise the starter
// fails, the solution passes, each known-wrong variant fails with its expected message, and
// each alternative solution passes.
import { describe, expect, inject, it } from 'vitest';
import { loadManifest } from '../runner/manifest/load.js';
import { runSelfCheck } from '../runner/selfcheck.js';

const broker = inject('broker');
const workbook = loadManifest();

describe('workbook self-check', () => {
  for (const chapter of workbook.chapters) {
    if (chapter.exercises.length === 0) continue;
    // A chapter whose checks break the local cluster runs them one at a time, each followed by a node's restart.
    const timeout = chapter.exercises.some((e) => e.cluster) ? 1_800_000 : 600_000;
    it(`chapter ${chapter.number}: starters fail, solutions and alternatives pass, known-wrong variants fail as expected`, { timeout }, async () => {
      const { problems } = await runSelfCheck(workbook, broker, chapter.exercises);
      expect(problems).toEqual([]);
    });
  }
});

import { describe, expect, it } from 'vitest';
import { loadManifest } from '../runner/manifest/load.js';
import { nearestIds, resolveChapter, resolveIds, resolveOne } from '../runner/ids.js';
import { EXIT, UserError } from '../runner/exit-codes.js';

const wb = loadManifest();

describe('ids typed by the learner', () => {
  it('a chapter number means all its exercises; an id means one', () => {
    expect(resolveIds(wb, ['2']).map((e) => e.id)).toEqual(wb.chapter(2)!.exercises.map((e) => e.id));
    expect(resolveIds(wb, ['2.1', '2.1']).map((e) => e.id)).toEqual(['2.1']);
  });

  it('an unknown id is bad usage (64), with the nearest valid ids', () => {
    try {
      resolveOne(wb, '2.9');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(UserError);
      expect((err as UserError).exitCode).toBe(EXIT.USAGE);
      expect((err as Error).message).toMatch(/no exercise or chapter "2\.9"\. Did you mean 2\.\d/);
    }
    expect(nearestIds(wb, '2.11')).toContain('2.1');
  });

  it('an unknown chapter lists the chapters', () => {
    expect(() => resolveChapter(wb, '99')).toThrow(/no chapter "99"\. Chapters: /);
  });
});

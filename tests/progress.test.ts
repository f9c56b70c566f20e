import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadManifest } from '../runner/manifest/load.js';
import { currentExercise, loadProgress, recordResult, statusOf, updateProgress } from '../runner/progress.js';

const wb = loadManifest();
const tempFile = () => path.join(mkdtempSync(path.join(tmpdir(), 'wb-progress-')), 'progress.json');

describe('progress', () => {
  it('starts empty, records passes and failures, and never un-passes an exercise', () => {
    const file = tempFile();
    expect(statusOf(loadProgress(file), '2.1')).toBe('pending');
    recordResult('2.1', false, file);
    expect(statusOf(loadProgress(file), '2.1')).toBe('failed');
    recordResult('2.1', true, file);
    recordResult('2.1', false, file);
    const p = loadProgress(file);
    expect(statusOf(p, '2.1')).toBe('passed');
    expect(p.exercises['2.1']!.attempts).toBe(3);
  });

  it('resumes at the chosen exercise, or the first one not passed after it', () => {
    const file = tempFile();
    const [first, second] = wb.exercises;
    expect(currentExercise(wb, loadProgress(file))).toBe(first);
    updateProgress((p) => (p.current = second!.id), file);
    expect(currentExercise(wb, loadProgress(file))).toBe(second);
    recordResult(second!.id, true, file);
    expect(currentExercise(wb, loadProgress(file))?.id).not.toBe(second!.id);
  });

  it('moves a progress file of the wrong shape aside too', () => {
    const file = tempFile();
    writeFileSync(file, JSON.stringify({ version: 1, exercises: { '2.1': { status: 'done', attempts: -1 } } }));
    expect(loadProgress(file).exercises).toEqual({});
    expect(readdirSync(path.dirname(file)).some((f) => f.startsWith('progress.json.unreadable-'))).toBe(true);
  });

  it('moves an unreadable progress file aside instead of losing it', () => {
    const file = tempFile();
    writeFileSync(file, '{ not json');
    expect(loadProgress(file).exercises).toEqual({});
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(path.dirname(file)).some((f) => f.startsWith('progress.json.unreadable-'))).toBe(true);
  });
});

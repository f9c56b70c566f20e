import { describe, expect, it } from 'vitest';
import { compareVersions } from '../runner/broker/types.js';
import { explainError } from '../runner/check/explain-error.js';
import { judge } from '../runner/selfcheck.js';
import { loadManifest } from '../runner/manifest/load.js';
import type { Verdict } from '../runner/check/verdict.js';

describe('broker versions', () => {
  it('compare numerically, not as text', () => {
    expect(compareVersions('3.10.8', '3.9')).toBeGreaterThan(0);
    expect(compareVersions('3.10.8', '4.0')).toBeLessThan(0);
    expect(compareVersions('4.0.0', '4.0')).toBe(0);
  });
});

describe('errors explained to a beginner', () => {
  it.each([
    ['connect ECONNREFUSED 127.0.0.1:5672', /broker is not running/],
    ["Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message \"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'hello'\"", /different 'x-queue-type'/],
    ['Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - unknown delivery tag 1"', /acknowledged twice/],
    ["ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN", /refused the login/],
    ['TODO: finish send()', /still the starter/],
  ])('%s', (message, why) => {
    expect(explainError('send()', new Error(message)).why).toMatch(why);
  });
});

describe('the self-check judge', () => {
  const wb = loadManifest();
  const base: Verdict = { id: '2.1', title: 't', target: 'wrong', variant: 'classic-queue', targetPath: 'x', status: 'failed', steps: [], notes: [], durationMs: 1 };
  it('accepts a known-wrong variant failing with its expected message, and nothing else', () => {
    expect(judge(wb, { ...base, finding: { summary: 'The queue "hello" is a classic queue, not a quorum queue.' } })).toBeUndefined();
    expect(judge(wb, { ...base, finding: { summary: 'something else' } })).toMatch(/does not mention/);
    expect(judge(wb, { ...base, status: 'passed' })).toMatch(/passes its check/);
    expect(judge(wb, { ...base, target: 'solution', status: 'failed', finding: { summary: 'x' } })).toMatch(/solution fails/);
    expect(judge(wb, { ...base, target: 'exercise', status: 'passed' })).toMatch(/starter passes/);
  });
  it('requires an alternative solution to pass, and says which style failed', () => {
    const ok: Verdict = { ...base, target: 'ok', variant: 'ok-confirm-callback', status: 'passed' };
    expect(judge(wb, ok)).toBeUndefined();
    expect(judge(wb, { ...ok, status: 'failed', finding: { summary: 'x' } })).toMatch(/alternative solution "ok-confirm-callback" \(.*waitForConfirms.*\) fails: x/);
  });
});

// A learner's code that hangs, throws, exits or leaks gets a clear verdict within the
// check's time bound, and leaves no vhost or connection behind.
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { loadManifest } from '../runner/manifest/load.js';
import { runCheck } from '../runner/check/run.js';
import { managementFor } from '../runner/broker/management.js';

const broker = inject('broker');
const exercise = { ...loadManifest().exercise('2.1')!, timeoutMs: 2000 };
const fixture = (name: string) => path.join(import.meta.dirname, 'fixtures', `${name}.ts`);

async function check(name: string) {
  const started = Date.now();
  const verdict = await runCheck({ exercise, target: 'wrong', variant: name, targetPath: fixture(name) }, broker);
  const vhosts = (await managementFor(broker).vhosts()).map((v) => v.name);
  return { verdict, elapsed: Date.now() - started, vhostLeft: vhosts.includes(verdict.vhost!) };
}

describe('the sandbox contains whatever the learner code does', () => {
  it.each([
    ['sync-loop', /did not finish within 2 s; the check was at: called send/],
    ['never-resolves', /did not finish within 2 s; the check was at: called send/],
    ['throws-at-import', /could not be loaded: broken at the top level/],
    ['exits', /ended the process \(process\.exit\(3\)\)/],
    ['leaks-and-crashes', /crashed the process with an unhandled error: boom from a timer/],
  ])('%s', async (name, summary) => {
    const { verdict, elapsed, vhostLeft } = await check(name);
    expect(verdict.status).toBe('failed');
    expect(verdict.finding?.summary).toMatch(summary);
    expect(elapsed).toBeLessThan(exercise.timeoutMs + 3000);
    expect(vhostLeft).toBe(false);
  });
});

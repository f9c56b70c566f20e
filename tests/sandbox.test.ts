// A learner's code that hangs, throws, exits or leaks gets a clear verdict within the
// check's time bound, and leaves no vhost or connection behind. An error in the checker's
// own steps that the learner's code provoked is a failed verdict that names the cause; only a
// real bug in a check is an error, with a report. And the learner sees what their code printed.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { loadManifest, type Exercise } from '../runner/manifest/load.js';
import { keepWorkerWarm, runCheck } from '../runner/check/run.js';
import { formatVerdict, OUTPUT_SHOWN } from '../runner/check/report.js';
import { exitCodeFor } from '../runner/commands/check.js';
import { ManagementError, managementFor } from '../runner/broker/management.js';
import { classifyCheckError } from '../runner/check/classify-error.js';
import { EXIT } from '../runner/exit-codes.js';

const broker = inject('broker');
const manifest = loadManifest();
const exercise = { ...manifest.exercise('2.1')!, timeoutMs: 2000 };
const fixture = (name: string) => path.join(import.meta.dirname, 'fixtures', `${name}.ts`);
const fixtureCheck = (name: string) => path.join(import.meta.dirname, 'fixtures', 'checks', `${name}.check.ts`);
const shown = (file: string) => path.relative(process.cwd(), file);

async function check(name: string, ex: Exercise = exercise) {
  const started = Date.now();
  const verdict = await runCheck({ exercise: ex, target: 'wrong', variant: name, targetPath: fixture(name) }, broker);
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

describe("the learner's errors point into the learner's own file", () => {
  it.each([
    ['throws-at-import', 'throws-at-import.ts:2:7'],
    ['leaks-and-crashes', 'leaks-and-crashes.ts:8:11'],
    ['prints-and-throws', 'prints-and-throws.ts:6:9'],
  ])('%s', async (name, at) => {
    const { verdict } = await check(name);
    expect(verdict.finding?.at).toBe(shown(fixture(name)).replace(/[^/]+$/, at));
    expect(JSON.stringify(verdict)).not.toContain('.workbook/build');
  });

  it('"run it on its own" names the source file, not the compiled one', async () => {
    for (const name of ['sync-loop', 'throws-at-import']) {
      const { verdict } = await check(name);
      expect(verdict.finding?.fix).toContain(`npx tsx ${shown(fixture(name))}`);
    }
  });
});

describe("an error in the checker's own steps, provoked by the learner's code, is the learner's failure", () => {
  const withCheck = (id: string, checkName?: string): Exercise => {
    const ex = manifest.exercise(id)!;
    return checkName ? { ...ex, checkPath: fixtureCheck(checkName) } : ex;
  };
  it.each([
    // The checker cannot look up a queue the learner's connection holds exclusively (405).
    ['exclusive-queue', withCheck('2.2'), /exclusive queue is still held by your connection.*405 RESOURCE_LOCKED/],
    // The checker finds the queue gone: the learner made it auto-delete (404).
    ['auto-delete-queue', withCheck('2.2'), /queue "tasks" is missing.*404 NOT_FOUND/],
    // The checker may not publish to an internal exchange (403). Check 3.1 names it itself; the runner's
    // classification would say "declared it internal" if it did not.
    ['internal-exchange', withCheck('3.1'), /declared it internal.*403 ACCESS_REFUSED|was declared internal, so nobody can publish to it.*403/],
    // The checker's own declaration is refused: the learner declared the queue with other arguments (406).
    ['other-arguments', withCheck('2.1', 'declares-after'), /declared the queue "hello" with other arguments than the exercise expects \('x-max-length'\).*406 PRECONDITION_FAILED/],
  ])('%s', async (name, ex, summary) => {
    const { verdict, vhostLeft } = await check(name, ex);
    expect(verdict.status).toBe('failed');
    expect(verdict.finding?.summary).toMatch(summary);
    expect(verdict.finding?.fix).toBeTruthy();
    expect(vhostLeft).toBe(false);
  });
});

describe('errors from the broker, sorted without a broker', () => {
  const ui = (kind: string, name?: string) => `ui/${kind}/${name ?? ''}`;
  const closed = (reason: string) => Object.assign(new Error('Channel closed'), { name: 'IllegalOperationError', stackAtStateChange: `Stack capture: ${reason}\n    at x` });
  it.each([
    // amqplib's next call on a channel the broker closed only says "Channel closed"; the reason is in its stack capture.
    [closed('Channel closed by server: 405 (RESOURCE-LOCKED) with message "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue \'q\' in vhost \'v\'"'), undefined, 'learner', /exclusive queue is still held/],
    // A confirm channel's waitForConfirms only says "channel closed": the reason is the last error the checker's channels recorded.
    [new Error('channel closed'), new Error('Channel closed by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - cannot publish to internal exchange \'x\' in vhost \'v\'"'), 'learner', /declared it internal/],
    [new Error('Channel ended, no reply will be forthcoming'), new Error('Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - Closed via management plugin"'), 'learner', /connection to the broker was closed under it/],
    [new Error('Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - broker forced connection closure with reason \'shutdown\'"'), undefined, 'environment', /stopped answering/],
    [new ManagementError('PUT /policies/v/p failed: 404 {"error":"Object Not Found"}', 404), undefined, 'learner', /it is missing/],
    [new ManagementError('management API at http://localhost:15672 is unreachable (ECONNREFUSED)'), undefined, 'environment', /stopped answering/],
    [new TypeError("Cannot read properties of undefined (reading 'name')"), undefined, 'bug', undefined],
  ])('%s', (err, lastBrokerError, kind, summary) => {
    const sorted = classifyCheckError(err, { lastBrokerError, ui });
    expect(sorted.kind).toBe(kind);
    if (summary) expect('finding' in sorted && sorted.finding.summary).toMatch(summary);
  });
});

describe('a bug in a check', () => {
  it('is an error naming the exercise, with a saved report, and exit code 2', async () => {
    const { verdict } = await check('other-arguments', { ...exercise, checkPath: fixtureCheck('buggy') });
    expect(verdict.status).toBe('error');
    expect(verdict.finding?.summary).toMatch(/^Bug in the check for exercise 2\.1: Cannot read properties of undefined \(reading 'name'\)/);
    const report = verdict.finding!.report!;
    try {
      expect(verdict.finding?.fix).toContain(path.relative(process.cwd(), report));
      expect(path.basename(report)).toMatch(/^2\.1-.+\.json$/);
      const saved = JSON.parse(readFileSync(report, 'utf8'));
      expect(saved).toMatchObject({ exercise: '2.1', targetPath: shown(fixture('other-arguments')), brokerVersion: broker.version, nodeVersion: process.version });
      expect(saved.error).toMatch(/buggy\.check\.ts:7:\d+/);
      expect(saved.steps).toEqual([expect.stringMatching(/about to trip over its own feet$/)]);
      expect(Date.parse(saved.timestamp)).toBeGreaterThan(Date.now() - 60_000);
      expect(exitCodeFor([verdict])).toBe(EXIT.ENVIRONMENT);
    } finally {
      if (existsSync(report)) rmSync(report);
    }
  });
});

describe('what the learner code printed', () => {
  const printed = ['connecting to', 'something looks wrong', ...Array.from({ length: 10 }, (_, i) => `step ${i + 1}`)];

  it('comes with the verdict: the last lines under a failure, all of them with --verbose', async () => {
    const { verdict } = await check('prints-and-throws');
    expect(verdict.status).toBe('failed');
    const output = verdict.output!;
    expect(output).toHaveLength(printed.length);
    for (const line of printed) expect(output.some((l) => l.startsWith(line))).toBe(true);
    expect(output.at(-1)).toBe('step 10'); // printed just before the throw: it still arrives

    const text = formatVerdict(verdict);
    expect(text).toContain(`the last ${OUTPUT_SHOWN} of ${printed.length} lines`);
    expect(text).toContain('step 10');
    expect(text).not.toMatch(/step 2\b/);
    expect(formatVerdict(verdict, { verbose: true })).toMatch(/step 2\b/);
    expect(formatVerdict({ ...verdict, status: 'passed', finding: undefined })).not.toContain('Your code printed');
    expect(formatVerdict({ ...verdict, status: 'passed', finding: undefined }, { verbose: true })).toContain('step 10');
  });

  it('from a warm spare worker holds only what the check ran', async () => {
    keepWorkerWarm();
    await new Promise((r) => setTimeout(r, 300)); // let the spare start up before it gets the job
    const { verdict } = await check('prints-and-throws');
    expect(verdict.output).toHaveLength(printed.length);
    expect(verdict.output!.at(-1)).toBe('step 10');
  });
});

// The commands a learner types, with their exit codes: 0 ok, 1 a check failed,
// 2 the environment is unusable, 64 bad usage.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify, stripVTControlCharacters as plain } from 'node:util';
import { describe, expect, inject, it } from 'vitest';

const broker = inject('broker');
const root = path.resolve(import.meta.dirname, '..');
// The test run may force its own broker source; the commands under test must find it through RABBITMQ_URL.
const { WORKBOOK_BROKER: _forced, ...inherited } = process.env;

async function cli(args: string[], env: Record<string, string> = {}) {
  const state = mkdtempSync(path.join(tmpdir(), 'wb-cli-'));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', ...args], {
      cwd: root,
      // picocolors turns colours on whenever CI is set; the tests judge the words, so they read plain text.
      // Point the runner at the test broker, whatever its ports, and keep progress out of the real state.
      env: { ...inherited, WORKBOOK_STATE_DIR: state, RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl, ...env },
    });
    return { code: 0, out: plain(stdout + stderr), stdout: plain(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: plain(e.stdout + e.stderr), stdout: plain(e.stdout) };
  }
}

describe('the command line', () => {
  it('check on a starter fails with exit 1 and a verdict that speaks to a beginner', async () => {
    const { code, out } = await cli(['check', '2.1']);
    expect(code).toBe(1);
    expect(out).toMatch(/still the starter/);
    expect(out).toMatch(/npm run hint 2\.1/);
  });

  it('check --solutions --json passes with exit 0 and machine-readable verdicts', async () => {
    const { code, stdout } = await cli(['check', '2.1', '2.3', '--solutions', '--json']);
    expect(code).toBe(0);
    const json = JSON.parse(stdout.slice(stdout.indexOf('{')));
    expect(json.verdicts.map((v: { status: string }) => v.status)).toEqual(['passed', 'passed']);
  });

  it('an unknown id is bad usage (64) with the nearest ids', async () => {
    const { code, out } = await cli(['check', '2.9']);
    expect(code).toBe(64);
    expect(out).toMatch(/Did you mean/);
  });

  it('an unknown option is bad usage (64)', async () => {
    expect((await cli(['check', '--nope'])).code).toBe(64);
  });

  it('an unreachable broker is an unusable environment (2), with the ways to get one', async () => {
    const { code, out } = await cli(['check', '2.1'], { RABBITMQ_URL: 'amqp://localhost:1', RABBITMQ_MANAGEMENT_URL: 'http://localhost:1' });
    expect(code).toBe(2);
    expect(out).toMatch(/management API at http:\/\/localhost:1 does not answer/);
  });

  it('hint gives one more hint each time', async () => {
    const state = { WORKBOOK_STATE_DIR: mkdtempSync(path.join(tmpdir(), 'wb-cli-')) };
    expect((await cli(['hint', '2.1'], state)).out).toMatch(/Hint 1\/3/);
    const second = (await cli(['hint', '2.1'], state)).out;
    expect(second).toMatch(/Hint 2\/3/);
  });

  it('progress lists every exercise and where to resume', async () => {
    const { code, out } = await cli(['progress']);
    expect(code).toBe(0);
    expect(out).toMatch(/2\.1 +Send a message/);
    expect(out).toMatch(/Resume with: .*npm run watch/);
  });

  it('solution refuses before the exercise has passed, unless forced', async () => {
    expect((await cli(['solution', '2.1'])).code).toBe(1);
    const forced = await cli(['solution', '2.1', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.out).toMatch(/createConfirmChannel/);
  });

  it('broker status prints the URLs and the version', async () => {
    const { code, out } = await cli(['broker', 'status']);
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`RabbitMQ ${broker.version.replace(/\./g, '\\.')}`));
    expect(out).toMatch(/Management UI: http/);
  });
});

describe('reset', () => {
  it('restores the starter from git, keeps a backup of the learner file, and forgets its progress', async () => {
    // In a throwaway clone: never touch the exercises of the checkout running the tests.
    const clone = mkdtempSync(path.join(tmpdir(), 'wb-reset-'));
    await promisify(execFile)('git', ['clone', '--quiet', root, clone]);
    symlinkSync(path.join(root, 'node_modules'), path.join(clone, 'node_modules'));
    const file = path.join(clone, 'exercises/02-hello-world/01-send.ts');
    const starter = readFileSync(file, 'utf8');
    writeFileSync(file, '// my attempt\n');
    const state = mkdtempSync(path.join(tmpdir(), 'wb-state-'));
    const { stdout } = await promisify(execFile)(process.execPath, ['runner/start.mjs', 'reset', '2.1'], {
      cwd: clone,
      env: { ...inherited, WORKBOOK_STATE_DIR: state, RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl },
    });
    expect(stdout).toMatch(/Restored the starter/);
    expect(readFileSync(file, 'utf8')).toBe(starter);
    const backups = readdirSync(path.join(state, 'backups'));
    expect(backups).toHaveLength(1);
    expect(readFileSync(path.join(state, 'backups', backups[0]!), 'utf8')).toBe('// my attempt\n');
  });
});

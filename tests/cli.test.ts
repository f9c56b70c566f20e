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

  it('check --json prints nothing but the JSON document on stdout', async () => {
    const { code, stdout } = await cli(['check', '2.1', '--solutions', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).verdicts[0].id).toBe('2.1');
  });

  it('check prints its verdicts in id order, whichever finishes first', async () => {
    const { out } = await cli(['check', '2.3', '2.1', '--solutions']);
    expect(out.indexOf('✓ 2.1')).toBeGreaterThan(-1);
    expect(out.indexOf('✓ 2.1')).toBeLessThan(out.indexOf('✓ 2.3'));
  });

  it('in a pipe, check prints no colour codes and no spinner frames', async () => {
    const { CI: _ci, FORCE_COLOR: _force, ...noColourEnv } = inherited;
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', 'check', '2.1', '--solutions'], {
      cwd: root,
      env: { ...noColourEnv, WORKBOOK_STATE_DIR: mkdtempSync(path.join(tmpdir(), 'wb-cli-')), RABBITMQ_URL: broker.amqpUrl, RABBITMQ_MANAGEMENT_URL: broker.managementUrl },
    });
    expect(stdout + stderr).not.toMatch(/\x1b/);
    expect(stdout).toMatch(/1 passed/);
  });

  it('a missing exercise file gets a sentence and the way back, not an ENOENT stack trace', async () => {
    const manifest = path.join(mkdtempSync(path.join(tmpdir(), 'wb-cli-')), 'manifest.yaml');
    writeFileSync(
      manifest,
      'chapters:\n  - number: 2\n    slug: hello-world\n    title: T\n    exercises:\n      - id: "2.9"\n        file: 09-missing.ts\n        title: Gone\n' +
        '        hints: [h]\n        wrong: [{ name: a, mistake: m, expect: e }, { name: b, mistake: m, expect: e }]\n',
    );
    const { code, out } = await cli(['check', '2.9'], { WORKBOOK_MANIFEST: manifest });
    expect(code).toBe(1);
    expect(out).toMatch(/Your file exercises\/02-hello-world\/09-missing\.ts is missing/);
    expect(out).toMatch(/npm run reset 2\.9 restores the starter/);
    expect(out).not.toMatch(/ENOENT|at \w+ \(/);
  });

  it('a chapter number where one exercise is needed says that it is a chapter, and names its exercises', async () => {
    for (const command of ['hint', 'solution', 'reset']) {
      const { code, out } = await cli([command, '2']);
      expect(code).toBe(64);
      expect(out).toMatch(/2 is a chapter; name one of its exercises: 2\.1, 2\.2/);
    }
  });

  it('progress --json lists every exercise with its status', async () => {
    const state = { WORKBOOK_STATE_DIR: mkdtempSync(path.join(tmpdir(), 'wb-cli-')) };
    await cli(['hint', '2.1'], state);
    const { code, stdout } = await cli(['progress', '--json'], state);
    expect(code).toBe(0);
    const json = JSON.parse(stdout);
    expect(json.total).toBe(json.exercises.length);
    expect(json.exercises.find((e: { id: string }) => e.id === '2.1')).toMatchObject({ status: 'pending', hintsShown: 1, attempts: 0 });
  });

  it('every chapter renders with no warning; code included from files is highlighted', async () => {
    for (const n of ['1', '2', '3', '4', '5', '6', '13']) {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['runner/start.mjs', 'chapter', n, '--no-demo'], {
        cwd: root,
        env: { ...inherited, FORCE_COLOR: '1', WORKBOOK_STATE_DIR: mkdtempSync(path.join(tmpdir(), 'wb-cli-')) },
      });
      expect(stderr).toBe('');
      expect(stdout).not.toMatch(/Could not find the language/);
    }
    const { stdout } = await promisify(execFile)(process.execPath, ['runner/start.mjs', 'chapter', '1', '--no-demo'], { cwd: root, env: { ...inherited, FORCE_COLOR: '1' } });
    // "const" of a TypeScript block, in the keyword colour (blue).
    expect(stdout).toContain('\x1b[34mconst\x1b[39m');
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

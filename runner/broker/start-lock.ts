// A lock file around the start of the private node, so that two commands in two shells
// (`watch` in one, `check 2` in the other) never boot two nodes of the same name: the
// second waits for the first, then finds the node running.
//
// The file is created atomically (a link(2) to a file already written: only one process
// can create it) and holds the owner's pid and start time. It is stale, and removed, when that process is gone (killed while
// starting the node) or when it is older than any start may take.
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

interface Holder {
  pid: number;
  at: number;
}

export interface LockOptions {
  /** A start takes at most 90 s (private-node.ts); a lock older than this is left over. */
  staleMs?: number;
  /** Called every ~100 ms while another process holds the lock, with the time waited. */
  onWait?: (waitedMs: number, holder: Holder) => void;
}

/** Runs fn while holding the lock file; waits while another live process holds it. */
export async function withStartLock<T>(file: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const staleMs = opts.staleMs ?? 150_000;
  mkdirSync(path.dirname(file), { recursive: true });
  const started = Date.now();
  while (!tryCreate(file)) {
    const text = readText(file);
    const holder = parse(text);
    if (text !== undefined && (!holder || !alive(holder.pid) || Date.now() - holder.at > staleMs)) {
      // Re-read right before removing: another waiter may have replaced the stale lock with its own.
      if (readText(file) === text) rmSync(file, { force: true });
      continue;
    }
    if (holder) opts.onWait?.(Date.now() - started, holder);
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

/** Writes our pid to a file of our own, then links it to the lock's name: a reader never sees a half-written lock. */
function tryCreate(file: string): boolean {
  const mine = `${file}.${process.pid}`;
  writeFileSync(mine, JSON.stringify({ pid: process.pid, at: Date.now() } satisfies Holder));
  try {
    linkSync(mine, file); // fails with EEXIST when the lock is taken
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(mine, { force: true });
  }
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined; // released meanwhile
  }
}

function parse(text: string | undefined): Holder | undefined {
  try {
    const h = JSON.parse(text ?? '') as Holder;
    return Number.isInteger(h.pid) && typeof h.at === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` still runs (EPERM: it does, under another user). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

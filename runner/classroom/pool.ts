// A classroom learner's checks borrow a vhost from their pool instead of creating one (a
// learner's account may not create vhosts). A lock file per vhost, in the learner's state
// folder, keeps two checks (of one run, or of `watch` in one terminal and `check` in another)
// out of the same vhost; a lock whose process is gone is taken over. The vhost is emptied
// before the check (whatever a killed run left) and after it.
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { STATE_DIR } from '../paths.js';
import type { ManagementClient } from '../broker/management.js';
import type { ClassroomSeat } from '../broker/types.js';
import { emptyVhost } from './empty.js';
import { alive } from '../broker/start-lock.js';

const lockDir = () => path.join(STATE_DIR, 'classroom-locks');
const lockFile = (vhost: string) => path.join(lockDir(), `${encodeURIComponent(vhost)}.lock`);

/** How long a check waits for a free vhost of the pool before it gives up (other checks of the learner hold them all). */
const WAIT_MS = 120_000;

export interface Borrowed {
  vhost: string;
  /** Empties the vhost and gives it back to the pool. */
  giveBack(): Promise<void>;
}

/** Takes a free vhost of the pool, waiting while all are in use, and empties it. */
export async function borrowVhost(seat: ClassroomSeat, mgmt: ManagementClient): Promise<Borrowed> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const vhost = seat.pool.find(tryLock);
    if (vhost) {
      try {
        await emptyVhost(mgmt, vhost);
      } catch (err) {
        unlock(vhost);
        throw err;
      }
      let given = false;
      return {
        vhost,
        async giveBack() {
          if (given) return;
          given = true;
          try {
            await emptyVhost(mgmt, vhost);
          } finally {
            unlock(vhost);
          }
        },
      };
    }
    if (Date.now() > deadline) {
      throw new Error(`every sandbox vhost of your classroom account (${seat.pool.join(', ')}) stayed in use for ${WAIT_MS / 1000} s: other checks of yours are running (npm run watch in another terminal?)`);
    }
    await sleep(100);
  }
}

/** Creates the lock file, or takes over one whose process is gone. */
function tryLock(vhost: string): boolean {
  mkdirSync(lockDir(), { recursive: true });
  const file = lockFile(vhost);
  for (let i = 0; i < 2; i++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: number;
    try {
      holder = Number(readFileSync(file, 'utf8').trim());
    } catch {
      continue; // released meanwhile: try again
    }
    // An empty file is a lock being written this instant by another process.
    if (!holder || alive(holder)) return false;
    try {
      unlinkSync(file); // its process is gone (killed mid-check): the vhost is emptied before use anyway
    } catch {
      /* another process took it over first */
    }
  }
  return false;
}

function unlock(vhost: string): void {
  try {
    unlinkSync(lockFile(vhost));
  } catch {
    /* already gone */
  }
}

// The sandbox of a learner's last failed check stays in the broker so the verdict's
// management UI links lead somewhere. One per exercise; the next check replaces it.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { STATE_DIR } from '../paths.js';
import { managementFor } from '../broker/management.js';
import type { BrokerInfo } from '../broker/types.js';

const file = path.join(STATE_DIR, 'kept-vhosts.json');

function read(): Record<string, string> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

export const keptVhosts = {
  all(): string[] {
    return Object.values(read());
  },
  /** Exercise id → its kept vhost (the web reader names each by its exercise). */
  byExercise(): Record<string, string> {
    return read();
  },
  /** Deletes the exercise's previously kept vhost and remembers `vhost` (if any) instead. */
  async replace(id: string, vhost: string | undefined, broker: BrokerInfo): Promise<void> {
    const kept = read();
    const old = kept[id];
    if (old && old !== vhost) await managementFor(broker).deleteVhost(old).catch(() => undefined);
    if (vhost) kept[id] = vhost;
    else delete kept[id];
    mkdirSync(STATE_DIR, { recursive: true });
    writeFileSync(file, JSON.stringify(kept, null, 2));
  },
};

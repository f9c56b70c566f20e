// What the live topology can show, and which vhost that is right now. A vhost named outright
// (a demo's), or an exercise followed across its checks: the sandbox of a check of the
// learner's code while one runs, else the sandbox the last failed check kept. A check's
// sandbox is named wb-<host>-<pid>-<n>-<id>-exercise (runner/sandbox/sandbox.ts, check/run.ts).
export type Source = { kind: 'vhost'; vhost: string } | { kind: 'exercise'; id: string };

export interface Choice {
  source: Source;
  /** Why it is listed: "chapter 3's demo", "your checks of 3.5". */
  label: string;
}

export function sourceKey(s: Source): string {
  return s.kind === 'vhost' ? `vhost:${s.vhost}` : `exercise:${s.id}`;
}

/** The query string that selects a source on the topology page. */
export function sourceQuery(s: Source): string {
  return s.kind === 'vhost' ? `vhost=${encodeURIComponent(s.vhost)}` : `exercise=${encodeURIComponent(s.id)}`;
}

export function sameSource(a: Source, b: Source): boolean {
  return sourceKey(a) === sourceKey(b);
}

export interface Resolved {
  vhost?: string;
  /** For the page: what this vhost is. */
  note: string;
}

/** The vhost an exercise's checks use now: a running check's sandbox first, then the one a failed check kept. */
export function resolveExercise(id: string, vhosts: string[], kept: Record<string, string>): Resolved {
  const running = new RegExp(`^wb-[0-9a-f]{4}-\\d+-\\d+-${id.replace(/\./g, '\\.')}-exercise$`);
  const live = vhosts.filter((v) => running.test(v) && v !== kept[id]);
  if (live.length) return { vhost: live[live.length - 1], note: `a check of ${id} is running` };
  const keptVhost = kept[id];
  if (keptVhost && vhosts.includes(keptVhost)) return { vhost: keptVhost, note: `kept by your last failed check of ${id}` };
  return { note: `No check of ${id} is running, and none failed: this shows the next one (npm run check ${id}).` };
}

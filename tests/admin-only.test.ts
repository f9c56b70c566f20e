// The list of checks a classroom account cannot run (runner/classroom/admin-only.ts) is kept by
// hand. This keeps it true: a check that calls a management endpoint only an administrator may
// use must be on it, and nothing is on it without a reason an author can see.
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadManifest } from '../runner/manifest/load.js';
import { needsAdministrator } from '../runner/classroom/admin-only.js';

// Vhosts, users, permissions and limits: what the `management` and `policymaker` tags do not allow.
const ADMIN_CALL = /[`'"]\/(?:vhosts|users|permissions|topic-permissions|vhost-limits|user-limits)\/|\b(?:createVhost|deleteVhost)\(/;

const wb = loadManifest();

function adminCallIn(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8').split('\n').find((line) => ADMIN_CALL.test(line))?.trim();
}

/** The administrator-only call of a check: in its own file, or in a function it imports from its chapter's support.ts. */
function adminCallOf(checkPath: string): string | undefined {
  const own = adminCallIn(checkPath);
  if (own) return own;
  const support = path.join(path.dirname(checkPath), 'support.ts');
  if (!existsSync(support)) return undefined;
  const imported = /import\s*\{([^}]*)\}\s*from\s*'\.\/support\.js'/.exec(readFileSync(checkPath, 'utf8'))?.[1]?.split(',').map((n) => n.trim()) ?? [];
  // support.ts cut at each exported function: a piece holds that function's body.
  const pieces = readFileSync(support, 'utf8').split(/^(?=export (?:async )?function )/m);
  for (const piece of pieces) {
    const name = /^export (?:async )?function (\w+)/.exec(piece)?.[1];
    const call = piece.split('\n').find((line) => ADMIN_CALL.test(line));
    if (name && call && imported.includes(name)) return `${name}() in support.ts: ${call.trim()}`;
  }
  return undefined;
}

describe('checks that need an administrator', () => {
  it('every check calling an administrator-only endpoint (itself or through its chapter support.ts) is skipped for a classroom account', () => {
    const missing = wb.exercises.flatMap((e) => {
      const call = adminCallOf(e.checkPath);
      return call && !needsAdministrator(e) ? [`${e.id}: ${call}`] : [];
    });
    expect(missing).toEqual([]);
  });

  it('every exercise on the hand-kept list has a check that calls such an endpoint, or restarts the broker, or runs on the cluster', () => {
    const stale = wb.exercises.filter((e) => needsAdministrator(e) && !e.restartsBroker && !e.cluster && !adminCallOf(e.checkPath)).map((e) => e.id);
    expect(stale).toEqual([]);
  });
});

// Checks a classroom account cannot run: their lesson needs what only an administrator may
// do on a shared broker. They are skipped, never failed (runner/check/run.ts), and the README
// lists them. An author whose new check calls one of these management API endpoints (vhosts,
// permissions, vhost or user limits, users) adds its exercise here; tests/admin-only.test.ts
// fails until they do.
import type { Exercise } from '../manifest/load.js';

/** Exercises whose checks call administrator-only endpoints, and what each does. */
const ADMIN_CHECKS: Record<string, string> = {
  '1.3': 'it creates a second vhost for your report to read',
  '13.3': "it takes your user's permissions away for a moment, to see the relay wait and retry",
  '13.6': "it takes your user's permissions away for a moment, to see the receiver wait and retry",
};

export const NEEDS_ADMIN = 'needs administrator rights, which a classroom account does not have (ask your instructor)';

/** Why a check needs administrator rights, or undefined when a classroom account can run it. */
export function needsAdministrator(exercise: Exercise): string | undefined {
  if (exercise.restartsBroker) return 'it restarts the broker, which every learner of the class shares';
  if (exercise.cluster) return 'it stops and starts nodes of the local cluster, and sets vhost limits';
  return ADMIN_CHECKS[exercise.id];
}

// The check events, as the dashboard accepts them. Learners write them (runner/classroom/events.ts),
// so nothing in them is trusted: the shape and sizes are checked here, the learner is the one the
// broker vouches for (the user_id property), and the exercise must be one of the workbook's.
import { z } from 'zod';
import { SUMMARY_MAX, type CheckEvent } from '../classroom/events.js';

/** A message bigger than this is refused before it is parsed. */
export const EVENT_MAX_BYTES = 4096;

export const checkEventSchema = z.strictObject({
  v: z.literal(1),
  learner: z.string().regex(/^s\d{2,3}$/),
  exercise: z.string().regex(/^\d{1,2}\.\d{1,2}$/),
  verdict: z.enum(['passed', 'failed', 'skipped', 'broken']),
  at: z.iso.datetime({ offset: true }),
  durationMs: z.number().int().min(0).max(24 * 3_600_000),
  summary: z.string().max(SUMMARY_MAX),
  contractObserved: z.number().int().min(0).max(100).optional(),
});

// The learner's runner and the dashboard must agree on the shape.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const agree: Same<z.infer<typeof checkEventSchema>, CheckEvent> = true;
void agree;

export type Accepted = { ok: true; event: CheckEvent } | { ok: false; reason: string };

/**
 * Parses one message of the events exchange. `users` maps each learner's broker user to the
 * learner's id (s01); `userId` is the message's user_id property, which the broker checked.
 */
export function acceptEvent(content: Buffer, userId: string | undefined, users: Map<string, string>, exerciseIds: Set<string>): Accepted {
  if (content.length > EVENT_MAX_BYTES) return { ok: false, reason: `${content.length} bytes, more than ${EVENT_MAX_BYTES}` };
  const learner = userId ? users.get(userId) : undefined;
  if (!learner) return { ok: false, reason: userId ? `user_id "${userId}" is not a learner of this class` : 'no user_id property (not sent by a workbook runner)' };
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    return { ok: false, reason: `from ${learner}: not JSON` };
  }
  const parsed = checkEventSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: `from ${learner}: ${printable(parsed.error.issues.slice(0, 2).map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; '))}` };
  const event = parsed.data;
  if (event.learner !== learner) return { ok: false, reason: `from ${learner}: claims to be ${event.learner}` };
  if (!exerciseIds.has(event.exercise)) return { ok: false, reason: `from ${learner}: no exercise ${event.exercise} in the workbook` };
  return { ok: true, event };
}

/** Zod's messages may quote a key the learner chose: no terminal control characters, one short line. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 199)}…` : clean;
}

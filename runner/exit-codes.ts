// Exit codes of every runner command (documented in the README).
export const EXIT = {
  OK: 0,
  /** A check failed. */
  FAILED: 1,
  /** The environment is unusable: no broker, no management API. */
  ENVIRONMENT: 2,
  /** Bad usage: unknown id, unknown option (EX_USAGE from sysexits.h). */
  USAGE: 64,
} as const;

/** An error whose message is for the user and whose exit code is known. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

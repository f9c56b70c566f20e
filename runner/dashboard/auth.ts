// The dashboard has one user, the instructor, with the password of the class file. A login
// gives a random session id in a cookie the page's scripts cannot read (HttpOnly) and other
// sites cannot make the browser send (SameSite=Strict). Failed logins are slowed down, and
// after too many from one address that address is refused for a while.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const COOKIE = 'wb_dashboard';
const SESSION_MS = 12 * 3_600_000;
/** Failed logins allowed per address in WINDOW_MS before it is refused until the window has passed. */
const MAX_FAILURES = 10;
const WINDOW_MS = 15 * 60_000;
/** Every failed login is answered this late: guessing by hand is slow, by script hopeless. */
export const FAILURE_DELAY_MS = 1_000;

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export class Auth {
  private readonly expected: Buffer;
  private readonly sessions = new Map<string, number>();
  private readonly failures = new Map<string, number[]>();

  constructor(password: string) {
    this.expected = digest(password);
  }

  /** Compares in constant time (both sides hashed first, so lengths never differ). */
  passwordMatches(given: unknown): boolean {
    return typeof given === 'string' && given.length <= 1024 && timingSafeEqual(digest(given), this.expected);
  }

  /** Seconds until `address` may try again, or 0 when it may now. */
  lockedFor(address: string, now = Date.now()): number {
    const recent = (this.failures.get(address) ?? []).filter((t) => now - t < WINDOW_MS);
    this.failures.set(address, recent);
    return recent.length >= MAX_FAILURES ? Math.ceil((recent[0]! + WINDOW_MS - now) / 1000) : 0;
  }

  failed(address: string, now = Date.now()): void {
    this.failures.set(address, [...(this.failures.get(address) ?? []), now]);
  }

  startSession(now = Date.now()): { id: string; cookie: string } {
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, now + SESSION_MS);
    return { id, cookie: `${COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}` };
  }

  endSession(cookieHeader: string | undefined): string {
    const id = sessionId(cookieHeader);
    if (id) this.sessions.delete(id);
    return `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }

  isLoggedIn(cookieHeader: string | undefined, now = Date.now()): boolean {
    const id = sessionId(cookieHeader);
    const until = id ? this.sessions.get(id) : undefined;
    if (!until) return false;
    if (until < now) {
      this.sessions.delete(id!);
      return false;
    }
    return true;
  }
}

function sessionId(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=') || undefined;
  }
  return undefined;
}

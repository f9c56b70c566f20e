// `classroom -- lock-guest`: can a learner log in as `guest`, or anonymously, from another
// machine? And, with the instructor's --delete-guest only, delete `guest` when that is safe.
//
// RabbitMQ creates `guest` (password `guest`, administrator) on a new broker and lets it log
// in from the broker's own machine only (`loopback_users`). That protects a class only while
// nobody changed it: the community Docker image, for one, lets guest in from anywhere. And
// from 4.0 the ANONYMOUS login is on by default and logs in as `guest`. A learner who can log
// in as guest is an administrator of the class's broker.
//
// The management API does not show `loopback_users`, so this asks the broker the way a
// learner would: it logs in as guest/guest, and anonymously, from this machine's network
// address (not localhost), and reads the answer.
import { networkInterfaces } from 'node:os';
import amqp from 'amqplib';
import { amqpHandshake } from '../broker/probe.js';
import type { ManagementClient } from '../broker/management.js';

export type GuestState =
  /** There is no user `guest`. */
  | 'absent'
  /** `guest` exists, and the broker refuses it from the network because it is loopback-only. */
  | 'loopback-only'
  /** `guest` exists, but not with the password `guest` (from the network, at least). */
  | 'password-changed'
  /** Anyone who reaches the broker logs in as guest/guest, or anonymously. */
  | 'open'
  /** No network address to try from (the broker is on this machine), or no answer that says why guest was refused. */
  | 'untested';

export interface GuestReport {
  state: GuestState;
  /** The address the logins were tried from (learners' point of view). */
  from?: string;
  /** What the broker answered, one line each: management, AMQP guest/guest, AMQP anonymous. */
  answers: string[];
}

const LOCAL = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** This machine's first non-loopback IPv4 address, if any. */
export function networkAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/** The same URL, with its host replaced by one the broker sees as "not loopback". */
function fromNetwork(url: string, address: string): string {
  const u = new URL(url);
  if (LOCAL.has(u.hostname) || u.hostname.startsWith('127.')) u.hostname = address;
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/+$/, '');
}

export async function probeGuest(admin: ManagementClient, amqpUrl: string, managementUrl: string): Promise<GuestReport> {
  const user = await admin.request<{ name: string }>('GET', '/users/guest');
  if (!user) return { state: 'absent', answers: ['the broker has no user "guest"'] };
  const host = new URL(managementUrl).hostname;
  const local = LOCAL.has(host) || host.startsWith('127.');
  const address = local ? networkAddress() : host;
  if (!address) return { state: 'untested', answers: ['this machine has no network address other than localhost to try from'] };

  const answers: string[] = [];
  // The management API says why it refuses: "User can only log in via localhost".
  const mgmt = fromNetwork(managementUrl, address);
  const res = await fetch(`${mgmt}/api/whoami`, { headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` } }).catch((err: Error) => err);
  let loopbackOnly = false;
  let loggedIn = false;
  let refused = false;
  if (res instanceof Error) answers.push(`management API at ${mgmt}: unreachable (${res.message})`);
  else {
    const text = await res.text();
    loopbackOnly = /localhost|loopback/i.test(text);
    refused = res.status === 401 && !loopbackOnly;
    loggedIn = res.status === 200;
    answers.push(`management API at ${mgmt}, as guest/guest: ${res.status} ${text.slice(0, 120)}`);
  }
  // AMQP says only ACCESS_REFUSED, but a login that works is a login that works.
  const base = fromNetwork(amqpUrl, address);
  const handshake = await amqpHandshake(base.replace('amqp://', 'amqp://guest:guest@').replace('amqps://', 'amqps://guest:guest@'), '/');
  if (handshake.kind === 'ok' || handshake.kind === 'vhost-refused') loggedIn = true;
  answers.push(`AMQP at ${base}, as guest/guest: ${handshake.kind === 'ok' ? 'logged in' : handshake.kind === 'refused' || handshake.kind === 'vhost-refused' ? handshake.reply : handshake.kind}`);
  const anonymous = await anonymousLogin(base);
  if (anonymous === 'logged in') loggedIn = true;
  answers.push(`AMQP at ${base}, anonymous: ${anonymous}`);

  // A management API that does not answer on the network address leaves the reason of AMQP's refusal unknown.
  const state: GuestState = loggedIn ? 'open' : loopbackOnly ? 'loopback-only' : refused ? 'password-changed' : 'untested';
  return { state, from: address, answers };
}

/**
 * Logs in with SASL ANONYMOUS. RabbitMQ 3.x does not offer it; 4.x does by default, as the
 * user `anonymous_login_user` (guest unless configured).
 */
export async function anonymousLogin(url: string): Promise<string> {
  const credentials = { mechanism: 'ANONYMOUS', username: '', response: () => Buffer.alloc(0) };
  try {
    const conn = await amqp.connect(url, { credentials, timeout: 5_000 } as object);
    await conn.close().catch(() => undefined);
    return 'logged in';
  } catch (err) {
    return `refused: ${(err as Error).message.split('\n')[0]}`;
  }
}

export type GuestDecision = { action: 'none' | 'delete' | 'refuse'; why: string };

/**
 * What lock-guest does. Deleting is the only sure way (an administrator can give itself any
 * permission back), so it needs the instructor's --delete-guest, and it is refused while the
 * runner itself works as guest: the class would lose its only administrator.
 */
export function decideGuest(report: GuestReport, adminUser: string, deleteGuest: boolean): GuestDecision {
  if (report.state === 'absent') return { action: 'none', why: 'There is no user "guest": nobody can log in as guest (nor anonymously, which on 4.x logs in as guest).' };
  if (!deleteGuest) {
    const why = {
      'loopback-only': `"guest" may log in from the broker's own machine only (loopback_users): learners on other machines cannot use it. Learners who work on the broker's machine itself can: delete it with --delete-guest.`,
      'password-changed': '"guest" exists, and its password is no longer "guest". Only whoever knows the new one can use it: delete it with --delete-guest to be sure.',
      open: '"guest" (or an anonymous login) works from the network: every learner can log in as an administrator of this broker. Delete it with --delete-guest.',
      untested: 'Could not tell from the network whether "guest" is loopback-only (no network address here, or no management API answer there): it exists, and may or may not be. Delete it with --delete-guest to be sure.',
    }[report.state];
    return { action: 'none', why };
  }
  if (adminUser === 'guest') {
    return { action: 'refuse', why: 'The runner logs in to this broker as "guest": deleting it would leave the broker without the administrator you use. Make another administrator first (rabbitmqctl add_user admin PASSWORD; rabbitmqctl set_user_tags admin administrator; rabbitmqctl set_permissions -p / admin ".*" ".*" ".*"), set RABBITMQ_URL to it, and run this again.' };
  }
  return { action: 'delete', why: `Deleting "guest": you work as "${adminUser}", an administrator, so the broker keeps one.` };
}

// Proves a broker usable before any check runs: the AMQP port answers, the login works,
// the management API answers for the same broker and lets the user create vhosts. Each
// failure has a cause, a sentence naming the URL (never the password), and a fix, so an
// environment problem is never reported as a mistake in the learner's code.
//
// AMQP is probed with a bare handshake over node:net, not amqplib: it reads the broker's
// reply codes exactly (amqplib reports a refused vhost as "Expected ConnectionOpenOk"),
// can stop after the login, and costs a few milliseconds with no library to load.
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import { amqpPort, type BrokerInfo } from './types.js';

/** Why a broker is not usable. */
export type Cause =
  | 'amqp-unreachable' // nothing accepts connections on the AMQP host:port (ECONNREFUSED, timeout, unknown host)
  | 'amqp-not-amqp' // something answers there, but not AMQP 0-9-1
  | 'amqp-credentials' // 403 ACCESS_REFUSED at login
  | 'vhost-access' // 530 NOT_ALLOWED when opening the vhost, or a user the check vhosts are not given to
  | 'management-unreachable' // nothing answers on the management URL
  | 'management-not-rabbitmq' // an HTTP server answers, but not RabbitMQ's management API (404, not JSON, …)
  | 'management-credentials' // 401 Login failed
  | 'not-administrator' // the user may not create vhosts (needs the administrator tag)
  | 'different-brokers'; // AMQP and the management API belong to two different brokers

/** One probe's outcome: a line of `npm run doctor`, and a cause when it failed. */
export interface ProbeLine {
  what: string;
  ok: boolean;
  /** What was seen, naming the URL. */
  detail: string;
  fix?: string;
  cause?: Cause;
}

export interface ProbeReport {
  lines: ProbeLine[];
  problems: ProbeLine[];
  /** The broker's version, from the management API (or AMQP when the API did not answer). */
  version?: string;
}

/** What the probes need to know about a broker; its version is what they find out. */
export type ProbeTarget = Omit<BrokerInfo, 'version'> & { version?: string };

const TIMEOUT_MS = 5000;

/** Runs every probe at once (a few ms on localhost) and says what is wrong, if anything. */
export async function probeBroker(target: ProbeTarget): Promise<ProbeReport> {
  const [amqp, overview, whoami] = await Promise.all([
    amqpHandshake(target.amqpUrl),
    httpGet(target.managementUrl, '/api/overview', target.username, target.password),
    // In a classroom the learner's vhosts are made for them: what matters is that the user sees them all.
    httpGet(target.managementUrl, target.classroom ? '/api/vhosts' : '/api/whoami', target.username, target.password),
  ]);
  const server = amqp.kind === 'ok' || amqp.kind === 'refused' || amqp.kind === 'vhost-refused' ? amqp.server : undefined;
  const management = managementLines(target, overview, whoami);
  const lines = [
    ...amqpLines(target, amqp),
    ...management.lines,
    ...(server && management.cluster ? [sameBrokerLine(target, server, management.cluster)] : []),
    ...checkVhostsLines(target),
  ];
  return { lines, problems: lines.filter((l) => !l.ok), version: management.cluster?.version ?? server?.version };
}

/** The AMQP port answers and speaks AMQP; the login works (a user without access to "/" still logs in). */
function amqpLines(target: ProbeTarget, amqp: HandshakeResult): ProbeLine[] {
  const env = target.source === 'env';
  const at = redact(target.amqpUrl);
  const user = amqpUserOf(target);
  if (amqp.kind === 'unreachable') {
    return [fail('AMQP port', 'amqp-unreachable', `Nothing answers at ${at} (${amqp.code}): no broker listens on ${hostPort(target.amqpUrl)}.`, env
      ? 'Start the broker, or correct the host and port in RABBITMQ_URL (5672 by default). `npm run broker -- status` shows the broker the workbook runs itself.'
      : 'Start the broker again (npm run broker -- start), or set RABBITMQ_URL to one that runs.')];
  }
  if (amqp.kind === 'not-amqp') {
    return [fail('AMQP port', 'amqp-not-amqp', `Something answers at ${at}, but it does not speak AMQP 0-9-1 (${amqp.detail}).`,
      "Point RABBITMQ_URL at the broker's AMQP port (5672 by default, 5671 with TLS); 15672 is the management API, not AMQP.")];
  }
  const port = pass('AMQP port', `${at} answers: ${describeAmqp(amqp.server)}`);
  if (amqp.kind !== 'refused') return [port, pass('AMQP login', `user "${user}" logs in`)];
  const guest = user === 'guest' ? ', or guest connects from another machine (guest may only log in from localhost)' : '';
  return [port, fail('AMQP login', 'amqp-credentials', `The broker at ${at} refused the login of user "${user}" (${amqp.reply.split(' - ')[0]}): the password is wrong or the user does not exist${guest}.`, env
    ? 'Correct the user and password in RABBITMQ_URL (amqp://user:password@host:5672). On the broker: rabbitmqctl list_users; rabbitmqctl change_password USER PASSWORD; or rabbitmqctl add_user USER PASSWORD for a user that may log in from anywhere.'
    : 'This broker does not accept guest/guest: set RABBITMQ_URL=amqp://user:password@localhost:5672 (and RABBITMQ_MANAGEMENT_URL) with a user it knows.')];
}

interface Cluster {
  name?: string;
  node?: string;
  version: string;
}

/** The management API answers, is RabbitMQ's, accepts the login, and lets the user create vhosts. */
function managementLines(target: ProbeTarget, overview: HttpResult, whoami: HttpResult): { lines: ProbeLine[]; cluster?: Cluster } {
  const at = target.managementUrl;
  const credentialsIn = process.env.RABBITMQ_MANAGEMENT_URL ? 'RABBITMQ_MANAGEMENT_URL' : 'RABBITMQ_URL (RABBITMQ_MANAGEMENT_URL is not set, so the management API gets the same user and password)';
  if (overview.kind === 'unreachable') {
    return { lines: [fail('Management API', 'management-unreachable', `The management API at ${at} does not answer (${overview.code}): the management plugin is off, or it listens on another port.`,
      'Enable it on the broker (rabbitmq-plugins enable rabbitmq_management), or set RABBITMQ_MANAGEMENT_URL to where it listens (http://host:15672 by default). The workbook needs it to make a vhost for each check.')] };
  }
  if (overview.status === 401) {
    const reason = reasonOf(overview.body);
    return { lines: [pass('Management API', `${at} answers`), reason === 'Not management user'
      ? notAdministrator(target.username, at, 'it may not even use the management API', credentialsIn)
      : fail('Management login', 'management-credentials', `The management API at ${at} refused user "${target.username}" (401 ${reason || 'Unauthorized'}): the password is wrong or the user does not exist.`,
        `Correct the user and password in ${credentialsIn}.`)] };
  }
  const data = parseJson(overview.body) as { rabbitmq_version?: string; cluster_name?: string; node?: string } | undefined;
  if (overview.status !== 200 || !data?.rabbitmq_version) {
    const seen = overview.status === 404 ? 'has no /api/overview (404)' : overview.status !== 200 ? `answers ${overview.status} to /api/overview` : "answers /api/overview with something that is not RabbitMQ's";
    return { lines: [fail('Management API', 'management-not-rabbitmq', `${at} is an HTTP server, but not RabbitMQ's management API: it ${seen}.`,
      'Set RABBITMQ_MANAGEMENT_URL to the management API of your broker (http://host:15672 by default, with its path prefix if it has one), and check that the management plugin is enabled (rabbitmq-plugins enable rabbitmq_management).')] };
  }
  const cluster = { name: data.cluster_name, node: data.node, version: data.rabbitmq_version };
  const access = target.classroom ? classroomLine(whoami, target) : whoamiLine(whoami, target.username, at, credentialsIn);
  return { lines: [pass('Management API', `${at} answers: ${describeCluster(cluster)}`), access], cluster };
}

/** AMQP and the management API answer for the same broker: the vhost made through one must exist on the other. */
function sameBrokerLine(target: ProbeTarget, server: ServerProperties, cluster: Cluster): ProbeLine {
  // The cluster name, not the node: in a cluster, AMQP and the management API may be served by different nodes.
  const same = server.cluster_name === cluster.name && (!server.version || server.version === cluster.version);
  return same
    ? pass('Same broker', `AMQP and the management API both answer for cluster "${cluster.name}"`)
    : fail('Same broker', 'different-brokers', `AMQP at ${redact(target.amqpUrl)} is ${describeAmqp(server)}, but the management API at ${target.managementUrl} belongs to another broker: ${describeCluster(cluster)}. The vhost made for each check would not exist where your code connects.`,
      // A cluster with no name of its own: each node reports its own node name as the cluster's.
      `Set RABBITMQ_MANAGEMENT_URL to the management API of the broker in RABBITMQ_URL (same host, port 15672 by default), or unset both to let the workbook find a broker.${server.cluster_name?.includes('@') && cluster.name?.includes('@') ? ' If both are nodes of one cluster, give the cluster a name (rabbitmqctl set_cluster_name NAME): without one, each node gives its own node name.' : ''}`);
}

/** The check vhosts are opened to the management user only (runner/sandbox/sandbox.ts): the AMQP user must be that user. */
function checkVhostsLines(target: ProbeTarget): ProbeLine[] {
  const user = amqpUserOf(target);
  if (user === target.username) return [];
  return [fail('Check vhosts', 'vhost-access', `RABBITMQ_URL logs in as "${user}", but the management API as "${target.username}". The workbook makes each check's vhost through the management API and opens it to "${target.username}" only, so "${user}" would be refused there (NOT_ALLOWED).`,
    'Use the same user in RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL (an administrator), or leave the credentials out of RABBITMQ_MANAGEMENT_URL so that it takes those of RABBITMQ_URL.')];
}

function amqpUserOf(target: { amqpUrl: string }): string {
  return decodeURIComponent(new URL(target.amqpUrl).username || 'guest');
}

/** The user's tags decide whether it may create a vhost per check. */
function whoamiLine(whoami: HttpResult, user: string, mgmtAt: string, envHint: string): ProbeLine {
  if (whoami.kind === 'unreachable' || whoami.status !== 200) {
    return pass('Vhost creation', `could not read the tags of "${user}" (/api/whoami: ${whoami.kind === 'unreachable' ? whoami.code : whoami.status}); the first check will tell`);
  }
  const raw = (parseJson(whoami.body) as { tags?: string | string[] } | undefined)?.tags ?? [];
  // 3.x before 3.9 gives a comma-separated string, later versions a list.
  const tags = (Array.isArray(raw) ? raw : raw.split(',')).map((t) => t.trim()).filter(Boolean);
  return tags.includes('administrator')
    ? pass('Vhost creation', `user "${user}" has the administrator tag: it may create a vhost per check`)
    : notAdministrator(user, mgmtAt, tags.length ? `tags: ${tags.join(', ')}` : 'no tags', envHint);
}

/** A classroom account creates no vhosts: it must see every vhost the instructor made for it (GET /api/vhosts lists those it may use). */
function classroomLine(vhosts: HttpResult, target: ProbeTarget): ProbeLine {
  const seat = target.classroom!;
  const mine = [...seat.pool, seat.demoVhost];
  const seen = vhosts.kind === 'answered' && vhosts.status === 200 ? ((parseJson(vhosts.body) as { name: string }[] | undefined) ?? []).map((v) => v.name) : undefined;
  if (!seen) return pass('Classroom vhosts', `could not list the vhosts of "${target.username}"; the first check will tell`);
  const missing = mine.filter((v) => !seen.includes(v));
  return missing.length === 0
    ? pass('Classroom vhosts', `learner ${seat.student} of class "${seat.className}" has its ${seat.pool.length} sandbox vhosts and its demo vhost (no administrator rights needed)`)
    : fail('Classroom vhosts', 'vhost-access', `User "${target.username}" has no access to ${missing.map((v) => `"${v}"`).join(', ')}: the class was destroyed or changed since you joined it.`,
      'Ask your instructor for a new join file (npm run classroom -- join FILE), or leave the class (npm run classroom -- leave) to use a broker of your own.');
}

function notAdministrator(user: string, mgmtAt: string, seen: string, envHint: string): ProbeLine {
  return fail('Vhost creation', 'not-administrator', `User "${user}" of the management API at ${mgmtAt} lacks the administrator tag (${seen}). The workbook creates a vhost for each check, and only an administrator may create vhosts.`,
    `On the broker: rabbitmqctl set_user_tags ${user} administrator. Or put an administrator's user and password in ${envHint}.`);
}

/**
 * Why the checker could not open its own connection to a check's vhost, with the URL the
 * code under check gets. The run's probes passed moments ago, so something changed since,
 * or the vhost is refused to this user; the handshake reads the broker's exact reply.
 */
export async function explainVhostFailure(broker: BrokerInfo, vhost: string, err: unknown): Promise<ProbeLine> {
  const url = `${redact(broker.amqpUrl)}/${encodeURIComponent(vhost)}`;
  const amqpUser = amqpUserOf(broker);
  const result = await amqpHandshake(broker.amqpUrl, vhost);
  const again = 'Run the check again; if it happens again, `npm run doctor` says what is wrong.';
  switch (result.kind) {
    case 'unreachable':
      return fail('AMQP port', 'amqp-unreachable', `The broker at ${url} no longer answers (${result.code}): it stopped or restarted after the run began.`, `Start it again (npm run broker -- status shows where it is). ${again}`);
    case 'not-amqp':
      return fail('AMQP port', 'amqp-not-amqp', `Something else than the broker answers at ${url} now (${result.detail}).`, again);
    case 'refused':
      return fail('AMQP login', 'amqp-credentials', `The broker at ${url} refused the login of user "${amqpUser}" (${result.reply.split(' - ')[0]}), which it accepted when the run began: the password or the user changed.`, `Correct the user and password in RABBITMQ_URL. ${again}`);
    case 'vhost-refused':
      return fail('Check vhosts', 'vhost-access', `User "${amqpUser}" may not open this check's vhost "${vhost}" at ${url} (${result.reply}).`, amqpUser !== broker.username
        ? `The workbook opens each check's vhost to the management user "${broker.username}" only: use the same user in RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL.`
        : broker.classroom
          ? `This vhost is one of your classroom account's; the class may have been destroyed or changed. Ask your instructor, or leave the class (npm run classroom -- leave). ${again}`
          : `The workbook created the vhost and gave "${amqpUser}" full permissions moments ago; something removed them or the vhost (an operator, a tool sweeping vhosts). ${again}`);
    case 'ok':
      return fail('AMQP connection', 'amqp-unreachable', `The checker's connection to ${url} failed (${err instanceof Error ? err.message : String(err)}), though the broker accepts it now.`, again);
  }
}

// ---- the AMQP handshake --------------------------------------------------------

export interface ServerProperties {
  product?: string;
  version?: string;
  cluster_name?: string;
}

export type HandshakeResult =
  | { kind: 'unreachable'; code: string }
  | { kind: 'not-amqp'; detail: string }
  /** The login was refused (403 ACCESS_REFUSED), or the broker hung up right after it. */
  | { kind: 'refused'; reply: string; server: ServerProperties }
  /** Logged in, but the vhost may not be opened (530 NOT_ALLOWED). */
  | { kind: 'vhost-refused'; reply: string; server: ServerProperties }
  | { kind: 'ok'; server: ServerProperties };

/**
 * Opens an AMQP 0-9-1 connection by hand: the broker's greeting (its properties), the
 * login, opening `vhost`, then a polite close, so the broker logs no "client unexpectedly
 * closed" warning. (RabbitMQ accepts no close between the login and opening a vhost; a
 * user without access to "/" gets vhost-refused, which still proves the login.)
 */
export function amqpHandshake(url: string, vhost = '/', timeoutMs = TIMEOUT_MS): Promise<HandshakeResult> {
  const u = new URL(url);
  const secure = u.protocol === 'amqps:';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = amqpPort(u);
  const user = decodeURIComponent(u.username || 'guest');
  const pass = decodeURIComponent(u.password || 'guest');

  return new Promise((resolve) => {
    const socket = secure ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
    socket.setNoDelay(true);
    let server: ServerProperties = {};
    let step: 'greeting' | 'login' | 'open' | 'closing' = 'greeting';
    let buffer = Buffer.alloc(0);
    let settled = false;
    let connected = false;
    const done = (result: HandshakeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(!connected
      ? { kind: 'unreachable', code: `no answer within ${timeoutMs / 1000} s` }
      : { kind: 'not-amqp', detail: `no AMQP greeting within ${timeoutMs / 1000} s` }), timeoutMs);

    socket.once(secure ? 'secureConnect' : 'connect', () => {
      connected = true;
      socket.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) done({ kind: 'unreachable', code: err.code ?? err.message });
      else done(step === 'login' ? { kind: 'refused', reply: `connection lost after the login: ${err.code ?? err.message}`, server } : { kind: 'not-amqp', detail: err.message });
    });
    socket.on('close', () => {
      // Brokers that do not announce authentication_failure_close just hang up on a refused login.
      if (step === 'login') done({ kind: 'refused', reply: 'the broker closed the connection after the login', server });
      else if (step === 'greeting') done({ kind: 'not-amqp', detail: buffer.length ? `it sent ${JSON.stringify(buffer.subarray(0, 16).toString('latin1'))}` : 'it closed the connection without a word' });
      else if (step === 'open') done({ kind: 'vhost-refused', reply: `the broker closed the connection when asked for vhost "${vhost}"`, server });
      else done({ kind: 'ok', server });
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (step === 'greeting' && buffer.length >= 8 && buffer.subarray(0, 4).toString('latin1') === 'AMQP') {
          return done({ kind: 'not-amqp', detail: `it speaks another AMQP version (${[...buffer.subarray(4, 8)].join('-')})` });
        }
        if (buffer.length < 7) return;
        const size = buffer.readUInt32BE(3);
        if (buffer[0] !== 1 && buffer[0] !== 8) return done({ kind: 'not-amqp', detail: `it sent ${JSON.stringify(buffer.subarray(0, 16).toString('latin1'))}` });
        if (size > 1 << 20) return done({ kind: 'not-amqp', detail: 'it sent a frame of an impossible size' });
        if (buffer.length < size + 8) return;
        const type = buffer[0];
        const payload = buffer.subarray(7, 7 + size);
        buffer = buffer.subarray(size + 8);
        if (type === 1) onMethod(payload.readUInt16BE(0), payload.readUInt16BE(2), payload.subarray(4));
        if (settled) return;
      }
    });

    function onMethod(classId: number, methodId: number, args: Buffer) {
      const m = `${classId}.${methodId}`;
      if (m === '10.10' && step === 'greeting') {
        // connection.start: version-major, version-minor, server-properties, mechanisms, locales
        server = pickServerProperties(readTable(args, 2).value);
        step = 'login';
        const response = `\0${user}\0${pass}`;
        socket.write(methodFrame(10, 11, [table({ product: 'rabbitmq-workbook probe', capabilities: { authentication_failure_close: true } }), shortstr('PLAIN'), longstr(response), shortstr('en_US')]));
      } else if (m === '10.30' && step === 'login') {
        // connection.tune: accept the broker's limits, no heartbeat
        const tuneOk = Buffer.alloc(8);
        tuneOk.writeUInt16BE(args.readUInt16BE(0), 0);
        tuneOk.writeUInt32BE(args.readUInt32BE(2), 2);
        tuneOk.writeUInt16BE(0, 6);
        socket.write(methodFrame(10, 31, [tuneOk]));
        step = 'open';
        socket.write(methodFrame(10, 40, [shortstr(vhost), shortstr(''), Buffer.from([0])]));
      } else if (m === '10.41' && step === 'open') {
        closePolitely();
      } else if (m === '10.50') {
        // connection.close from the broker: reply-code, reply-text
        const code = args.readUInt16BE(0);
        const text = args.subarray(3, 3 + args[2]!).toString('utf8');
        socket.write(methodFrame(10, 51, []));
        const reply = `${code} ${text}`;
        if (step === 'login' || code === 403) done({ kind: 'refused', reply, server });
        else if (step === 'open') done({ kind: 'vhost-refused', reply, server });
        else done({ kind: 'not-amqp', detail: reply });
      } else if (m === '10.51' && step === 'closing') {
        done({ kind: 'ok', server });
      }
    }

    function closePolitely() {
      step = 'closing';
      const args = Buffer.alloc(2);
      args.writeUInt16BE(200, 0);
      socket.write(methodFrame(10, 50, [args, shortstr('probe done'), Buffer.alloc(4)]));
    }
  });
}

function methodFrame(classId: number, methodId: number, args: Buffer[]): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(classId, 0);
  head.writeUInt16BE(methodId, 2);
  const payload = Buffer.concat([head, ...args]);
  const frame = Buffer.alloc(payload.length + 8);
  frame[0] = 1; // method frame, channel 0
  frame.writeUInt32BE(payload.length, 3);
  payload.copy(frame, 7);
  frame[frame.length - 1] = 0xce;
  return frame;
}

function shortstr(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

function longstr(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const size = Buffer.alloc(4);
  size.writeUInt32BE(b.length, 0);
  return Buffer.concat([size, b]);
}

/** A field table of strings, booleans and nested tables: all the probe sends. */
function table(fields: Record<string, string | boolean | Record<string, string | boolean>>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(fields)) {
    parts.push(shortstr(key));
    if (typeof value === 'boolean') parts.push(Buffer.from([0x74, value ? 1 : 0])); // 't'
    else if (typeof value === 'string') parts.push(Buffer.from('S'), longstr(value));
    else parts.push(Buffer.from('F'), table(value));
  }
  return longstr(Buffer.concat(parts));
}

/** Reads a field table; stops quietly at a value type it does not know (the fields read so far are kept). */
function readTable(buf: Buffer, offset: number): { value: Record<string, unknown>; end: number } {
  const size = buf.readUInt32BE(offset);
  const end = offset + 4 + size;
  const value: Record<string, unknown> = {};
  let at = offset + 4;
  while (at < end) {
    const keyLength = buf[at]!;
    const key = buf.subarray(at + 1, at + 1 + keyLength).toString('utf8');
    at += 1 + keyLength;
    const read = readValue(buf, at);
    if (!read) break;
    value[key] = read.value;
    at = read.end;
  }
  return { value, end };
}

function readValue(buf: Buffer, at: number): { value: unknown; end: number } | undefined {
  const type = String.fromCharCode(buf[at]!);
  at += 1;
  switch (type) {
    case 'S':
    case 'x': {
      const n = buf.readUInt32BE(at);
      return { value: buf.subarray(at + 4, at + 4 + n).toString('utf8'), end: at + 4 + n };
    }
    case 'F':
      return readTable(buf, at);
    case 't':
      return { value: buf[at] !== 0, end: at + 1 };
    case 'b':
    case 'B':
      return { value: buf[at], end: at + 1 };
    case 's':
    case 'u':
      return { value: buf.readUInt16BE(at), end: at + 2 };
    case 'I':
    case 'i':
      return { value: buf.readInt32BE(at), end: at + 4 };
    case 'l':
    case 'T':
      return { value: Number(buf.readBigInt64BE(at)), end: at + 8 };
    case 'f':
      return { value: buf.readFloatBE(at), end: at + 4 };
    case 'd':
      return { value: buf.readDoubleBE(at), end: at + 8 };
    case 'D':
      return { value: undefined, end: at + 5 };
    case 'V':
      return { value: undefined, end: at };
    case 'A': {
      const n = buf.readUInt32BE(at);
      return { value: undefined, end: at + 4 + n };
    }
    default:
      return undefined;
  }
}

function pickServerProperties(props: Record<string, unknown>): ServerProperties {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return { product: str(props.product), version: str(props.version), cluster_name: str(props.cluster_name) };
}

// ---- HTTP ----------------------------------------------------------------------

type HttpResult = { kind: 'unreachable'; code: string } | { kind: 'answered'; status: number; body: string };

/** One GET with basic auth; the status and body whatever they are (node:http: fetch would load undici, ~0.1 s). */
function httpGet(base: string, path: string, user: string, pass: string): Promise<HttpResult> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  const lib = url.startsWith('https:') ? https : http;
  const authorization = 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');
  return new Promise((resolve) => {
    const req = lib.get(url, { headers: { authorization }, timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ kind: 'answered', status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ kind: 'unreachable', code: err.code ?? err.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: `no answer within ${TIMEOUT_MS / 1000} s` })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ kind: 'unreachable', code: err.code ?? err.message }));
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function reasonOf(body: string): string {
  const reason = (parseJson(body) as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' ? reason : '';
}

// ---- wording -------------------------------------------------------------------

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/:[^:@/]*@/, '@');
  }
}

function hostPort(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${amqpPort(u)}`;
}

function describeAmqp(server: ServerProperties): string {
  return `${server.product ?? 'an AMQP broker'} ${server.version ?? ''} (cluster "${server.cluster_name ?? '?'}")`.replace(/ +/g, ' ');
}

function describeCluster(c: { name?: string; node?: string; version: string }): string {
  return `RabbitMQ ${c.version} (cluster "${c.name ?? '?'}"${c.node && c.node !== c.name ? `, node "${c.node}"` : ''})`;
}

function pass(what: string, detail: string): ProbeLine {
  return { what, ok: true, detail };
}

function fail(what: string, cause: Cause, detail: string, fix: string): ProbeLine {
  return { what, ok: false, detail, fix, cause };
}

/** The message of an unusable broker: every failing probe with its fix. */
export function describeProblems(problems: ProbeLine[], broker: string): string {
  const lines = [`The broker is not usable (${broker}). This is a problem with the environment, not with your code:`];
  for (const p of problems) lines.push(`  ✗ ${p.what}: ${p.detail}`, `    Fix: ${p.fix}`);
  lines.push('`npm run doctor` runs these probes again and shows all of them.');
  return lines.join('\n');
}

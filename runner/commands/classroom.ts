// npm run classroom -- create --students N [--name CLASS] [--out DIR] [--cluster]   (the instructor, as administrator)
// npm run classroom -- list | reset STUDENT | destroy   [--name CLASS | --out DIR]  (the instructor)
// npm run classroom -- dashboard [--port P] [--stuck-fails N] [--stuck-minutes M]    (the instructor's live view)
// npm run classroom -- lock-guest [--delete-guest] [--cluster]                       (the instructor: can learners log in as guest?)
// npm run classroom -- join FILE | leave                                             (a learner)
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pc from 'picocolors';
import { findBroker, proveBroker, UnusableBrokerError } from '../broker/find.js';
import { ManagementClient } from '../broker/management.js';
import { NoBrokerError } from '../broker/types.js';
import { terminalTable } from '../table.js';
import { EXIT, UserError } from '../exit-codes.js';
import { rel } from '../paths.js';
import { CLASS_NAME } from '../classroom/names.js';
import { classFilePath, defaultClassDir, knownClassDirs, readClassFile, readJoinFile, removeClassFiles, removeSeat, readSeat, seatFile, writeSeat, type ClassFile } from '../classroom/files.js';
import { createClass, destroyClass, LIMITS } from '../classroom/provision.js';
import { answeringNode, seatTarget } from '../classroom/seat.js';
import { emptyVhost, leftovers, describe } from '../classroom/empty.js';

export interface ClassroomOptions {
  students?: string;
  name?: string;
  out?: string;
  cluster?: boolean;
  port?: string;
  stuckFails?: string;
  stuckMinutes?: string;
  deleteGuest?: boolean;
}

const USAGE = 'Use: npm run classroom -- create --students N [--name CLASS] [--out DIR] [--cluster] | join FILE | leave | list | reset STUDENT | destroy | dashboard [--port P] | lock-guest [--delete-guest]';

export async function classroomCommand(action: string, arg: string | undefined, opts: ClassroomOptions): Promise<number> {
  switch (action) {
    case 'create':
      return create(opts);
    case 'join':
      if (!arg) throw new UserError(`Which join file? npm run classroom -- join students/s01.json (your instructor gives it to you).`, EXIT.USAGE);
      return join(arg);
    case 'leave':
      return leave();
    case 'list':
      return list(opts);
    case 'reset':
      if (!arg) throw new UserError('Which learner? npm run classroom -- reset s01', EXIT.USAGE);
      return reset(arg, opts);
    case 'destroy':
      return destroy(opts);
    case 'dashboard':
      return dashboard(opts);
    case 'lock-guest':
      return lockGuest(opts);
    default:
      throw new UserError(`Unknown classroom action "${action}". ${USAGE}`, EXIT.USAGE);
  }
}

// ---- the instructor ------------------------------------------------------------

/** The administrator's management API: the broker the runner finds (never a joined classroom), or the local cluster's first node. */
async function administrator(cluster: boolean): Promise<{ admin: ManagementClient; amqpUrls: string[]; managementUrl: string; username: string }> {
  if (cluster) {
    const { clusterStatus } = await import('../broker/cluster.js');
    const status = await clusterStatus();
    const up = status?.nodes.filter((n) => n.answers) ?? [];
    if (!status || up.length !== status.nodes.length) {
      throw new UserError('The local three-node cluster does not run (all three nodes must): npm run broker -- cluster start, then create the class again.', EXIT.ENVIRONMENT);
    }
    const first = status.nodes[0]!;
    return {
      admin: new ManagementClient(first.managementUrl, status.username, status.password),
      amqpUrls: status.nodes.map((n) => `amqp://localhost:${n.amqpPort}`),
      managementUrl: first.managementUrl,
      username: status.username,
    };
  }
  let b;
  try {
    // The same probes as every command: an administrator, since it creates users and vhosts.
    b = await findBroker({ ignoreClassroom: true, start: false });
  } catch (err) {
    if (err instanceof NoBrokerError) throw new UserError(`${err.message}\nclassroom needs a running broker and its administrator: RABBITMQ_URL=amqp://admin:password@host:5672 (and RABBITMQ_MANAGEMENT_URL).`, EXIT.ENVIRONMENT);
    throw err;
  }
  const amqp = new URL(b.amqpUrl);
  return { admin: new ManagementClient(b.managementUrl, b.username, b.password), amqpUrls: [`${amqp.protocol}//${amqp.host}`], managementUrl: b.managementUrl, username: b.username };
}

async function create(opts: ClassroomOptions): Promise<number> {
  const students = Number(opts.students);
  if (!Number.isInteger(students) || students < 1 || students > 200) throw new UserError('--students N: how many learners, 1 to 200.', EXIT.USAGE);
  const name = opts.name ?? randomBytes(3).toString('hex');
  if (!CLASS_NAME.test(name)) throw new UserError(`--name "${name}": lower-case letters, digits and dashes, at most 24 (it becomes part of vhost and user names).`, EXIT.USAGE);
  const dir = path.resolve(opts.out ?? defaultClassDir(name));
  // Never over another class's record: destroy would no longer know what that class made.
  if (existsSync(classFilePath(dir))) throw new UserError(`${rel(classFilePath(dir))} already exists (another class?). Destroy that class first, or give another --out.`, EXIT.USAGE);
  const { admin, amqpUrls, managementUrl } = await administrator(!!opts.cluster);
  console.log(`Creating class "${name}" with ${students} learner(s) on ${managementUrl}${opts.cluster ? ' (the local cluster)' : ''}…`);
  const started = Date.now();
  let cls: ClassFile;
  try {
    cls = await createClass({ admin, name, students, cluster: !!opts.cluster, amqpUrls, managementUrl, dir, onProgress: (line) => console.log(pc.dim(`  ${line}`)) });
  } catch (err) {
    const made = (() => {
      try {
        return readClassFile(dir).created;
      } catch {
        return undefined;
      }
    })();
    const undo = made && (made.users.length || made.vhosts.length) ? `\nWhat was made so far is in ${rel(classFilePath(dir))}: npm run classroom -- destroy --out ${rel(dir)}` : '';
    throw new UserError(`Could not create the class: ${(err as Error).message}${undo}`, EXIT.ENVIRONMENT);
  }
  console.log(`${pc.green('✓')} Class "${name}": ${cls.students.length} learner(s), ${cls.created.vhosts.length} vhosts, ${cls.created.users.length} users (${((Date.now() - started) / 1000).toFixed(1)} s).`);
  console.log(`  Class file (keep it: destroy removes what it lists): ${rel(classFilePath(dir))}`);
  console.log(`  Join files, one per learner (each holds that learner's password): ${rel(path.join(dir, 'students'))}/s01.json …`);
  console.log(`  Each learner runs: npm run classroom -- join s01.json`);
  console.log(pc.dim(`  Limits: per vhost ${fmt(LIMITS.vhost)}; per learner ${fmt(LIMITS.user)}; every queue ${fmt(LIMITS.operatorPolicy)} (operator policy).`));
  return EXIT.OK;
}

const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ');

/** The class named by --out or --name, or the only one under the default folder. */
function pickClass(opts: ClassroomOptions): { dir: string; cls: ClassFile } {
  let dir: string;
  if (opts.out) dir = path.resolve(opts.out);
  else if (opts.name) dir = defaultClassDir(opts.name);
  else {
    const known = knownClassDirs();
    if (known.length !== 1) {
      throw new UserError(known.length ? `Several classes exist (${known.map((d) => path.basename(d)).join(', ')}): say which with --name CLASS.` : 'No class found: give --out DIR (the folder with class.json) or --name CLASS.', EXIT.USAGE);
    }
    dir = known[0]!;
  }
  try {
    return { dir, cls: readClassFile(dir) };
  } catch (err) {
    throw new UserError(`Cannot read the class file ${rel(classFilePath(dir))}: ${(err as Error).message}`, EXIT.USAGE);
  }
}

async function adminFor(cls: ClassFile): Promise<ManagementClient> {
  const { admin, managementUrl } = await administrator(cls.cluster);
  if (managementUrl.replace(/\/+$/, '') !== cls.managementUrl.replace(/\/+$/, '')) {
    throw new UserError(`Class "${cls.name}" lives on ${cls.managementUrl}, but the administrator found is at ${managementUrl}: set RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL to that broker's administrator.`, EXIT.ENVIRONMENT);
  }
  return admin;
}

async function list(opts: ClassroomOptions): Promise<number> {
  const { cls } = pickClass(opts);
  const admin = await adminFor(cls);
  const [connections, queues] = await Promise.all([
    admin.request<{ user: string; vhost: string; connected_at?: number }[]>('GET', '/connections?columns=user,vhost,connected_at').then((c) => c ?? []),
    admin.request<{ vhost: string; messages?: number }[]>('GET', '/queues?columns=vhost,messages').then((q) => q ?? []),
  ]);
  console.log(`Class "${cls.name}" on ${cls.managementUrl}, created ${cls.createdAt}: ${cls.students.length} learner(s); events go to exchange "${cls.exchange}" in vhost "${cls.classroomVhost}".`);
  const table = terminalTable({ head: ['learner', 'user', 'vhosts', 'connections', 'queues (messages)', 'newest connection'] });
  for (const s of cls.students) {
    const mine = [...s.pool, s.demoVhost];
    const conns = connections.filter((c) => c.user === s.user);
    const qs = queues.filter((q) => mine.includes(q.vhost));
    const last = Math.max(0, ...conns.map((c) => c.connected_at ?? 0));
    table.push([s.id, s.user, `${s.pool[0]} … ${s.pool.length} + demo`, conns.length, `${qs.length} (${qs.reduce((n, q) => n + (q.messages ?? 0), 0)})`, last ? new Date(last).toISOString().slice(11, 19) : '-']);
  }
  console.log(table.toString());
  return EXIT.OK;
}

/** Empties one learner's vhosts, with that learner's own credentials: it cannot touch anybody else's. */
async function reset(student: string, opts: ClassroomOptions): Promise<number> {
  const { cls } = pickClass(opts);
  const s = cls.students.find((x) => x.id === student || x.user === student);
  if (!s) throw new UserError(`Class "${cls.name}" has no learner "${student}" (${cls.students[0]?.id} … ${cls.students.at(-1)?.id}).`, EXIT.USAGE);
  const mgmt = new ManagementClient(cls.managementUrl, s.user, s.password);
  for (const v of [...s.pool, s.demoVhost]) {
    const before = await leftovers(mgmt, v);
    await emptyVhost(mgmt, v);
    console.log(`${pc.green('✓')} ${v}: removed ${describe(before)}`);
  }
  return EXIT.OK;
}

async function destroy(opts: ClassroomOptions): Promise<number> {
  const { dir, cls } = pickClass(opts);
  const admin = await adminFor(cls);
  const done = await destroyClass(admin, cls);
  removeClassFiles(dir);
  console.log(`${pc.green('✓')} Class "${cls.name}" destroyed: ${done.vhosts.length} vhosts and ${done.users.length} users deleted, nothing else touched. Removed ${rel(classFilePath(dir))} and the join files.`);
  return EXIT.OK;
}

/** The live dashboard: runs until Ctrl-C (which ends the process, closing its connections). */
async function dashboard(opts: ClassroomOptions): Promise<number> {
  const { dir, cls } = pickClass(opts);
  const count = (v: string | undefined, what: string, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UserError(`${what} "${v}": a whole number, at least ${min}.`, EXIT.USAGE);
    return n;
  };
  const port = count(opts.port, '--port', 0) ?? 8090;
  const thresholds = { fails: count(opts.stuckFails, '--stuck-fails', 1), minutes: count(opts.stuckMinutes, '--stuck-minutes', 1) };
  const { runDashboard, passwordHint } = await import('../dashboard/run.js');
  let running;
  try {
    running = await runDashboard(dir, cls, { port, host: '127.0.0.1', thresholds: Object.fromEntries(Object.entries(thresholds).filter(([, v]) => v !== undefined)) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number };
    if (e.code === 'EADDRINUSE') throw new UserError(`Port ${port} is in use: npm run classroom -- dashboard --port ${port + 1}`, EXIT.ENVIRONMENT);
    throw new UserError(`The dashboard of class "${cls.name}" cannot start: ${e.message}`, EXIT.ENVIRONMENT);
  }
  console.log(`${pc.green('✓')} Dashboard of class "${cls.name}": ${running.url}`);
  console.log(`  Log in with ${passwordHint(dir)}. It listens on this machine only. Ctrl-C stops it; the events wait in the broker meanwhile.`);
  await new Promise(() => undefined); // until Ctrl-C
  return EXIT.OK;
}

/**
 * Can a learner log in as guest (an administrator), or anonymously? Reports; deletes guest
 * only with --delete-guest, and never while the runner itself works as guest (guest.ts).
 */
async function lockGuest(opts: ClassroomOptions): Promise<number> {
  const { probeGuest, decideGuest } = await import('../classroom/guest.js');
  const { admin, amqpUrls, managementUrl, username } = await administrator(!!opts.cluster);
  const report = await probeGuest(admin, amqpUrls[0]!, managementUrl);
  console.log(`The user "guest" on ${managementUrl}, tried as a learner would${report.from ? `, from ${report.from}` : ''}:`);
  for (const line of report.answers) console.log(pc.dim(`  ${line}`));
  const decision = decideGuest(report, username, !!opts.deleteGuest);
  if (decision.action === 'refuse') throw new UserError(decision.why, EXIT.ENVIRONMENT);
  if (decision.action === 'none') {
    const safe = report.state === 'absent' || report.state === 'loopback-only';
    console.log(`${safe ? pc.green('✓') : pc.yellow('!')} ${decision.why}`);
    return report.state === 'open' ? EXIT.FAILED : EXIT.OK;
  }
  console.log(decision.why);
  await admin.request('DELETE', '/users/guest');
  const after = await probeGuest(admin, amqpUrls[0]!, managementUrl);
  if (after.state !== 'absent') throw new UserError(`"guest" is still there after the delete (${after.state}).`, EXIT.ENVIRONMENT);
  console.log(`${pc.green('✓')} Deleted "guest": nobody logs in as guest any more, nor anonymously (on 4.x, ANONYMOUS logs in as guest).`);
  return EXIT.OK;
}

// ---- the learner -----------------------------------------------------------------

async function join(file: string): Promise<number> {
  let joinFile;
  try {
    joinFile = readJoinFile(path.resolve(file));
  } catch (err) {
    throw new UserError(`Cannot use ${file}: ${(err as Error).message}`, EXIT.USAGE);
  }
  // Proved before it is saved: a join file for a class that is gone, or a broker out of reach, says so now.
  try {
    await proveBroker(seatTarget(joinFile, await answeringNode(joinFile)));
  } catch (err) {
    const msg = err instanceof UnusableBrokerError ? err.message : (err as Error).message;
    throw new UserError(`The classroom in ${file} is not usable:\n${msg}`, EXIT.ENVIRONMENT);
  }
  writeSeat(joinFile);
  console.log(`${pc.green('✓')} Joined class "${joinFile.className}" as learner ${joinFile.student} (user ${joinFile.user}).`);
  console.log(`  From now on every command uses your classroom account: your checks run in your vhosts ${joinFile.pool.join(', ')}, demos in ${joinFile.demoVhost}.`);
  console.log(`  Saved in ${rel(seatFile())} (readable by you only). npm run doctor shows the mode; npm run classroom -- leave goes back to your own broker.`);
  return EXIT.OK;
}

function leave(): number {
  const seat = (() => {
    try {
      return readSeat();
    } catch {
      return undefined;
    }
  })();
  if (!removeSeat()) {
    console.log('You have not joined a classroom: nothing to leave.');
    return EXIT.OK;
  }
  console.log(`${pc.green('✓')} Left ${seat ? `class "${seat.className}"` : 'the classroom'}: commands use your own broker again (npm run doctor says which).`);
  return EXIT.OK;
}

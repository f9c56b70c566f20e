// What an instructor's `classroom -- create` makes on the broker, with administrator
// credentials, and how `destroy` removes exactly that. Each object is recorded in the class
// file before it is made, so a create that stops half-way can still be destroyed.
import { randomBytes } from 'node:crypto';
import { enc, ManagementClient } from '../broker/management.js';
import { belongsToClass, EVENTS_EXCHANGE, exactly, names, studentId } from './names.js';
import { writePrivateJson, classFilePath, joinFilePath, type ClassFile, type JoinFile, type Limits, type StudentRecord } from './files.js';
import { ensureDashboardStream } from '../dashboard/stream.js';

/**
 * The guard rails (README, "Instructors"). On a shared broker, memory and disk alarms stop
 * every publisher of every learner: these keep one learner's bug (a connection per message, a
 * queue per request, a loop that publishes for ever) from getting there.
 */
export const LIMITS: Limits = {
  // Per vhost: a check opens a handful of connections and queues; 30 and 100 leave room for the chapter 10 shop.
  vhost: { 'max-connections': 30, 'max-queues': 100 },
  // Per learner, over all their vhosts (max-channels counts the channels of all their connections).
  user: { 'max-connections': 60, 'max-channels': 600 },
  // Every queue of the learner's vhosts: what it may hold, and how long.
  operatorPolicy: { 'max-length': 100_000, 'max-length-bytes': 64 * 1024 * 1024, 'message-ttl': 3_600_000, expires: 3_600_000 },
};

/** Why each tag: and no other (no administrator, no monitoring: they would see the other learners' vhosts and connections). */
export const LEARNER_TAGS = [
  'management', // the checks read queues, bindings, consumers and connections through the management API, and learners use its UI
  'policymaker', // checks and chapter 7's exercises set and clear policies (dead-lettering, length limits) in the learner's own vhosts
];

export interface CreateOptions {
  admin: ManagementClient;
  name: string;
  students: number;
  cluster: boolean;
  amqpUrls: string[];
  managementUrl: string;
  dir: string;
  onProgress?: (line: string) => void;
}

const password = () => randomBytes(18).toString('base64url');

export async function createClass(opts: CreateOptions): Promise<ClassFile> {
  const { admin, name } = opts;
  await refuseExisting(admin, name);
  const cls: ClassFile = {
    kind: 'rabbitmq-workbook-class',
    version: 1,
    name,
    createdAt: new Date().toISOString(),
    cluster: opts.cluster,
    amqpUrls: opts.amqpUrls,
    managementUrl: opts.managementUrl,
    classroomVhost: names.classroomVhost(name),
    exchange: EVENTS_EXCHANGE,
    instructor: { user: names.instructor(name), password: password() },
    dashboard: { password: password() },
    limits: LIMITS,
    students: [],
    created: { vhosts: [], users: [] },
  };
  const save = () => writePrivateJson(classFilePath(opts.dir), cls);
  const vhost = async (v: string) => {
    cls.created.vhosts.push(v);
    save();
    await admin.request('PUT', `/vhosts/${enc(v)}`, { description: `workbook class ${name}` });
  };
  const user = async (u: string, pw: string, tags: string[]) => {
    cls.created.users.push(u);
    save();
    await admin.request('PUT', `/users/${enc(u)}`, { password: pw, tags: tags.join(',') });
  };
  const permit = (v: string, u: string, configure: string, write: string, read: string) =>
    admin.request('PUT', `/permissions/${enc(v)}/${enc(u)}`, { configure, write, read });

  // The classroom vhost: learners publish check events to one exchange, only the instructor reads them.
  await vhost(cls.classroomVhost);
  // monitoring (includes management): the instructor's dashboard sees every learner's connections and queues, read-only.
  await user(cls.instructor.user, cls.instructor.password, ['monitoring']);
  // Objects of the instructor's own are named instructor.*; the events exchange is the only other thing it may touch.
  const instructorOwn = `^(${EVENTS_EXCHANGE}|instructor\\..*)$`;
  await permit(cls.classroomVhost, cls.instructor.user, instructorOwn, '^instructor\\..*$', instructorOwn);
  const instructor = new ManagementClient(opts.managementUrl, cls.instructor.user, cls.instructor.password);
  await instructor.request('PUT', `/exchanges/${enc(cls.classroomVhost)}/${enc(EVENTS_EXCHANGE)}`, { type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} });
  // The dashboard's stream of check events: made now, so that events sent before the dashboard first starts are kept.
  await ensureDashboardStream(instructor, cls.classroomVhost, EVENTS_EXCHANGE);
  opts.onProgress?.(`classroom vhost "${cls.classroomVhost}" with topic exchange "${EVENTS_EXCHANGE}" and the dashboard's stream, instructor user "${cls.instructor.user}"`);

  for (let n = 1; n <= opts.students; n++) {
    const id = studentId(n, opts.students);
    const s: StudentRecord = { id, user: names.user(name, id), password: password(), pool: names.pool(name, id), demoVhost: names.demo(name, id) };
    cls.students.push(s);
    await user(s.user, s.password, LEARNER_TAGS);
    for (const [limit, value] of Object.entries(LIMITS.user)) await admin.request('PUT', `/user-limits/${enc(s.user)}/${limit}`, { value });
    for (const v of [...s.pool, s.demoVhost]) {
      await vhost(v);
      // The learner's alone, so everything in it is theirs: no regex to get wrong.
      await permit(v, s.user, '.*', '.*', '.*');
      for (const [limit, value] of Object.entries(LIMITS.vhost)) await admin.request('PUT', `/vhost-limits/${enc(v)}/${limit}`, { value });
      await admin.request('PUT', `/operator-policies/${enc(v)}/classroom-limits`, { pattern: '.*', 'apply-to': 'queues', priority: 0, definition: LIMITS.operatorPolicy });
    }
    // Shared: write to the events exchange and nothing else; '' configures and reads nothing.
    await permit(cls.classroomVhost, s.user, '', exactly(EVENTS_EXCHANGE), '');
    writePrivateJson(joinFilePath(opts.dir, id), joinFileOf(cls, s));
    opts.onProgress?.(`learner ${id}: user "${s.user}", vhosts ${[...s.pool, s.demoVhost].join(', ')}`);
  }
  save();
  return cls;
}

export function joinFileOf(cls: ClassFile, s: StudentRecord): JoinFile {
  return {
    kind: 'rabbitmq-workbook-classroom',
    version: 1,
    className: cls.name,
    student: s.id,
    user: s.user,
    password: s.password,
    amqpUrls: cls.amqpUrls,
    managementUrl: cls.managementUrl,
    pool: s.pool,
    demoVhost: s.demoVhost,
    classroomVhost: cls.classroomVhost,
    exchange: cls.exchange,
  };
}

/** A class of that name must not exist already: create never takes over objects it did not make. */
async function refuseExisting(admin: ManagementClient, name: string): Promise<void> {
  const [vhosts, users] = await Promise.all([
    admin.request<{ name: string }[]>('GET', '/vhosts?columns=name'),
    admin.request<{ name: string }[]>('GET', '/users?columns=name'),
  ]);
  const taken = [...(vhosts ?? []), ...(users ?? [])].map((o) => o.name).filter((n) => belongsToClass(name, n));
  if (taken.length) throw new Error(`The broker already holds objects of a class named "${name}" (${taken.slice(0, 4).join(', ')}${taken.length > 4 ? ', …' : ''}). Pick another --name, or destroy that class first.`);
}

/**
 * Deletes the vhosts and users in the class file, and nothing else: a name that is not the
 * class's own (edited by hand?) is refused. Deleting a vhost removes its queues, exchanges,
 * permissions, limits and policies; deleting a user removes its permissions and limits.
 */
export async function destroyClass(admin: ManagementClient, cls: ClassFile): Promise<{ vhosts: string[]; users: string[] }> {
  const foreign = [...cls.created.vhosts, ...cls.created.users].filter((n) => !belongsToClass(cls.name, n));
  if (foreign.length) throw new Error(`The class file lists objects that are not the class's own (${foreign.join(', ')}); nothing was deleted.`);
  const done = { vhosts: [] as string[], users: [] as string[] };
  // Users first: from then on no learner logs in again to a vhost being deleted.
  for (const u of cls.created.users) {
    await admin.request('DELETE', `/users/${enc(u)}`).catch(ignore404);
    done.users.push(u);
  }
  for (const v of cls.created.vhosts) {
    await deleteVhostSurely(admin, v);
    done.vhosts.push(v);
  }
  return done;
}

/**
 * Deletes a vhost, asking again when the request times out: a vhost full of quorum queues, on a
 * busy cluster, can take longer to delete than one request waits (seen after a 30-learner run).
 */
async function deleteVhostSurely(admin: ManagementClient, vhost: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.deleteVhost(vhost);
      return;
    } catch (err) {
      // An answer (403, 500…) is final; only a request that got none is tried again.
      if ((err as { status?: number }).status !== undefined || attempt === 6) throw err;
      await new Promise((resolve) => setTimeout(resolve, 2000));
      if ((await admin.request('GET', `/vhosts/${enc(vhost)}`).catch(() => 'unknown')) === undefined) return; // gone meanwhile
    }
  }
}

function ignore404(err: { status?: number }) {
  if (err.status !== 404) throw err;
}

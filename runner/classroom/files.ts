// The files of a class. All of them hold passwords, so all are written with mode 0600:
//   DIR/class.json          the instructor's record of everything `create` made (what `destroy` removes)
//   DIR/students/s01.json   one learner's join file: where the broker is, their user and their vhosts
//   STATE_DIR/classroom.json   the join file as the learner's runner uses it (`classroom -- join`)
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { STATE_DIR } from '../paths.js';

/** What every learner gets: sent to the runner of that learner alone. */
export interface JoinFile {
  kind: 'rabbitmq-workbook-classroom';
  version: 1;
  className: string;
  student: string;
  user: string;
  password: string;
  /** amqp://host:port, without credentials (several with --cluster: one per node). */
  amqpUrls: string[];
  managementUrl: string;
  /** The vhosts checks run in, one at a time each (emptied before and after every check). */
  pool: string[];
  /** Where demos and the capstone run. */
  demoVhost: string;
  /** Where the learner publishes check events (write only). */
  classroomVhost: string;
  exchange: string;
}

export interface Limits {
  vhost: { 'max-connections': number; 'max-queues': number };
  user: { 'max-connections': number; 'max-channels': number };
  operatorPolicy: { 'max-length': number; 'max-length-bytes': number; 'message-ttl': number; expires: number };
}

export interface StudentRecord {
  id: string;
  user: string;
  password: string;
  pool: string[];
  demoVhost: string;
}

/** The instructor's record: everything `create` made, and nothing else, is what `destroy` removes. */
export interface ClassFile {
  kind: 'rabbitmq-workbook-class';
  version: 1;
  name: string;
  createdAt: string;
  cluster: boolean;
  amqpUrls: string[];
  managementUrl: string;
  classroomVhost: string;
  exchange: string;
  instructor: { user: string; password: string };
  /** The instructor's dashboard login (npm run classroom -- dashboard); made by the first dashboard for an older class file. */
  dashboard?: { password: string };
  limits: Limits;
  students: StudentRecord[];
  /** Written before each object is made, so that a create that fails half-way can still be destroyed. */
  created: { vhosts: string[]; users: string[] };
}

/** Writes JSON readable by its owner only (the file is created 0600, and made so if it existed). */
export function writePrivateJson(file: string, data: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function classFilePath(dir: string): string {
  return path.join(dir, 'class.json');
}

export function joinFilePath(dir: string, student: string): string {
  return path.join(dir, 'students', `${student}.json`);
}

/** Where `create` puts a class when no --out is given: git-ignored, beside the learner's state. */
export function defaultClassDir(name: string): string {
  return path.join(STATE_DIR, 'classes', name);
}

export function readClassFile(dir: string): ClassFile {
  const file = classFilePath(dir);
  const data = JSON.parse(readFileSync(file, 'utf8')) as ClassFile;
  if (data.kind !== 'rabbitmq-workbook-class') throw new Error(`${file} is not a class file of the workbook`);
  return data;
}

/** The classes under the default folder (for list/reset/destroy without --out). */
export function knownClassDirs(): string[] {
  const root = path.join(STATE_DIR, 'classes');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((n) => path.join(root, n))
    .filter((d) => existsSync(classFilePath(d)));
}

export function removeClassFiles(dir: string): void {
  rmSync(path.join(dir, 'students'), { recursive: true, force: true });
  rmSync(classFilePath(dir), { force: true });
}

export function readJoinFile(file: string): JoinFile {
  const data = JSON.parse(readFileSync(file, 'utf8')) as JoinFile;
  const missing = (['className', 'student', 'user', 'password', 'amqpUrls', 'managementUrl', 'pool', 'demoVhost'] as const).filter((k) => !data[k]);
  if (data.kind !== 'rabbitmq-workbook-classroom' || missing.length || !data.pool.length) {
    throw new Error(`${file} is not a classroom join file${missing.length ? ` (missing: ${missing.join(', ')})` : ''}. Ask your instructor for yours (students/sNN.json).`);
  }
  return data;
}

// ---- the learner's side -----------------------------------------------------

/** The joined classroom, read by every command of the learner's runner. */
export const seatFile = (): string => path.join(STATE_DIR, 'classroom.json');

export function readSeat(): JoinFile | undefined {
  return existsSync(seatFile()) ? readJoinFile(seatFile()) : undefined;
}

export function writeSeat(join: JoinFile): void {
  writePrivateJson(seatFile(), join);
}

export function removeSeat(): boolean {
  if (!existsSync(seatFile())) return false;
  rmSync(seatFile(), { force: true });
  return true;
}

// npm run classroom -- dashboard [--port P] [--stuck-fails N] [--stuck-minutes M]: the
// instructor's live view of the class. Reads the class file for the instructor's credentials,
// rebuilds the class from the events stream, then serves the page until Ctrl-C.
import { randomBytes } from 'node:crypto';
import pc from 'picocolors';
import { ManagementClient } from '../broker/management.js';
import { classFilePath, writePrivateJson, type ClassFile } from '../classroom/files.js';
import { workbook } from '../session.js';
import { rel } from '../paths.js';
import { acceptEvent } from './event-schema.js';
import { ClassState, DEFAULT_THRESHOLDS, type Thresholds } from './state.js';
import { ensureDashboardStream, readStream } from './stream.js';
import { startDashboard } from './server.js';

export interface DashboardRunOptions {
  port: number;
  /** Only this machine by default: the page shows every learner's progress. */
  host: string;
  thresholds?: Partial<Thresholds>;
}

export async function runDashboard(dir: string, cls: ClassFile, opts: DashboardRunOptions): Promise<{ url: string; close(): Promise<void> }> {
  // A class made before dashboards existed gets its password now, kept in its class file.
  if (!cls.dashboard) {
    cls.dashboard = { password: randomBytes(18).toString('base64url') };
    writePrivateJson(classFilePath(dir), cls);
  }
  const instructor = new ManagementClient(cls.managementUrl, cls.instructor.user, cls.instructor.password);
  await ensureDashboardStream(instructor, cls.classroomVhost, cls.exchange);

  const wb = workbook();
  const state = new ClassState(cls.name, cls.students.map((s) => s.id), wb.exercises.map((e) => ({ id: e.id, title: e.title })), { ...DEFAULT_THRESHOLDS, ...opts.thresholds });
  const users = new Map(cls.students.map((s) => [s.user, s.id]));
  const exerciseIds = new Set(wb.exercises.map((e) => e.id));
  const dashboard = await startDashboard({ state, password: cls.dashboard.password, port: opts.port, host: opts.host });

  const urls = cls.amqpUrls.map((u) => {
    const amqp = new URL(u);
    return `${amqp.protocol}//${encodeURIComponent(cls.instructor.user)}:${encodeURIComponent(cls.instructor.password)}@${amqp.host}/${encodeURIComponent(cls.classroomVhost)}`;
  });
  const log = (line: string) => console.log(pc.dim(`${new Date().toISOString().slice(11, 19)} ${line}`));
  const reader = readStream(urls, (msg) => {
    const accepted = acceptEvent(msg.content, msg.properties.userId as string | undefined, users, exerciseIds);
    if (accepted.ok) {
      if (state.isNew(msg.properties.userId as string, msg.properties.messageId)) dashboard.update(state.apply(accepted.event));
    } else {
      state.refused++;
      // The reason names the learner and the rule broken; the learner's own text is never printed.
      log(`ignored an event: ${accepted.reason}`);
      dashboard.update();
    }
  }, log);

  const shown = opts.host === '0.0.0.0' || opts.host === '::' ? 'localhost' : opts.host;
  return {
    url: `http://${shown.includes(':') ? `[${shown}]` : shown}:${dashboard.port}/`,
    async close() {
      await reader.close();
      await dashboard.close();
    },
  };
}

export function passwordHint(dir: string): string {
  return `the password in ${rel(classFilePath(dir))} ("dashboard": { "password": … })`;
}

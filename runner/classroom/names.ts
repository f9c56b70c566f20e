// How everything a class creates on the broker is named. Every name starts with
// "cls-<class>", so that `destroy` can refuse anything that is not the class's own,
// and an operator reading the management UI sees at once whose objects they are.

/** A class name: lower case letters, digits and dashes (it goes into vhost names, user names and regexes). */
export const CLASS_NAME = /^[a-z0-9][a-z0-9-]{0,23}$/;

/** Sandbox vhosts per learner: checks of one learner run at most this many at once. */
export const POOL_SIZE = 4;

/** The exchange learners publish their check events to, in the classroom vhost. */
export const EVENTS_EXCHANGE = 'checks';

export function classPrefix(name: string): string {
  return `cls-${name}`;
}

/** s01, s02 … s99 (three digits past 99). */
export function studentId(n: number, total: number): string {
  return `s${String(n).padStart(Math.max(2, String(total).length), '0')}`;
}

export const names = {
  classroomVhost: (cls: string) => classPrefix(cls),
  instructor: (cls: string) => `${classPrefix(cls)}-instructor`,
  user: (cls: string, student: string) => `${classPrefix(cls)}-${student}`,
  pool: (cls: string, student: string) => Array.from({ length: POOL_SIZE }, (_, i) => `${classPrefix(cls)}-${student}-p${i + 1}`),
  demo: (cls: string, student: string) => `${classPrefix(cls)}-${student}-demo`,
};

/** True when `name` (a vhost or a user) belongs to class `cls`: the class's vhost itself, or a name under its prefix. */
export function belongsToClass(cls: string, name: string): boolean {
  const prefix = classPrefix(cls);
  return name === prefix || name.startsWith(`${prefix}-`);
}

/** A regex that matches exactly `name` and nothing else (permission regexes are not anchored by RabbitMQ). */
export function exactly(name: string): string {
  return `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

// A joined classroom, as the broker the runner uses: the learner's own user and password
// (never an administrator's), and the vhosts the instructor made for them.
import type { ProbeTarget } from '../broker/probe.js';
import type { JoinFile } from './files.js';

export function seatTarget(join: JoinFile): ProbeTarget {
  const amqp = new URL(join.amqpUrls[0]!);
  const port = amqp.port || (amqp.protocol === 'amqps:' ? '5671' : '5672');
  const cred = `${encodeURIComponent(join.user)}:${encodeURIComponent(join.password)}`;
  return {
    source: 'classroom',
    description: `classroom "${join.className}" as learner ${join.student} (${amqp.hostname}:${port})`,
    amqpUrl: `${amqp.protocol}//${cred}@${amqp.hostname}:${port}`,
    managementUrl: join.managementUrl.replace(/\/+$/, ''),
    username: join.user,
    password: join.password,
    classroom: {
      className: join.className,
      student: join.student,
      pool: join.pool,
      demoVhost: join.demoVhost,
      classroomVhost: join.classroomVhost,
      exchange: join.exchange,
    },
  };
}

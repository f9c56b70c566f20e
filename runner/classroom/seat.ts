// A joined classroom, as the broker the runner uses: the learner's own user and password
// (never an administrator's), and the vhosts the instructor made for them.
import type { ProbeTarget } from '../broker/probe.js';
import { isListening } from '../broker/ports.js';
import { amqpPort } from '../broker/types.js';
import type { JoinFile } from './files.js';

/**
 * The class's AMQP addresses in the order this learner tries them. On a cluster each learner
 * starts on a node of their own (s01 the first, s02 the second…), so that a class spreads its
 * connections over the nodes instead of piling them onto the first.
 */
export function nodesInTurn(join: Pick<JoinFile, 'student' | 'amqpUrls'>): string[] {
  const urls = join.amqpUrls;
  const n = Number(/\d+$/.exec(join.student)?.[0] ?? '1');
  const first = (Math.max(1, n) - 1) % urls.length;
  return [...urls.slice(first), ...urls.slice(0, first)];
}

/** The learner's first node that accepts a TCP connection, or their first node when none does (the broker check then says why). */
export async function answeringNode(join: Pick<JoinFile, 'student' | 'amqpUrls'>): Promise<string> {
  const order = nodesInTurn(join);
  if (order.length === 1) return order[0]!;
  for (const url of order) {
    const u = new URL(url);
    if (await isListening(amqpPort(u), u.hostname, 1000)) return url;
  }
  return order[0]!;
}

export function seatTarget(join: JoinFile, amqpUrl = nodesInTurn(join)[0]!): ProbeTarget {
  const amqp = new URL(amqpUrl);
  const port = amqpPort(amqp);
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

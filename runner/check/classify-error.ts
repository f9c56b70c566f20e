// Sorts an error that escaped a check (anything but CheckFailure and CheckSkipped) into:
//   - the learner's: thrown by their code, or the broker refusing one of the checker's own
//     steps because of what their code left behind (an exclusive queue, other arguments, a
//     missing queue, an internal exchange, a connection closed under the checker): a failed
//     verdict that names it;
//   - the environment's: the broker went away in the middle;
//   - a bug in the check: none of these.
import { ManagementError } from '../broker/management.js';
import { explainError } from './explain-error.js';
import { thrownByLearnerCode, mapCompiledPaths } from './source-map.js';
import type { Finding } from './verdict.js';

export type Classified = { kind: 'learner'; finding: Finding } | { kind: 'environment'; finding: Finding } | { kind: 'bug' };

export interface ClassifyContext {
  /** The last error the broker closed the checker's connection or one of its channels with (amqplib then only says "channel closed"). */
  lastBrokerError?: unknown;
  /** Management UI page of a queue or an exchange in the check's vhost. */
  ui: (kind: 'queues' | 'exchanges' | 'connections', name?: string) => string;
}

export function classifyCheckError(err: unknown, context: ClassifyContext): Classified {
  if (thrownByLearnerCode(err)) return { kind: 'learner', finding: explainError('Your code', err) };
  const refusal = brokerRefusal(err, context.lastBrokerError);
  const finding = refusal && refusalFinding(refusal, context);
  if (finding) return { kind: 'learner', finding };
  if (err instanceof ManagementError && err.status === 404) return { kind: 'learner', finding: missingInManagement(err) };
  if (brokerWentAway(err, refusal)) return { kind: 'environment', finding: wentAway(err) };
  return { kind: 'bug' };
}

export interface BrokerRefusal {
  /** AMQP reply code: 403, 404, 405, 406, 320… */
  code: number;
  /** e.g. RESOURCE_LOCKED */
  name: string;
  /** The broker's words, e.g. "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'tasks' in vhost '…'". */
  text: string;
}

const REPLY = /(\d{3}) \(([A-Z-]+)\) with message "(.*)"/;

/**
 * The broker's refusal inside an amqplib error: in its message ("Operation failed: QueueDeclare;
 * 405 (RESOURCE-LOCKED) with message …"), in the reason a closed channel recorded, or, for a
 * bare "channel closed" or "channel ended", in the last error the checker's connection or
 * channels were closed with.
 */
export function brokerRefusal(err: unknown, lastBrokerError?: unknown): BrokerRefusal | undefined {
  const texts = [messageOf(err), (err as { stackAtStateChange?: string } | undefined)?.stackAtStateChange?.split('\n')[0]];
  if (/channel (closed|ended)/i.test(messageOf(err))) texts.push(messageOf(lastBrokerError));
  for (const text of texts) {
    const m = text?.match(REPLY);
    if (m) return { code: Number(m[1]), name: m[2]!.replace(/-/g, '_'), text: m[3]! };
  }
  return undefined;
}

function refusalFinding(r: BrokerRefusal, context: ClassifyContext): Finding | undefined {
  const subject = r.text.match(/(queue|exchange) '([^']*)'/);
  const kind = (subject?.[1] ?? 'queue') as 'queue' | 'exchange';
  const name = subject?.[2] ?? '';
  const link = subject ? context.ui(kind === 'queue' ? 'queues' : 'exchanges', name) : undefined;
  const said = `the broker answered ${r.code} ${r.name}`;

  if (r.code === 405) {
    return {
      summary: `The checker could not use the queue "${name}": your code declared it exclusive, and an exclusive queue is still held by your connection (${said}).`,
      expected: `a queue "${name}" that other connections can read`,
      saw: `"${name}" is exclusive to the connection your code opened`,
      why: 'An exclusive queue belongs to the one connection that declared it: no other connection may read it, consume from it or even look it up, and it is deleted when that connection closes. Here the other connection is the checker; in production it is every other program, and a second copy of yours.',
      fix: `Declare "${name}" without exclusive: true. Exclusive queues are for a client's own temporary queues (a reply queue), not for a queue others use.`,
      link,
    };
  }
  if (r.code === 406) {
    const arg = r.text.match(/inequivalent arg '([^']+)'/)?.[1];
    const values = r.text.match(/received (.+) but current is (.+)$/);
    if (arg) {
      const isProperty = ['durable', 'auto_delete', 'exclusive', 'type', 'internal'].includes(arg);
      return {
        summary: `Your code declared the ${kind} "${name}" with other ${isProperty ? 'properties' : 'arguments'} than the exercise expects ('${arg}'), so the broker refused the checker's own declaration (${said}).`,
        expected: values ? `'${arg}' ${values[1]} (as the exercise asks)` : `'${arg}' as the exercise asks`,
        saw: values ? `'${arg}' ${values[2]} (as your code declared it)` : `another '${arg}'`,
        why: `A ${kind}'s settings are fixed when it is first declared. Declaring it again with other settings is refused, and the channel that tried is closed: every program that shares the ${kind} must declare it the same way.`,
        fix: `Declare "${name}" exactly as the exercise says (the TODOs in your file list its options), including '${arg}'.`,
        link,
      };
    }
    return {
      summary: `The broker refused one of the checker's steps because of something your code left in it: ${r.text} (${said}).`,
      why: 'Something your code declared or left behind is set up differently from what the exercise expects, and the broker enforces it.',
      fix: "Compare what your code declares with the exercise's TODOs; the management UI link shows what is there.",
      link,
    };
  }
  if (r.code === 404) {
    return {
      summary: `The ${kind} "${name}" is missing when the checker needs it: something your code should have declared, and kept, is not there (${said}).`,
      expected: `the ${kind} "${name}"`,
      saw: `no ${kind} "${name}" in the broker`,
      why: `The broker only knows what someone declared, and it deletes an exclusive or auto-delete ${kind} by itself once its connection (or its last consumer, or binding) is gone.`,
      fix:
        kind === 'queue'
          ? `Declare it with channel.assertQueue('${name}', …) as the exercise says, without exclusive or autoDelete.`
          : `Declare it with channel.assertExchange('${name}', …) as the exercise says, without autoDelete.`,
      link: context.ui(kind === 'queue' ? 'queues' : 'exchanges'),
    };
  }
  if (r.code === 403 && /internal exchange/.test(r.text)) {
    return {
      summary: `The checker could not publish to the exchange "${name}": your code declared it internal (${said}).`,
      expected: `an exchange "${name}" clients can publish to`,
      saw: 'internal: true',
      why: 'An internal exchange only takes messages from other exchanges bound to it; no client may publish to it, so no publisher could use yours.',
      fix: `Declare "${name}" without internal: true.`,
      link,
    };
  }
  if (r.code === 403 && /exclusive use/.test(r.text)) {
    return {
      summary: `The checker could not consume from the queue "${name}": your code consumes from it with exclusive: true (${said}).`,
      expected: `a queue "${name}" that more than one consumer can read`,
      saw: 'an exclusive consumer on it',
      why: 'An exclusive consumer is the only consumer a queue allows: nobody else can start consuming, so the work cannot be shared or taken over.',
      fix: 'Consume without exclusive: true.',
      link,
    };
  }
  if (r.code === 320 && !/shutdown/.test(r.text)) {
    return {
      summary: `The checker's own connection to the broker was closed under it while it was checking (${said}: ${r.text}).`,
      why: "Something closed connections that were not its own. Closing every connection the management API lists (or deleting the vhost) closes the checker's too, and in production everybody else's.",
      fix: 'Close only the connections your code opened: keep the connection object it returned and call close() on it.',
      link: context.ui('connections'),
    };
  }
  if (r.code >= 400 && r.code < 500) {
    return {
      summary: `The broker closed the checker's channel because of something your code left in it: ${r.text} (${said}).`,
      ...pick(explainError('The checker', new Error(r.text)), ['why', 'fix']),
      link,
    };
  }
  return undefined;
}

function missingInManagement(err: ManagementError): Finding {
  return {
    summary: `The checker asked the management API about something your code should have left in the broker, and it is missing: ${err.message}`,
    why: 'The broker only knows what someone declared; a vhost, queue or exchange deleted by your code is gone for the checker too.',
    fix: 'Keep what the exercise asks your code to declare, and delete nothing your code did not create.',
  };
}

function brokerWentAway(err: unknown, refusal: BrokerRefusal | undefined): boolean {
  if (refusal?.code === 320 || (refusal && refusal.code >= 500)) return true;
  if (err instanceof ManagementError) return err.status === undefined || err.status >= 500;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Socket closed abruptly|Unexpected close|Heartbeat timeout/i.test(messageOf(err));
}

function wentAway(err: unknown): Finding {
  return {
    summary: `The broker stopped answering the checker in the middle of the check: ${mapCompiledPaths(messageOf(err))}`,
    why: 'Your code cannot cause this: the broker was stopped or restarted while the check ran (by another program, or another check), or it is overloaded.',
    fix: 'Run the check again. If it happens again, npm run doctor shows what is wrong with the broker.',
  };
}

function messageOf(err: unknown): string {
  if (err === undefined || err === null) return '';
  return err instanceof Error ? err.message : String(err);
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}

// Expectations about the broker's topology that many checks share: "this queue is a
// durable quorum queue", "this exchange exists, with this type, and is durable". Each
// failure says what was expected, what is there instead, and why it matters.
import type { CheckContext } from './context.js';
import type { ExchangeInfo, QueueInfo } from '../broker/management.js';

type Ctx = CheckContext<unknown>;

const declareQuorum = (name: string) => `channel.assertQueue('${name}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`;

/** The queue, which must exist and be a (durable) quorum queue. `missing` explains a likely reason it is absent. */
export async function expectQuorumQueue(t: Ctx, name: string, missing?: { why: string; fix: string }): Promise<QueueInfo> {
  const q = await t.queue(name, missing ?? { fix: `Declare it: ${declareQuorum(name)}` });
  if (q.type !== 'quorum') {
    t.fail({
      summary: `The queue "${name}" is a ${q.type ?? 'classic'} queue, not a quorum queue.`,
      expected: "type quorum (arguments: { 'x-queue-type': 'quorum' })",
      saw: `type ${q.type ?? 'classic'}${q.durable ? '' : ', not durable'}, arguments ${JSON.stringify(q.arguments)}`,
      why: 'Without the x-queue-type argument RabbitMQ creates a classic queue: one copy, on one node. Quorum queues are durable, replicated, and the default for anything you care about.',
      fix: declareQuorum(name),
      link: t.ui('queues', name),
    });
  }
  return q;
}

const TYPE_MEANING: Record<string, string> = {
  direct: 'A direct exchange delivers a message to the queues bound with exactly its routing key.',
  fanout: 'A fanout exchange copies every message to every bound queue, whatever the routing key.',
  topic: 'A topic exchange matches the routing key against patterns with * and #.',
  headers: 'A headers exchange ignores the routing key and matches the message headers against the binding arguments.',
};

/** The exchange, which must exist, be of `type` and durable. `declare` is the line that declares it right. */
export async function expectExchange(t: Ctx, name: string, type: string, declare: string): Promise<ExchangeInfo> {
  const x = await t.mgmt.exchange(t.vhost, name);
  if (!x) {
    const others = (await t.mgmt.exchanges(t.vhost)).filter((e) => e.name !== '' && !e.name.startsWith('amq.'));
    t.fail({
      summary: `There is no exchange named "${name}" in the broker.`,
      expected: `a ${type} exchange "${name}"`,
      saw: others.length ? `exchanges: ${others.map((e) => `"${e.name}" (${e.type})`).join(', ')}` : 'only the built-in exchanges (amq.* and the default one)',
      why: 'Publishing to an exchange that does not exist is a channel error (NOT_FOUND), and binding a queue to it fails too. Someone has to declare it first.',
      fix: declare,
      link: t.ui('exchanges'),
    });
  }
  if (x.type !== type) {
    t.fail({
      summary: `The exchange "${name}" is a ${x.type} exchange, not a ${type} exchange.`,
      expected: `type: ${type}`,
      saw: `type: ${x.type}`,
      why: `${TYPE_MEANING[x.type] ?? 'Its type decides how it routes.'} ${TYPE_MEANING[type] ?? ''} The type is fixed when the exchange is declared.`,
      fix: `${declare} (Ran your file on its own before? Delete the old exchange from vhost "/" first, e.g. with npm run reset, or the broker refuses to redeclare it with another type: PRECONDITION_FAILED.)`,
      link: t.ui('exchanges', name),
    });
  }
  if (!x.durable) {
    t.fail({
      summary: `The exchange "${name}" is not durable.`,
      expected: 'durable: true',
      saw: 'durable: false (transient)',
      why: 'A transient exchange, and every binding to it, is gone after the broker restarts. The durable queues survive, but nothing routes to them any more, and publishers get channel errors.',
      fix: declare,
      link: t.ui('exchanges', name),
    });
  }
  return x;
}

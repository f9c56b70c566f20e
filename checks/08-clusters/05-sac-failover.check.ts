// Check 8.5: two instances of the learner's consumer on one queue with single active consumer.
// The broker lists one as active and the other as waiting, each with prefetch 1. Twenty messages
// go to the active one only, in order; handle() rejects m05 once (it must come back at once,
// before m06) and never finishes m08. The checker then closes the active instance's connection
// through the management API, as an operator or a failing node would: the standby must take
// over with m08 first, then m09 to m20, nothing lost, and the first instance must survive the
// closed connection. A third instance waits as the new standby; stop() on the active one hands
// the queue over to it; finally the queue is deleted under it, and its connection cut.
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/08-clusters/05-sac-failover.js';
import type { ConsumerInfo } from '../../runner/broker/management.js';
import { connectionMark, connectionsSince, sentBy, type AmqpConnection } from '../../runner/check/frames.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { cutConnectionsAndSurvive, deleteQueueUnderConsumer, describeValue, expectMethods } from '../06-patterns/support.js';
import { clientPort, consumersOn, localPorts } from './support.js';

type T = CheckContext<typeof Exercise>;
/** A consumer as the management API lists it under single active consumer. */
type SacConsumer = ConsumerInfo & { active?: boolean; activity_status?: string };

const QUEUE = 'orders';
const label = (i: number) => `m${String(i).padStart(2, '0')}`;
const FIRST = Array.from({ length: 20 }, (_, i) => label(i + 1));
const FAILS_ONCE = 'm05';
const HANGS = 'm08';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const never = new Promise<never>(() => undefined);

interface Instance {
  name: string;
  consumer: Exercise.Consumer;
  conns: AmqpConnection[];
  ports: number[];
  /** Every handle() call, in order. */
  calls: string[];
  done: string[];
  active: number;
  maxAtOnce: number;
  notText?: string;
}

/** What handle() does, shared by every instance: 10 ms a message; FAILS_ONCE rejects the first time; HANGS never ends. */
const script = { failed: false, hung: false };

export default defineCheck<typeof Exercise>(async (t) => {
  script.failed = false;
  script.hung = false;
  const start = async (name: string): Promise<Instance> => {
    const mark = connectionMark();
    const inst = { name, calls: [], done: [], active: 0, maxAtOnce: 0 } as unknown as Instance;
    const handle = async (text: string) => {
      if (typeof text !== 'string') inst.notText ??= describeValue(text);
      const body = String(text);
      inst.calls.push(body);
      inst.active++;
      inst.maxAtOnce = Math.max(inst.maxAtOnce, inst.active);
      try {
        if (body === HANGS && !script.hung) {
          script.hung = true;
          await never;
        }
        await sleep(10);
        if (body === FAILS_ONCE && !script.failed) {
          script.failed = true;
          throw new Error(`handle("${body}") failed on purpose, the first time`);
        }
        inst.done.push(body);
      } finally {
        inst.active--;
      }
    };
    inst.consumer = await t.call(`startConsumer(url, "${QUEUE}", handle) for instance ${name}`, () => t.target.startConsumer(t.url, QUEUE, handle));
    expectMethods(t, 'startConsumer()', inst.consumer, ['stop']);
    inst.conns = connectionsSince(mark);
    inst.ports = localPorts(inst.conns);
    return inst;
  };

  // 1. Two instances; the broker makes one active and keeps the other waiting.
  t.provoke(1, `started instance A in a vhost where "${QUEUE}" does not exist yet, then instance B`);
  const a = await startOrExplainExclusive(t, () => start('A'), 'A');
  const b = await startOrExplainExclusive(t, () => start('B'), 'B');
  const q = await expectQuorumQueue(t, QUEUE, {
    why: 'Every instance declares the queue it consumes from, so that it exists whichever starts first.',
    fix: "channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-delivery-limit': 20 } })",
  });
  if (q.arguments['x-single-active-consumer'] !== true) {
    const exclusive = (await consumersOn(t, QUEUE, a.ports, 1, 6000)).some((c) => c.exclusive);
    if (exclusive) failExclusive(t, 'instance A consumes with an exclusive consumer (the broker lists it as exclusive)');
    t.fail({
      summary: `"${QUEUE}" was declared without single active consumer: ${q.arguments['x-single-active-consumer'] === undefined ? 'no x-single-active-consumer argument' : `x-single-active-consumer ${JSON.stringify(q.arguments['x-single-active-consumer'])}`}.`,
      expected: 'x-single-active-consumer: true',
      saw: `arguments ${JSON.stringify(q.arguments)}`,
      why: 'Without it the broker deals the messages out in turn to every consumer of the queue, so two instances handle the messages of one queue at the same time, and the order between them is lost. It can only be set when the queue is declared (not by a policy).',
      fix: "arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true }",
      link: t.ui('queues', QUEUE),
    });
  }
  if (q.arguments['x-delivery-limit'] !== 20) {
    t.fail({
      summary: `"${QUEUE}" has ${q.arguments['x-delivery-limit'] === undefined ? 'no x-delivery-limit' : `x-delivery-limit ${JSON.stringify(q.arguments['x-delivery-limit'])}`}, not 20.`,
      expected: 'x-delivery-limit: 20',
      saw: `arguments ${JSON.stringify(q.arguments)}`,
      why: 'The limit stops a message that fails every time (a poison message) after 20 deliveries, on every version: 4.x sets 20 by default, 3.x sets none. On 3.x it also decides where a rejected message goes back: without a limit, to the back of a quorum queue, behind everything published after it, so the order is lost; with one, to the head, as on 4.x.',
      fix: "arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-delivery-limit': 20 }",
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(1, `read "${QUEUE}" from the broker: a durable quorum queue with x-single-active-consumer true and x-delivery-limit 20`);

  const listed: SacConsumer[] = await consumersOn(t, QUEUE, [...a.ports, ...b.ports], 2, 8000);
  const of = (inst: Instance) => listed.find((c) => inst.ports.includes(clientPort(c) ?? -1));
  const ca = of(a);
  const cb = of(b);
  if (!ca || !cb) {
    // The management API is slow to list them (a busy machine): the frames say as much.
    const consumed = [a, b].filter((i) => sentBy(i.conns, 'basic.consume').some((m) => m.queue === QUEUE));
    if (consumed.length < 2) {
      t.fail({
        summary: `Two instances were started, but ${consumed.length === 0 ? 'neither' : 'only one'} consumes "${QUEUE}".`,
        expected: '2 consumers, one per instance: one active, one waiting',
        saw: `basic.consume sent by ${consumed.map((i) => i.name).join(', ') || 'no instance'}`,
        fix: 'Each call of startConsumer() must consume from the queue: channel.consume(queue, onMessage, { noAck: false }).',
        link: t.ui('queues', QUEUE),
      });
    }
    const prefetch = [a, b].map((i) => sentBy(i.conns, 'basic.qos').at(-1)?.prefetchCount ?? 0);
    if (prefetch.some((p) => p !== 1)) {
      t.fail({
        summary: `An instance consumes with prefetch ${prefetch.find((p) => p !== 1) === 0 ? '0 (no limit)' : prefetch.find((p) => p !== 1)}: it takes more than one message at a time.`,
        expected: 'prefetch 1 on every consumer',
        saw: `A: prefetch ${prefetch[0]}, B: prefetch ${prefetch[1]}`,
        fix: 'await channel.prefetch(1) before channel.consume(...).',
      });
    }
    t.observe(2, `read the frames of both instances: prefetch ${prefetch.join(' and ')} (the management API did not list the consumers in time)`);
    t.note('The management API did not list both consumers in time; their prefetch was read from the frames your code sent, and their state (active, waiting) was not read.');
  } else {
    expectPrefetchOne(t, [ca, cb]);
    const actives = [ca, cb].filter((c) => c.active !== false);
    if (actives.length !== 1) {
      t.fail({
        summary: `The broker lists ${actives.length === 2 ? 'both consumers as active' : 'no active consumer'}: the messages would go to ${actives.length === 2 ? 'both instances in turn' : 'nobody'}.`,
        expected: 'one consumer "single_active", the other "waiting"',
        saw: `A: ${state(ca)}, B: ${state(cb)}`,
        why: 'Single active consumer is what keeps one queue in one consumer\'s hands: the others wait, ready to take over.',
        fix: "Declare the queue with x-single-active-consumer: true.",
        link: t.ui('queues', QUEUE),
      });
    }
    t.observe(1, `the broker lists A's consumer as ${state(ca)} and B's as ${state(cb)}`);
  }

  // 3. Twenty messages: one instance handles them all, one at a time, in order.
  await t.publish(QUEUE, FIRST);
  t.provoke([2, 3], `published ${FIRST[0]} to ${FIRST.at(-1)}; handle() takes 10 ms a message, rejects ${FAILS_ONCE} the first time, and never finishes ${HANGS}`);
  await t.waitFor(() => a.calls.includes(HANGS) || b.calls.includes(HANGS), 3000);
  await sleep(300);
  const [active, standby] = a.calls.length >= b.calls.length ? [a, b] : [b, a];
  if (a.notText ?? b.notText) {
    t.fail({
      summary: `handle() was called with ${a.notText ?? b.notText}, not with the text of the message.`,
      expected: 'handle("m01"): a string',
      saw: `handle(${a.notText ?? b.notText})`,
      fix: 'handle(msg.content.toString())',
    });
  }
  expectOneAtATime(t, a);
  expectOneAtATime(t, b);
  if (standby.calls.length > 0) {
    t.fail({
      summary: `Both instances received messages: A handled ${a.calls.join(', ')}; B handled ${b.calls.join(', ')}.`,
      expected: 'every message to the active consumer, none to the standby',
      saw: `A: ${a.calls.length} call(s) of handle(), B: ${b.calls.length}`,
      why: 'With two consumers and no single active consumer, the broker hands the messages out in turn: they are handled in parallel and their order is lost.',
      fix: "arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true }",
      link: t.ui('queues', QUEUE),
    });
  }
  const expected1 = ['m01', 'm02', 'm03', 'm04', 'm05', 'm05', 'm06', 'm07', 'm08'];
  if (active.calls.join() !== expected1.join()) {
    const fives = active.calls.filter((x) => x === FAILS_ONCE).length;
    t.fail({
      summary:
        fives < 2
          ? `When handle("${FAILS_ONCE}") rejected, the message was dropped: it never came back.`
          : `When handle("${FAILS_ONCE}") rejected, it did not come back before the next message: order was lost.`,
      expected: `handle() for ${expected1.join(', ')}`,
      saw: `handle() for ${active.calls.join(', ')}`,
      why:
        fives < 2
          ? 'A failure is often temporary. Rejected without requeue (or acked), the message is gone for good; with requeue it goes back to the head of the queue and the active consumer gets it again.'
          : 'A message rejected with requeue goes back to the head of a quorum queue and is delivered again before anything after it.',
      fix: 'handle(text).then(() => channel.ack(msg), () => channel.reject(msg, true)).',
      link: t.ui('queues', QUEUE),
    });
  }
  t.expectRejectsNotNacks(3, `When handle("${FAILS_ONCE}") rejected`);
  t.observe([1, 2, 3], `instance ${active.name} alone handled ${expected1.join(', ')}: one at a time, ${FAILS_ONCE} again right after it failed; instance ${standby.name} got nothing`);

  // 4. The active instance's connection is closed: the standby takes over, in order.
  const how = await closeActiveConnection(t, active);
  t.provoke([1, 4], `closed instance ${active.name}'s ${how} while handle("${HANGS}") was still running`);
  const rest = FIRST.slice(FIRST.indexOf(HANGS));
  await t.waitFor(() => standby.done.includes(FIRST.at(-1)!), 5000);
  await sleep(200);
  if (standby.calls.join() !== rest.join()) {
    const lost = rest.filter((x) => !standby.calls.includes(x));
    t.fail({
      summary:
        standby.calls.length === 0
          ? `After instance ${active.name}'s connection was closed, instance ${standby.name} got nothing: nobody took over.`
          : lost.length
            ? `After the failover, ${lost.join(', ')} never reached instance ${standby.name}: ${lost.length === 1 ? 'it was' : 'they were'} lost.`
            : `After the failover, instance ${standby.name} did not get ${rest[0]} first, then the rest in order.`,
      expected: `instance ${standby.name}: handle() for ${rest[0]} (the message in progress, returned to the queue), then ${rest[1]} to ${rest.at(-1)}`,
      saw: `instance ${standby.name}: handle() for ${standby.calls.join(', ') || 'nothing'}`,
      why: lost.includes(HANGS)
        ? `An ack sent before handle() has finished tells the broker the message is done. When the instance dies, that message is gone, and its work never happened.`
        : 'When the active consumer goes away, the broker returns its unacknowledged message to the head of the queue and makes a waiting consumer active: it gets that message first.',
      fix: lost.includes(HANGS) ? 'Ack in the .then() of handle(), never before it.' : 'prefetch(1), ack after handle() resolves, and single active consumer on the queue.',
      link: t.ui('queues', QUEUE),
    });
  }
  expectOneAtATime(t, standby);
  const left = await t.messageCount(QUEUE);
  if (left !== 0) {
    t.fail({
      summary: `After instance ${standby.name} had handled ${rest.at(-1)}, ${left} message(s) were still ready in "${QUEUE}".`,
      expected: '0 messages ready',
      saw: `${left}`,
      fix: 'Ack each message once its handle() resolves.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(1, `instance ${standby.name} took over: handle() for ${rest.join(', ')}, in order, and "${QUEUE}" is empty`);
  t.observe(4, `instance ${active.name}'s process went on after its connection was closed`);

  // 5. A third instance waits; stop() on the active one hands over to it.
  t.provoke(1, `started instance C: "${QUEUE}" exists, and ${standby.name} is active`);
  const c = await start('C');
  const [cc]: SacConsumer[] = await consumersOn(t, QUEUE, c.ports, 1, 8000);
  if (!cc && !sentBy(c.conns, 'basic.consume').some((m) => m.queue === QUEUE)) {
    t.fail({ summary: `Instance C does not consume "${QUEUE}".`, fix: 'startConsumer() must work when the queue exists: declare, prefetch, consume.', link: t.ui('queues', QUEUE) });
  }
  t.observe(1, cc ? `the broker lists instance C's consumer as ${state(cc)}` : 'instance C consumes (its basic.consume was accepted)');
  t.provoke(5, `called stop() on instance ${standby.name}, the active one`);
  await t.expectClosedOnReturn(`stop() on instance ${standby.name}`, standby.conns, () => standby.consumer.stop());
  await t.publish(QUEUE, ['m21']);
  await t.waitFor(() => c.done.includes('m21'), 3000);
  if (!c.done.includes('m21')) {
    t.fail({
      summary: `After stop() on instance ${standby.name}, instance C did not get m21: the standby did not take over.`,
      expected: 'C becomes the active consumer and handles m21',
      saw: `C handled: ${c.calls.join(', ') || 'nothing'}; ${standby.name} handled after its stop(): ${standby.calls.filter((x) => x === 'm21').length ? 'm21' : 'nothing'}`,
      why: 'stop() must cancel the consumer (or close the connection): only then does the broker make a waiting consumer active.',
      fix: 'In stop(): await channel.cancel(consumerTag); await channel.close(); await connection.close().',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(5, `stop() closed instance ${standby.name}'s connection, and instance C took over: it handled m21`);

  await deleteQueueUnderConsumer(t, QUEUE, 4);
  await cutConnectionsAndSurvive(t, 4, 'a network failure under instance C');
});

/** Starts an instance; explains the broker's refusals beginners meet here (an exclusive consumer, a classic queue). */
async function startOrExplainExclusive(t: T, start: () => Promise<Instance>, name: string): Promise<Instance> {
  try {
    return await start();
  } catch (err) {
    const summary = (err as { finding?: { summary?: string } }).finding?.summary ?? (err as Error).message;
    if (/exclusive use|ACCESS[_-]REFUSED/i.test(summary) && name !== 'A') failExclusive(t, summary);
    if (/invalid arg 'x-[a-z-]+'.*rabbit_classic_queue/.test(summary)) {
      t.fail({
        summary: `"${QUEUE}" would be a classic queue, not a quorum queue: the broker refused its declaration.`,
        expected: "arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-delivery-limit': 20 }",
        saw: summary,
        why: 'A classic queue keeps one copy on one node: when that node goes, the queue and every consumer waiting on it go too. A quorum queue is replicated, elects a new leader, and keeps its standbys. (Delivery limits exist only on quorum queues: hence the refusal.)',
        fix: "channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-delivery-limit': 20 } })",
      });
    }
    throw err;
  }
}

function failExclusive(t: T, saw: string): never {
  t.fail({
    summary: 'Instance A holds the queue with an exclusive consumer instead of single active consumer.',
    expected: 'both instances subscribe: one active, one waiting as a standby (x-single-active-consumer: true)',
    saw,
    why: 'An exclusive consumer shuts every other consumer out: a standby cannot even subscribe (ACCESS_REFUSED), and has to poll and retry until the first one is gone. With single active consumer every instance subscribes; the broker picks one and switches to the next by itself.',
    fix: "No { exclusive: true } on consume(); declare the queue with x-single-active-consumer: true.",
    link: t.ui('queues', QUEUE),
  });
}

function state(c: SacConsumer): string {
  return `${c.activity_status ?? (c.active === false ? 'waiting' : 'active')} (prefetch ${c.prefetch_count})`;
}

function expectPrefetchOne(t: T, listed: ConsumerInfo[]): void {
  const wrong = listed.filter((c) => c.prefetch_count !== 1);
  if (wrong.length) {
    t.fail({
      summary: `The broker lists a consumer with prefetch ${wrong[0]!.prefetch_count === 0 ? '0 (no limit)' : wrong[0]!.prefetch_count}: it takes more than one message at a time.`,
      expected: 'prefetch 1 on every consumer',
      saw: listed.map((c) => `prefetch ${c.prefetch_count}`).join(', '),
      why: 'With more than one message in hand, handle() runs for several at once and they finish in any order; and when the instance dies, all of them go back to the queue. Order kept across a failover needs one message in progress at a time.',
      fix: 'await channel.prefetch(1) before channel.consume(...).',
    });
  }
  t.observe(2, `read the consumers from the broker: prefetch ${listed.map((c) => c.prefetch_count).join(' and ')}`);
}

/** Handle() never ran for two messages at once on this instance; when it did, say why from the frames. */
function expectOneAtATime(t: T, inst: Instance): void {
  if (inst.maxAtOnce <= 1) return;
  const prefetch = sentBy(inst.conns, 'basic.qos').map((m) => m.prefetchCount);
  const limited = prefetch.length > 0 && prefetch.every((p) => p === 1);
  t.fail({
    summary: limited
      ? `Instance ${inst.name} ran handle() for ${inst.maxAtOnce} messages at once with prefetch 1: it acked each message before handle() resolved.`
      : `Instance ${inst.name} ran handle() for ${inst.maxAtOnce} messages at once: it takes more than one message at a time (prefetch ${prefetch.join(', ') || 'none'}).`,
    expected: 'handle() for one message at a time, in the order of the queue',
    saw: `handle() called for ${inst.calls.slice(0, 10).join(', ')}, up to ${inst.maxAtOnce} at once`,
    why: limited
      ? 'The ack tells the broker the message is done, so it sends the next one at once, while the first is still being handled; and if the instance dies then, the acked message is lost.'
      : 'Messages handled at the same time finish in any order, and a failover returns every one of them to the queue. Order needs one message in progress at a time.',
    fix: limited ? 'Ack in the .then() of handle(), never before it.' : 'await channel.prefetch(1) before channel.consume(...).',
  });
}

/**
 * Closes the active instance's connection through the management API, as an operator (or a
 * node going down) would: the client gets CONNECTION_FORCED. On a machine so busy that the API
 * does not list the connection within 10 s, cuts its socket instead. Says which it did.
 */
async function closeActiveConnection(t: T, inst: Instance): Promise<string> {
  const name = await t.waitFor(async () => (await t.mgmt.connections(t.vhost)).find((c) => inst.ports.includes(c.peer_port))?.name, 10_000, 100);
  if (name && (await t.mgmt.closeConnection(name, 'workbook check 8.5: the active consumer goes away'))) return `its connection "${name}" through the management API`;
  const open = inst.conns.filter((c) => c.closed === undefined);
  if (open.length === 0) {
    t.fail({
      summary: `Instance ${inst.name}'s connection was not there to close: it had closed by itself.`,
      expected: 'the active instance keeps its connection open while handle() runs',
      saw: 'no connection of that instance in the broker',
      fix: 'Keep the connection open until stop().',
    });
  }
  for (const c of open) c.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  t.note('The management API did not list the active instance\'s connection within 10 s, so the checker cut its socket instead.');
  return 'its connection, by cutting the socket (ECONNRESET)';
}

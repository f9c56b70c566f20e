// Check 13.2: the exchange, the main queue (single active consumer, dead-lettering at least
// once), the dead-letter queue and the delay queues exist with the right arguments and
// bindings (read from the broker); a message published to the
// exchange lands in the main queue and survives a second declaration; the main queue
// dead-letters what it rejects; a message parked in a delay queue comes BACK after its delay
// (the checker uses short delays: 400 and 1000 ms); a declaration the broker refuses rejects;
// connect() names its connection and logs the error when the checker cuts it.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/02-topology.js';
import { memoryLogger } from '../../capstone/log.js';
import { announcedNames, checkerStep, firstMessages, rejection, takeReady, withResources } from './support.js';

const EXCHANGE = 'bridge';
const ROUTING_KEY = 'customer';
const QUEUE = 'bridge.customers';
const DLQ = 'bridge.customers.dead';
const DELAYS = [400, 1000];
/** The names the relay, the receiver and the other checks rely on: bridge.customers.retry.5s, ….400ms */
const delayQueue = (ms: number) => `${QUEUE}.retry.${ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`}`;
const AT_LEAST_ONCE = "'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish'";

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    // ---- line 5: which delay queue for which attempt (plain functions, no broker) ----
    t.provoke(5, `asked retryQueueFor(1…5, [${DELAYS}]) and retryQueueFor(1…5) with the default delays`);
    const picks = await t.call(`retryQueueFor(1…5, [${DELAYS}])`, () => [1, 2, 3, 4, 5].map((a) => t.target.retryQueueFor(a, DELAYS)));
    const want = [400, 1000, 1000, 1000, 1000].map(delayQueue);
    t.observe(5, `retryQueueFor() answered ${picks.join(', ')}`);
    if (picks.join() !== want.join()) {
      t.fail({
        summary:
          picks[1] === picks[0]
            ? 'Every retry waits as long as the first one: the delay does not grow.'
            : picks.some((p) => !want.includes(p))
              ? `retryQueueFor() names queues that assertTopology() does not declare (${picks.find((p) => !want.includes(p))}).`
              : 'retryQueueFor() does not pick the delay queues in order.',
        expected: want.map((w, i) => `${i + 1} → ${w}`).join(', '),
        saw: picks.map((p, i) => `${i + 1} → ${p}`).join(', '),
        why: 'While Odoo is down, retrying every few seconds forever adds load just when it hurts. Waiting longer each time (5 s, 10 s, 20 s, 30 s…) gives it room to come back, and the last delay repeats for as long as it takes.',
        fix: 'retryQueue(delaysMs[Math.min(attempt, delaysMs.length) - 1]): attempt 1 is delaysMs[0], and past the end the last delay again.',
      });
    }
    const defaults = [...t.target.RETRY_DELAYS_MS];
    const defaultPicks = defaults.map((_, i) => t.target.retryQueueFor(i + 1)).concat(t.target.retryQueueFor(defaults.length + 1));
    const growing = defaults.every((d, i) => i === 0 || d > defaults[i - 1]!);
    const wantDefaults = defaults.map(delayQueue).concat(delayQueue(defaults.at(-1)!));
    if (defaults[0] !== 5000 || !growing || defaultPicks.join() !== wantDefaults.join()) {
      t.fail({
        summary: defaults[0] !== 5000 ? `The first retry should wait 5 s (the original project's rhythm), but RETRY_DELAYS_MS starts with ${defaults[0]}.` : !growing ? `RETRY_DELAYS_MS does not grow: ${defaults.join(', ')}.` : 'retryQueueFor(attempt) without delays does not follow RETRY_DELAYS_MS.',
        expected: `RETRY_DELAYS_MS starting at 5000 and growing; retryQueueFor(1…${defaults.length + 1}) → ${wantDefaults.join(', ')}`,
        saw: `RETRY_DELAYS_MS [${defaults.join(', ')}]; retryQueueFor(1…${defaults.length + 1}) → ${defaultPicks.join(', ')}`,
        fix: 'RETRY_DELAYS_MS = [5_000, 10_000, 20_000, 30_000], and retryQueueFor(attempt, delaysMs = RETRY_DELAYS_MS).',
      });
    }

    // ---- line 6, first half: connect() early, so that the management API lists the connection by the end ----
    const log = memoryLogger('topology');
    const NAME = 'bridge topology (check 13.2)';
    const announced = announcedNames(defer);
    const conn = await t.call(`connect(url, '${NAME}', log)`, () => t.target.connect(t.url, NAME, log));
    defer(() => conn.close());

    // ---- lines 1-3: declare, then read everything from the broker ----
    t.provoke([1, 2, 3], `called assertTopology(channel, [${DELAYS}]) on a channel of the checker`);
    await t.call(`assertTopology(channel, [${DELAYS}])`, async () => t.target.assertTopology(await t.channel(), DELAYS));

    const ex = await t.mgmt.exchange(t.vhost, EXCHANGE);
    if (!ex || ex.type !== 'direct' || !ex.durable) {
      t.fail({
        summary: ex ? `The exchange "${EXCHANGE}" is ${ex.durable ? '' : 'not durable, '}${ex.type === 'direct' ? 'direct' : `a ${ex.type} exchange, not a direct one`}.` : `There is no exchange named "${EXCHANGE}".`,
        expected: `a durable direct exchange "${EXCHANGE}"`,
        saw: ex ? `type ${ex.type}, durable ${ex.durable}` : 'no such exchange',
        why: 'The relay publishes every event to this exchange. A transient one is gone after a broker restart, and with it every binding: events are then dropped.',
        fix: `channel.assertExchange('${EXCHANGE}', 'direct', { durable: true })`,
        link: t.ui('exchanges'),
      });
    }
    const bindings = (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === EXCHANGE).map((b) => `${b.destination_type} ${b.destination} ← "${b.routing_key}"`);
    t.observe(1, `read exchange "${EXCHANGE}" and its bindings from the management API: ${bindings.join('; ') || 'none'}`);
    if (bindings.join() !== `queue ${QUEUE} ← "${ROUTING_KEY}"`) {
      t.fail({
        summary: bindings.length === 0 ? `Nothing is bound to the exchange "${EXCHANGE}": every event the relay publishes is dropped.` : `The exchange "${EXCHANGE}" is not bound to "${QUEUE}" with the routing key "${ROUTING_KEY}" alone.`,
        expected: `one binding: queue ${QUEUE} ← "${ROUTING_KEY}"`,
        saw: bindings.join('; ') || 'no bindings',
        why: 'A direct exchange delivers a message to the queues bound with exactly its routing key. The relay publishes with "customer"; a binding under another key, or to another queue, routes the events elsewhere or nowhere.',
        fix: `channel.bindQueue('${QUEUE}', '${EXCHANGE}', '${ROUTING_KEY}')`,
        link: t.ui('exchanges', EXCHANGE),
      });
    }

    const quorum = async (q: string, what: string, line: number) => {
      const info = await t.queue(q, { fix: `Declare it in assertTopology(): channel.assertQueue('${q}', { durable: true, arguments: { 'x-queue-type': 'quorum', … } })` });
      t.observe(line, `read ${what} "${q}" from the management API: ${info.type ?? 'classic'}, arguments ${JSON.stringify(info.arguments)}`);
      if (info.type !== 'quorum' || !info.durable) {
        t.fail({
          summary: `"${q}" (${what}) is not a quorum queue.`,
          expected: "durable, arguments { 'x-queue-type': 'quorum', … }",
          saw: `${info.type ?? 'classic'}, durable ${info.durable}`,
          why: 'A quorum queue keeps its messages on a majority of nodes and survives a node failure; the bridge must not lose events while they wait. (At-least-once dead-lettering also exists only for quorum queues.)',
          fix: "{ durable: true, arguments: { 'x-queue-type': 'quorum', … } }",
          link: t.ui('queues', q),
        });
      }
      return info.arguments;
    };
    const argProblems = (a: Record<string, unknown>, want: Record<string, unknown>) =>
      Object.entries(want)
        .filter(([k, v]) => a[k] !== v)
        .map(([k, v]) => `${k} is ${a[k] === undefined ? 'missing' : JSON.stringify(a[k])}, not ${JSON.stringify(v)}`);

    const mainArgs = await quorum(QUEUE, 'the main queue', 1);
    await quorum(DLQ, 'the dead-letter queue', 2);
    const mainProblems = argProblems(mainArgs, { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': DLQ, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' });
    t.observe(2, `read the dead-letter arguments of "${QUEUE}"`);
    if (mainProblems.length) {
      t.fail({
        summary: `"${QUEUE}" does not dead-letter to "${DLQ}" at-least-once: ${mainProblems[0]}.`,
        expected: `'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': '${DLQ}', ${AT_LEAST_ONCE}`,
        saw: mainProblems.join('; '),
        why: 'RabbitMQ 4 gives up on a message redelivered 20 times, and a consumer may reject one. With a dead-letter target it lands in the dead-letter queue; without one it is dropped. At-least-once keeps it in the main queue until the dead-letter queue confirmed it.',
        fix: `Add those arguments to the main queue's declaration.`,
        link: t.ui('queues', QUEUE),
      });
    }
    const single = mainArgs['x-single-active-consumer'];
    t.observe(1, `read x-single-active-consumer of "${QUEUE}": ${JSON.stringify(single) ?? 'not set'}`);
    if (single !== true) {
      t.fail({
        summary: `"${QUEUE}" hands its messages to every receiver at once (x-single-active-consumer is ${single === undefined ? 'not set' : JSON.stringify(single)}): two receivers can write the same customer at the same time.`,
        expected: `'x-single-active-consumer': true on "${QUEUE}"`,
        saw: `arguments ${JSON.stringify(mainArgs)}`,
        why: "The receiver's version check (13.5) reads the version Odoo holds, then writes with load(): two calls, not one. Two receivers on one queue can both read version 1, and the one holding version 2 can write after the one holding version 3: Odoo keeps the older data. With a single active consumer the broker delivers to one receiver at a time; the others wait and take over when it goes away.",
        fix: `Add 'x-single-active-consumer': true to the arguments of "${QUEUE}" (it can only be set when the queue is declared, not by a policy).`,
        link: t.ui('queues', QUEUE),
      });
    }
    for (const d of DELAYS) {
      const name = delayQueue(d);
      const problems = argProblems(await quorum(name, `the ${d} ms delay queue`, 3), {
        'x-message-ttl': d,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': QUEUE,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      });
      if (problems.length) {
        const noKey = problems.some((p) => p.startsWith('x-dead-letter-routing-key'));
        t.fail({
          summary: `The delay queue "${name}" will not bring messages back to "${QUEUE}": ${problems[0]}.`,
          expected: `x-message-ttl ${d}, dead-lettered through '' with routing key '${QUEUE}', at-least-once`,
          saw: problems.join('; '),
          why: noKey
            ? "Without x-dead-letter-routing-key an expired message keeps its old routing key, the delay queue's own name: the default exchange routes it straight back into the queue it expired from, and RabbitMQ drops it as a dead-letter cycle."
            : 'A delay queue has no consumer. Its messages leave only by expiring, and the dead-letter settings decide where they go then: back to the main queue, or nowhere.',
          fix: `arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': delay, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': QUEUE, ${AT_LEAST_ONCE} }`,
          link: t.ui('queues', name),
        });
      }
    }

    // ---- line 1 and 4: an event through the exchange; a second declaration keeps it ----
    const first = `{"probe":"through the exchange","n":${Date.now()}}`;
    await checkerStep(t, `publish to the exchange "${EXCHANGE}"`, async () => {
      const pub = await t.confirmChannel();
      pub.publish(EXCHANGE, ROUTING_KEY, Buffer.from(first), { persistent: true, contentType: 'application/json' });
      await pub.waitForConfirms();
      await pub.close();
    });
    t.provoke([1, 4], `published a message to "${EXCHANGE}" with routing key "${ROUTING_KEY}", then called assertTopology() a second time (the relay and the receiver both declare)`);
    await t.call(`assertTopology(channel, [${DELAYS}]) a second time`, async () => t.target.assertTopology(await t.channel(), DELAYS));
    const ch = await t.channel();
    defer(() => ch.close());
    // A consumer, not basic.get: a quorum queue with a single active consumer refuses basic.get.
    const [routed] = await checkerStep(t, `consume from "${QUEUE}"`, () => firstMessages(ch, QUEUE, 1, 1000));
    t.observe([1, 4], `took from "${QUEUE}": ${routed ? JSON.stringify(routed.content.toString()) : 'nothing'}`);
    if (!routed || routed.content.toString() !== first) {
      return t.fail({
        summary: routed ? `"${QUEUE}" holds another message than the one published to "${EXCHANGE}".` : `The message published to "${EXCHANGE}" before the second assertTopology() is gone: declaring again deleted or purged "${QUEUE}".`,
        expected: `the message ${first} in "${QUEUE}"`,
        saw: routed ? JSON.stringify(routed.content.toString()) : `"${QUEUE}" is empty`,
        why: 'The relay and the receiver both declare the topology, every time they (re)connect, while events wait in the queue. A declaration that deletes or purges a queue to avoid PRECONDITION_FAILED loses every event in it.',
        fix: 'Only assertExchange / assertQueue / bindQueue: they change nothing when the object already exists with the same settings. Never delete or purge.',
        link: t.ui('queues', QUEUE),
      });
    }

    // ---- line 2: the main queue dead-letters what a consumer rejects ----
    ch.nack(routed, false, false);
    t.provoke(2, `rejected that message without requeueing it (nack, requeue false): "${QUEUE}" must dead-letter it`);
    await t.waitFor(async () => (await t.messageCount(DLQ)) > 0, 2000, 25);
    const [dead] = await t.takeMessages(DLQ, 1);
    const death = (dead?.properties.headers?.['x-death'] as { queue?: string; reason?: string }[] | undefined)?.[0];
    t.observe(2, `took from "${DLQ}": ${dead ? `${JSON.stringify(dead.content.toString())}, x-death ${death?.reason} from ${death?.queue}` : 'nothing'}`);
    if (!dead || dead.content.toString() !== first || death?.queue !== QUEUE) {
      t.fail({
        summary: `A message rejected from "${QUEUE}" did not reach "${DLQ}".`,
        expected: `the rejected message in "${DLQ}", its x-death header naming "${QUEUE}"`,
        saw: dead ? `${JSON.stringify(dead.content.toString())}, x-death ${JSON.stringify(death)}` : `"${DLQ}" is empty`,
        why: 'What the main queue gives up on must land where a person can look at it. Without x-dead-letter-routing-key pointing at the dead-letter queue, the broker drops it.',
        fix: `On "${QUEUE}": 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': '${DLQ}', ${AT_LEAST_ONCE}.`,
        link: t.ui('queues', DLQ),
      });
    }

    // ---- line 3: a parked message comes back after its delay ----
    const parked = `{"probe":"parked","n":${Date.now()}}`;
    await t.publish(delayQueue(400), [Buffer.from(parked)]);
    const parkedAt = Date.now();
    t.provoke(3, `parked a message in "${delayQueue(400)}" (nobody consumes it: it must expire after 400 ms and go back to "${QUEUE}")`);
    const back = await t.waitFor(async () => (await t.messageCount(QUEUE)) > 0, 3000, 25);
    const waited = Date.now() - parkedAt;
    const [returned] = back ? await checkerStep(t, `consume from "${QUEUE}"`, () => takeReady(t, QUEUE, 1)) : [];
    const returnedDeath = (returned?.properties.headers?.['x-death'] as { queue?: string; reason?: string }[] | undefined)?.[0];
    t.observe(3, returned ? `the message was back in "${QUEUE}" after ${waited} ms, x-death ${returnedDeath?.reason} from ${returnedDeath?.queue}` : `"${QUEUE}" still empty after ${waited} ms`);
    if (!returned) {
      const still = await t.messageCount(delayQueue(400));
      t.fail({
        summary: still ? `The parked message is still in "${delayQueue(400)}" after 3 s: it does not expire.` : `The parked message expired but never came back to "${QUEUE}": it was lost.`,
        expected: `the message back in "${QUEUE}" about 400 ms later`,
        saw: `${still} message(s) still parked, 0 in "${QUEUE}"`,
        why: 'The receiver acks a message once its copy sits in a delay queue. If the copy never returns, the event is gone for good.',
        fix: `'x-message-ttl': delay, and x-dead-letter-routing-key '${QUEUE}': without it the message is dead-lettered with its old routing key (the delay queue's own name) and dropped as a cycle.`,
        link: t.ui('queues', delayQueue(400)),
      });
    }
    if (returned.content.toString() !== parked || returnedDeath?.queue !== delayQueue(400) || waited < 300) {
      t.fail({
        summary: waited < 300 ? `The parked message came back after ${waited} ms, before its 400 ms delay.` : `What came back to "${QUEUE}" is not the message parked in "${delayQueue(400)}".`,
        expected: `${parked}, after about 400 ms, x-death naming "${delayQueue(400)}"`,
        saw: `${JSON.stringify(returned.content.toString())} after ${waited} ms, x-death ${JSON.stringify(returnedDeath)}`,
        fix: "'x-message-ttl': delay on each delay queue, the delay it is named after.",
        link: t.ui('queues', delayQueue(400)),
      });
    }

    // ---- line 4: a declaration the broker refuses must reach the caller ----
    const clash = delayQueue(1000);
    await t.mgmt.deleteQueue(t.vhost, clash);
    await checkerStep(t, `declare "${clash}" as a classic queue`, async () => {
      const c = await t.channel();
      await c.assertQueue(clash, { durable: true, arguments: { 'x-queue-type': 'classic' } });
      await c.close();
    });
    t.provoke(4, `replaced "${clash}" by a classic queue without arguments, then called assertTopology() again: the broker must refuse (PRECONDITION_FAILED)`);
    const refused = await rejection(async () => t.target.assertTopology(await t.channel(), DELAYS));
    const refusedText = refused instanceof Error ? `${refused.message} ${String((refused as { cause?: Error }).cause?.message ?? '')}` : '';
    t.observe(4, `assertTopology() ${refused === undefined ? 'resolved' : refused === 'timeout' ? 'did not settle within 5 s' : `rejected: ${refused.message}`}`);
    if (!(refused instanceof Error) || !/PRECONDITION_FAILED|406|inequivalent/i.test(refusedText)) {
      t.fail({
        summary: refused === undefined ? `assertTopology() resolved although the broker refused to declare "${clash}": the error was swallowed.` : refused === 'timeout' ? 'assertTopology() never settled after the broker refused a declaration.' : `assertTopology() rejected, but without the broker's error: ${refused.message}`,
        expected: "a rejection with the broker's error (406 PRECONDITION_FAILED, inequivalent arg 'x-queue-type')",
        saw: refused instanceof Error ? refused.message : String(refused ?? 'resolved'),
        why: 'The relay and the receiver start by declaring the topology. If a queue exists with other arguments, the broker closes the channel; a declaration that carries on as if nothing happened leaves them working on a dead channel, with nobody told why.',
        fix: 'await every assertExchange / assertQueue / bindQueue and let their errors through (no try/catch that only logs).',
        link: t.ui('queues', clash),
      });
    }

    // ---- line 6: the connection's name, and its errors logged ----
    // What the connection announced to the broker (the management UI shows it a few seconds later).
    const names = announced();
    const listed = names.includes(NAME);
    t.observe(6, `read the connection_name your connection announced to the broker: ${names.map((n) => JSON.stringify(n)).join(', ') || 'none'}`);
    if (!listed) {
      t.fail({
        summary: `connect() did not name its connection "${NAME}": the management UI will not show it.`,
        expected: `client property connection_name "${NAME}"`,
        saw: names.length ? `connection_name ${names.map((n) => JSON.stringify(n)).join(', ')}` : 'no connection_name at all (the UI shows "127.0.0.1:port -> …")',
        why: 'With several relays and receivers connected, a name is how an operator tells which connection is which (and which one to look at when it misbehaves).',
        fix: "amqp.connect(url, { clientProperties: { connection_name: name } })",
        link: t.ui('connections'),
      });
    }
    if (conn.listenerCount('error') === 0) {
      t.fail({
        summary: "connect() returns a connection with no 'error' listener: the first network hiccup crashes the process.",
        why: "An 'error' event with no listener is thrown: the whole relay or receiver dies instead of reconnecting.",
        fix: "connection.on('error', (err) => log.warn('broker connection error', { error: err.message })) before returning it.",
      });
    }
    t.cutConnections('a network failure under the connection connect() opened');
    t.provoke(6, 'cut the connection connect() opened (ECONNRESET)');
    const logged = await t.waitFor(() => log.lines.find((l) => l.level !== 'info' && JSON.stringify(l).includes('ECONNRESET') && l.msg.trim() !== ''), 1000, 20);
    t.observe(6, logged ? `your logger got: ${logged.level} "${logged.msg}"` : 'your logger got nothing');
    if (!logged) {
      t.fail({
        summary: 'The connection was cut (ECONNRESET), and nothing was logged about it.',
        expected: "a warning or an error in the log, with the error's message (read ECONNRESET)",
        saw: log.lines.length ? log.lines.map((l) => `${l.level} "${l.msg}"`).join('; ') : 'no log lines',
        why: 'The original project\'s advice holds: keep a log, to find out later why something failed. An error listener that swallows the error silently hides the reason the bridge reconnected (or stopped).',
        fix: "connection.on('error', (err) => log.warn('broker connection error', { error: err.message }))",
      });
    }
  }),
);

// Check 7.1: dead-lettering given by a policy, to a queue that already exists with an order in it.
// The checker plays the operator and the other services first: a catch-all policy of the vhost
// (priority 0), an exchange named like the queue, the queue itself (no arguments, one order waiting),
// and queues whose names an unanchored or unescaped pattern would catch. Then it calls
// setUpDeadLettering() and reads the broker: the queue's arguments (none added), the policy and which
// queues and exchanges it applies to, and where dead letters go: an order rejected, one expired
// (published with another routing key), one requeued past the delivery limit, and rejected messages
// of the other queues, which must not follow. Last, a wrong password (the error must say 401) and a
// second run, which must change nothing.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/07-dead-letters/01-dead-letter-policy.js';
import { recordFetches } from '../01-messaging-concepts/support.js';
import { expectRefusedDeclaration } from '../05-consumers/support.js';
import { onSent } from '../../runner/check/frames.js';
import { describeDeath, lastDeath, pause, plural, policies, policiesOfQueues, policy, QUORUM, takeAll, type PolicyInfo } from './support.js';

type T = CheckContext<typeof Exercise>;

const QUEUE = 'billing.orders';
const DLX = `${QUEUE}.dlx`;
const DLQ = `${QUEUE}.dead`;
const POLICY = `${QUEUE}-dead-letters`;
const CATCH_ALL = 'vhost-defaults';
/** Names a pattern catches when it is not anchored at the start, or does not escape the ".". (The DLQ catches a pattern not anchored at the end.) */
const DECOYS = [
  { name: `old-${QUEUE}`, flaw: 'is not anchored at the start (no "^")', why: 'A policy pattern is a regular expression, and unanchored unless you say so: it matches any name that contains it.' },
  { name: 'billing-orders', flaw: 'leaves the "." unescaped', why: 'A policy pattern is a regular expression, where "." matches any character: "billing.orders" also matches "billing-orders".' },
];
const LIMIT = 5;
const ROUTED_WITH = 'order.placed';

export default defineCheck<typeof Exercise>(async (t) => {
  const access = { url: t.broker.managementUrl, user: t.broker.username, password: t.broker.password, vhost: t.vhost };
  const label = `setUpDeadLettering(url, { url: "${access.url}", user, password, vhost }, "${QUEUE}")`;

  // ---- what was there before your code ran ----
  await t.mgmt.setPolicy(t.vhost, CATCH_ALL, { pattern: '.*', 'apply-to': 'queues', priority: 0, definition: { 'max-length': 1_000_000 } });
  const setup = await t.confirmChannel();
  await setup.assertExchange(QUEUE, 'direct', { durable: true });
  await setup.assertQueue(QUEUE, QUORUM);
  await setup.bindQueue(QUEUE, QUEUE, ROUTED_WITH);
  for (const decoy of DECOYS) await setup.assertQueue(decoy.name, QUORUM);
  setup.sendToQueue(QUEUE, Buffer.from('{"order":1}'), { persistent: true, messageId: 'order-1', contentType: 'application/json' });
  await setup.waitForConfirms();
  await setup.close();
  t.provoke(1, `declared "${QUEUE}" before your code runs, as a quorum queue without other arguments, with order 1 waiting in it`);
  t.provoke('3a', `declared the queues ${DECOYS.map((d) => `"${d.name}"`).join(' and ')}, which your pattern must not match`);
  t.provoke('3b', `set the vhost's catch-all policy "${CATCH_ALL}" (pattern ".*", priority 0), and declared an exchange named "${QUEUE}" like the queue`);

  // ---- your code ----
  const first = await run(t, label, () => t.target.setUpDeadLettering(t.url, access, QUEUE));
  if (first.error !== undefined) refusedRun(t, label, first.error, first.sent);
  await t.expectConnectionsClosed(label);

  // ---- line 1: the queue as it was, messages and all ----
  const q = await expectQuorumQueue(t, QUEUE);
  const added = Object.keys(q.arguments).filter((k) => k !== 'x-queue-type');
  const waiting = await t.messageCount(QUEUE);
  if (waiting !== 1) {
    t.fail({
      summary: `Order 1, which waited in "${QUEUE}" before your code ran, is gone: the queue holds ${plural(waiting, 'message')}${added.length ? `, and has the arguments ${added.join(', ')}` : ''}.`,
      expected: `"${QUEUE}" as it was, with order 1 still in it; dead-lettering added by the policy`,
      saw: `${plural(waiting, 'message')} in "${QUEUE}", arguments ${JSON.stringify(q.arguments)}`,
      why: "A queue's arguments are fixed when it is created; the only way to change them is to delete the queue, and every message in it goes with it. In production that queue is full of orders. A policy changes a live queue without touching its messages.",
      fix: `Declare "${QUEUE}" exactly as it exists (durable, x-queue-type quorum), never delete it, and put the dead-letter settings in the policy.`,
      link: t.ui('queues', QUEUE),
    });
  }
  if (added.length) {
    t.fail({
      summary: `"${QUEUE}" has the argument${added.length === 1 ? '' : 's'} ${added.join(', ')}, where the policy should give ${added.length === 1 ? 'it' : 'them'}.`,
      expected: `"${QUEUE}" with x-queue-type quorum only`,
      saw: `arguments ${JSON.stringify(q.arguments)}`,
      why: "Arguments are frozen at creation: changing one later means deleting the queue with its messages, and every service that declares the queue must agree on them byte for byte, or the broker refuses its declaration (406 PRECONDITION_FAILED). A policy can change at any time, for a live queue.",
      fix: `channel.assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } }), and the dead-letter settings in the policy's definition.`,
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(1, `"${QUEUE}" is still a quorum queue with no argument added, and order 1 still waits in it`);

  // ---- line 2: where dead letters go ----
  await expectExchange(t, DLX, 'direct', `channel.assertExchange('${DLX}', 'direct', { durable: true })`);
  await expectQuorumQueue(t, DLQ);
  const bound = (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === DLX && b.destination === DLQ);
  if (!bound.some((b) => b.routing_key === 'dead')) {
    t.fail({
      summary: `"${DLQ}" is not bound to "${DLX}" with the routing key "dead".`,
      expected: `a binding ${DLX} --dead--> ${DLQ}`,
      saw: bound.length ? `binding key${bound.length === 1 ? '' : 's'} ${bound.map((b) => JSON.stringify(b.routing_key)).join(', ')}` : 'no binding between them',
      why: 'A direct exchange delivers a message to the queues bound with exactly its routing key. The policy gives every dead letter the key "dead"; without a binding for it, the exchange drops them all.',
      fix: `channel.bindQueue('${DLQ}', '${DLX}', 'dead')`,
      link: t.ui('exchanges', DLX),
    });
  }

  // ---- line 3: the policy, as the broker has it ----
  const mine = await policy(t, POLICY);
  if (!mine) noPolicy(t, first.sent);
  const applied = await policiesOfQueues(t);
  judgePolicy(t, mine, applied);
  t.observe('3a', `the policy's pattern ${JSON.stringify(mine.pattern)} applies to "${QUEUE}" and not to ${[DLQ, ...DECOYS.map((d) => d.name)].map((n) => `"${n}"`).join(', ')}`);
  t.observe('3b', `"${POLICY}" applies to queues only (not to the exchange "${QUEUE}"), with priority ${mine.priority}, above "${CATCH_ALL}"`);

  // ---- line 3c: dead letters, provoked ----
  const ch = await t.confirmChannel();
  // The other queues first: a rejected message of theirs must not follow the policy of "billing.orders".
  for (const decoy of DECOYS) {
    ch.sendToQueue(decoy.name, Buffer.from(`{"decoy":"${decoy.name}"}`), { persistent: true, messageId: `decoy ${decoy.name}` });
    await ch.waitForConfirms();
    const m = await ch.get(decoy.name);
    if (m) ch.reject(m, false);
  }
  // Order 1, the one that was there before: rejected without requeue.
  const one = await ch.get(QUEUE);
  if (one) ch.reject(one, false);
  t.provoke(2, `took order 1 from "${QUEUE}" and rejected it without requeue`);
  // Order 3: requeued again and again, until the delivery limit stops it.
  const deliveries = await requeueUntilGone(t, ch);
  t.provoke('3c', `published order 3 and rejected it with requeue at each of its ${plural(deliveries, 'delivery')}, until it came back no more`);
  // Order 2 comes through the exchange "billing.orders", with its own routing key, and expires (nobody consumes now).
  ch.publish(QUEUE, ROUTED_WITH, Buffer.from('{"order":2}'), { persistent: true, messageId: 'order-2', expiration: '200' });
  await ch.waitForConfirms();
  await ch.close();
  t.provoke('3c', `published order 2 through the exchange "${QUEUE}" with routing key "${ROUTED_WITH}" and a TTL of 200 ms, to expire in "${QUEUE}"`);
  const dead = await collectDeadLetters(t);
  judgeDeadLetters(t, dead, deliveries);
  t.observe(2, `order 1 reached "${DLQ}" through "${DLX}" (x-death reason "rejected")`);
  t.observe('3c', `in "${DLQ}": order 1 (rejected), order 2 (expired, routed with "dead" although it was published with "${ROUTED_WITH}"), order 3 (delivery_limit, after ${plural(deliveries, 'delivery')}: the limit of ${LIMIT} returns)`);
  t.observe('3a', `nothing rejected in ${DECOYS.map((d) => `"${d.name}"`).join(' or ')} reached "${DLQ}"`);

  // ---- line 4: the management API refuses ----
  t.provoke(4, 'called setUpDeadLettering() again with a wrong password for the management API (401 Unauthorized)');
  const refused = await run(t, `${label} with a wrong password`, () => t.target.setUpDeadLettering(t.url, { ...access, password: 'not-the-password' }, QUEUE));
  if (refused.error === undefined || !(refused.error instanceof Error) || !refused.error.message.includes('401')) {
    t.fail({
      summary:
        refused.error === undefined
          ? 'With a wrong password, the management API answered 401, and setUpDeadLettering() resolved as if the policy were set.'
          : `With a wrong password, setUpDeadLettering() threw ${refused.error instanceof Error ? `an Error that does not name the status: "${refused.error.message.slice(0, 160)}"` : JSON.stringify(refused.error)}.`,
      expected: 'an Error whose message names the status, 401',
      saw: describeSent(refused.sent),
      why: "fetch() resolves for every HTTP answer, errors included: only a network failure rejects. Code that does not look at the status tells its caller the policy is in place when the broker never took it, and nothing is dead-lettered.",
      fix: 'if (!response.ok) throw new Error(`PUT … answered ${response.status}`)',
    });
  }
  t.observe(4, `setUpDeadLettering() threw: "${(refused.error as Error).message.slice(0, 100)}"`);
  await t.expectConnectionsClosed(`${label} with a wrong password`);

  // ---- line 5: run again ----
  await t.publish(QUEUE, [{ order: 4 }]);
  t.provoke(5, `published order 4 to "${QUEUE}", then called setUpDeadLettering() a second time with the right password (and the management URL ending in "/")`);
  const second = await run(t, `${label} again, with "${access.url}/"`, () => t.target.setUpDeadLettering(t.url, { ...access, url: `${access.url}/` }, QUEUE));
  if (second.error !== undefined) refusedRun(t, `${label}, run a second time,`, second.error, second.sent);
  await t.expectConnectionsClosed(`${label}, run a second time,`);
  const again = await policy(t, POLICY);
  const kept = await t.messageCount(QUEUE);
  const bindings = (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === DLX);
  if (kept !== 1 || JSON.stringify(again) !== JSON.stringify(mine) || bindings.length !== 1) {
    t.fail({
      summary: `The second run changed something: ${kept !== 1 ? `"${QUEUE}" holds ${plural(kept, 'message')} instead of order 4` : bindings.length !== 1 ? `"${DLX}" has ${plural(bindings.length, 'binding')}` : 'the policy is not the same'}.`,
      expected: `order 4 still in "${QUEUE}", one binding from "${DLX}", the same policy`,
      saw: `${plural(kept, 'message')} in "${QUEUE}"; bindings from "${DLX}": ${bindings.map((b) => `→ ${b.destination} (${JSON.stringify(b.routing_key)})`).join(', ') || 'none'}; policy ${JSON.stringify(again)}`,
      why: 'Set-up code runs at every start of every instance. It must describe the state it wants, not act on what it finds: deleting, purging or adding on each run loses messages or piles up bindings.',
      fix: 'Only declarations (assertQueue, assertExchange, bindQueue) and one PUT of the whole policy: the broker makes each of them a no-op when it is already so.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(5, `the second run resolved; order 4 still waits in "${QUEUE}", the policy and the binding are unchanged, and no connection was left open`);

  // ---- line 5: a declaration refused, a connection reset ----
  await expectRefusedDeclaration(t, {
    lines: [5],
    queue: 'refunds.dead',
    existing: { durable: true, arguments: { 'x-queue-type': 'classic' } },
    what: 'a classic queue',
    label: 'setUpDeadLettering(url, management, "refunds")',
    call: () => t.target.setUpDeadLettering(t.url, access, 'refunds'),
  });
  let reset = false;
  const dispose = onSent((c, m) => {
    if (reset || m.name !== 'queue.declare') return;
    reset = true;
    c.socket.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' }));
  });
  t.provoke(5, 'called setUpDeadLettering(url, management, "invoices") and reset its connection (ECONNRESET, like a network failure) at its first declaration');
  const cut = await run(t, 'setUpDeadLettering(url, management, "invoices") with its connection reset', () => t.target.setUpDeadLettering(t.url, access, 'invoices'));
  dispose();
  await pause(50); // an 'error' event nobody listens to would end the process now
  if (reset && cut.error === undefined) {
    t.fail({
      summary: 'The network failed in the middle of setUpDeadLettering(), and it resolved as if all were in place.',
      expected: 'a rejection: the declarations never reached the broker',
      saw: `resolved; HTTP: ${describeSent(cut.sent)}`,
      why: 'A caller told "done" starts consuming from queues that may not exist, with no dead-lettering.',
      fix: 'Let the errors of the declarations reach the caller: try { … } finally { await connection.close(); }, with no catch that swallows them.',
    });
  }
  await t.expectConnectionsClosed('setUpDeadLettering() with its connection reset');
  t.observe(5, `with the connection reset, setUpDeadLettering() rejected (${String((cut.error as Error | undefined)?.message ?? '').slice(0, 80)}) and your process is still running: an 'error' listener took it`);
});

interface Run {
  error?: unknown;
  sent: { method: string; url: string; status?: number; error?: string }[];
}

/** Calls the learner's function, recording its fetch() calls; a throw is returned, not raised. */
async function run(t: T, label: string, fn: () => Promise<void>): Promise<Run> {
  const recorder = recordFetches();
  try {
    const outcome = await t.call(label, async () => {
      try {
        await fn();
        return {};
      } catch (error) {
        return { error: error ?? new Error(String(error)) };
      }
    });
    for (const r of recorder.requests) t.log(`your code sent ${r.method} ${pathOf(r.url)} → ${r.status ?? r.error}`);
    return { ...outcome, sent: recorder.requests };
  } finally {
    recorder.restore();
  }
}

function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

function describeSent(sent: Run['sent']): string {
  return sent.length ? sent.map((r) => `${r.method} ${pathOf(r.url)} → ${r.status ?? r.error}`).join('; ') : 'no fetch() call';
}

/** setUpDeadLettering() rejected where it should have resolved: say why (always fails). */
function refusedRun(t: T, label: string, error: unknown, sent: Run['sent']): never {
  const message = error instanceof Error ? error.message : String(error);
  const arg = /inequivalent arg '([^']+)'/.exec(message)?.[1];
  if (arg) {
    const deadLetter = /^x-(dead-letter|delivery-limit|message-ttl|overflow|max-length)/.test(arg);
    t.fail({
      summary: `The broker refused to declare "${QUEUE}": it exists already, and your declaration ${deadLetter ? `adds the argument ${arg}` : `differs in ${arg}`} (406 PRECONDITION_FAILED).`,
      expected: `"${QUEUE}" declared as it is (durable, x-queue-type quorum); dead-lettering added by a policy`,
      saw: message.slice(0, 300),
      why: deadLetter
        ? "A queue's arguments are fixed when it is created. Redeclaring it with one more is refused, and the only way to change it is to delete it, with the orders waiting in it. That is what policies are for: they change a live queue."
        : 'A declaration of an existing queue must match it exactly, or the broker refuses it and closes the channel.',
      fix: deadLetter ? `Declare the queue with { durable: true, arguments: { 'x-queue-type': 'quorum' } } only, and put ${arg.replace(/^x-/, '')} in the policy's definition.` : `channel.assertQueue('${QUEUE}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
      link: t.ui('queues', QUEUE),
    });
  }
  t.fail({
    summary: `${label} threw: ${message.slice(0, 300)}`,
    expected: 'it resolves once the queues, the exchange, the binding and the policy are in place',
    saw: `${message.slice(0, 300)}; HTTP: ${describeSent(sent)}`,
    why: /\b400\b/.test(message)
      ? 'The management API answered 400 Bad Request: it refused the policy as written. Its answer names the field it did not like.'
      : 'Setting up dead-lettering failed, so nothing is dead-lettered.',
    fix: /\b400\b/.test(message)
      ? "The body is JSON: { pattern, 'apply-to': 'queues', priority: 10, definition: { 'dead-letter-exchange': …, 'dead-letter-routing-key': 'dead', 'delivery-limit': 5 } }, with numbers as numbers."
      : 'Read the error above; npm run check 7.1 -- --verbose shows what your code printed.',
  });
}

function noPolicy(t: T, sent: Run['sent']): never {
  t.fail({
    summary: `There is no policy named "${POLICY}" in the vhost.`,
    expected: `the policy "${POLICY}", set with PUT /api/policies/<vhost>/${encodeURIComponent(POLICY)}`,
    saw: `your code's HTTP requests: ${describeSent(sent)}`,
    why: `Without the policy, "${QUEUE}" has no dead-letter exchange: a rejected or expired order is dropped.`,
    fix: "fetch(`${management.url}/api/policies/${encodeURIComponent(management.vhost)}/${encodeURIComponent(name)}`, { method: 'PUT', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify({ … }) })",
  });
}

/** The policy must apply to QUEUE alone (queues only, above the catch-all) and say what the contract says. */
function judgePolicy(t: T, mine: PolicyInfo, applied: Map<string, string | undefined>): void {
  const show = `pattern ${JSON.stringify(mine.pattern)}, apply-to ${JSON.stringify(mine['apply-to'])}, priority ${mine.priority}`;
  if (applied.get(QUEUE) !== POLICY) {
    const other = applied.get(QUEUE);
    const matches = safeRegExp(mine.pattern)?.test(QUEUE);
    t.fail({
      summary:
        matches === false
          ? `Your policy's pattern ${JSON.stringify(mine.pattern)} does not match "${QUEUE}", so it applies to nothing you meant.`
          : `Your policy does not apply to "${QUEUE}": ${other ? `the policy "${other}" does` : 'no policy does'}.`,
      expected: `"${POLICY}" applied to "${QUEUE}"`,
      saw: `${show}; "${QUEUE}" has ${other ? `the policy "${other}"` : 'no policy'}`,
      why:
        matches === false
          ? 'A pattern is a regular expression matched against the whole name of each queue.'
          : `Only one policy applies to a queue: the one with the highest priority. The vhost's catch-all "${CATCH_ALL}" has priority 0; a policy with the same priority loses or wins by chance.`,
      fix: `pattern "^billing\\\\.orders$" (in JavaScript: \`^\${queue.replace(/\\W/g, '\\\\$&')}$\`), priority 10.`,
      link: t.ui('queues', QUEUE),
    });
  }
  if (!(mine.priority > 0)) {
    t.fail({
      summary: `Your policy has priority ${mine.priority}, no higher than the vhost's catch-all policy "${CATCH_ALL}" (priority 0): it won here by chance.`,
      expected: 'a priority above 0 (10)',
      saw: show,
      why: 'Only one policy applies to a queue: the one with the highest priority. Between two policies with the same priority the broker picks one, and it need not be yours the next time the queue is declared.',
      fix: 'priority: 10',
    });
  }
  for (const name of [DLQ, ...DECOYS.map((d) => d.name)]) {
    if (applied.get(name) !== POLICY) continue;
    const decoy = DECOYS.find((d) => d.name === name);
    t.fail({
      summary: `Your policy also applies to "${name}": its pattern ${JSON.stringify(mine.pattern)} ${decoy ? decoy.flaw : 'is not anchored at the end (no "$")'}.`,
      expected: `"${POLICY}" on "${QUEUE}" alone`,
      saw: `"${name}" has the policy "${POLICY}"`,
      why:
        name === DLQ
          ? `A policy pattern is a regular expression, and unanchored: "${QUEUE}" also matches "${DLQ}". The dead-letter queue then dead-letters into itself, and it takes the delivery limit meant for the work queue.`
          : `${decoy?.why} "${name}" belongs to someone else, and its rejected messages would land in your dead-letter queue.`,
      fix: `pattern: \`^\${queue.replace(/\\W/g, '\\\\$&')}$\`, which is "^billing\\\\.orders$" here.`,
      link: t.ui('queues', name),
    });
  }
  const exchange = mine['apply-to'] === 'queues';
  if (!exchange) {
    t.fail({
      summary: `Your policy applies to ${mine['apply-to'] === 'all' ? 'exchanges as well as queues' : `"${mine['apply-to']}"`}: it is on the exchange "${QUEUE}" too.`,
      expected: 'apply-to "queues"',
      saw: show,
      why: 'Queues and exchanges share names more often than not (an exchange "billing.orders" feeding a queue "billing.orders"). A policy applied to both takes the place of any policy the exchange had (an alternate exchange, say): only one policy applies to an object.',
      fix: "'apply-to': 'queues'",
    });
  }
  const want = { 'dead-letter-exchange': DLX, 'dead-letter-routing-key': 'dead', 'delivery-limit': LIMIT };
  const wrong = Object.entries(want).filter(([k, v]) => mine.definition[k] !== v);
  if (wrong.length) {
    t.fail({
      summary: `Your policy's definition ${wrong.map(([k]) => (k in mine.definition ? `has ${k} ${JSON.stringify(mine.definition[k])}` : `has no ${k}`)).join(', ')}.`,
      expected: JSON.stringify(want),
      saw: JSON.stringify(mine.definition),
      why: wrong.some(([k]) => k === 'delivery-limit')
        ? 'Without an explicit delivery-limit, a message that fails forever comes back forever on RabbitMQ 3.10 (no limit by default), and 20 times on 4.x: set it, and every version behaves the same.'
        : wrong.some(([k]) => k === 'dead-letter-routing-key')
          ? `Without dead-letter-routing-key, a dead letter keeps the routing key it was published with ("${ROUTED_WITH}", or the queue's name through the default exchange), and "${DLX}" has no binding for it: the dead letter is dropped.`
          : 'The dead-letter exchange is where the broker republishes what the queue gives up on.',
      fix: `definition: { 'dead-letter-exchange': '${DLX}', 'dead-letter-routing-key': 'dead', 'delivery-limit': ${LIMIT} } (numbers as numbers)`,
    });
  }
}

function safeRegExp(pattern: string): RegExp | undefined {
  try {
    return new RegExp(pattern);
  } catch {
    return undefined;
  }
}

/** Publishes order 3 and rejects it with requeue at each delivery until it stops coming back; returns how many deliveries it had. */
async function requeueUntilGone(t: T, ch: Awaited<ReturnType<T['confirmChannel']>>): Promise<number> {
  ch.sendToQueue(QUEUE, Buffer.from('{"order":3}'), { persistent: true, messageId: 'order-3' });
  await ch.waitForConfirms();
  const consumer = await t.channel();
  await consumer.prefetch(1);
  let deliveries = 0;
  let last = Date.now();
  const { consumerTag } = await consumer.consume(QUEUE, (m) => {
    if (!m) return;
    deliveries++;
    last = Date.now();
    consumer.reject(m, true);
  });
  const cap = LIMIT + 6;
  // Done when it comes back no more (dead-lettered, or dropped), or when it keeps coming back.
  await t.waitFor(async () => deliveries >= cap || (deliveries > 0 && Date.now() - last > 300 && (await t.messageCount(QUEUE)) === 0), 8000, 20);
  await consumer.cancel(consumerTag);
  await consumer.close().catch(() => undefined);
  if (deliveries >= cap) {
    t.fail({
      summary: `Order 3 was rejected with requeue ${deliveries} times and kept coming back: no delivery limit applies to "${QUEUE}".`,
      expected: `dead-lettered after ${LIMIT + 1} deliveries (delivery-limit ${LIMIT}: ${LIMIT} returns allowed)`,
      saw: `${plural(deliveries, 'delivery')}, still in "${QUEUE}"`,
      why: 'A quorum queue counts how often a message comes back. RabbitMQ 3.10 to 3.13 set no limit by default, 4.0 and later 20; set it explicitly and every version stops a poison message after the same number of tries.',
      fix: `'delivery-limit': ${LIMIT} in the policy's definition.`,
      link: t.ui('queues', QUEUE),
    });
  }
  return deliveries;
}

/** Waits until the three dead letters can have arrived (order 2 expires at 200 ms), then takes everything in the DLQ. */
async function collectDeadLetters(t: T): Promise<GetMessage[]> {
  await t.waitFor(async () => (await t.messageCount(DLQ)) >= 3, 8000, 25);
  await pause(100); // anything else on its way (a decoy's dead letter) arrives with them
  return takeAll(t, DLQ);
}

function judgeDeadLetters(t: T, dead: GetMessage[], deliveries: number): void {
  const byId = new Map(dead.map((m) => [String(m.properties.messageId ?? m.content.toString()), m]));
  const foreign = dead.filter((m) => lastDeath(m)?.queue !== QUEUE);
  if (foreign.length) {
    t.fail({
      summary: `Messages rejected in other queues reached "${DLQ}": ${foreign.map((m) => `${m.properties.messageId} (${describeDeath(m)})`).join(', ')}.`,
      expected: `only dead letters of "${QUEUE}"`,
      saw: dead.map((m) => `${m.properties.messageId}: ${describeDeath(m)}`).join('; '),
      why: 'The policy applies to every queue its pattern matches. An unanchored or unescaped pattern takes in queues that are not yours.',
      fix: 'An anchored pattern, with the name escaped: ^billing\\.orders$.',
      link: t.ui('queues', DLQ),
    });
  }
  const expect: [id: string, reason: string, why: string][] = [
    ['order-1', 'rejected', 'order 1 was rejected without requeue: the policy\'s dead-letter exchange should have received it'],
    ['order-2', 'expired', `order 2 was published with the routing key "${ROUTED_WITH}": without dead-letter-routing-key "dead", its dead letter keeps that key, and "${DLX}" has no binding for it`],
    ['order-3', 'delivery_limit', `order 3 came back ${deliveries} times: at the delivery limit it is dead-lettered with the reason delivery_limit`],
  ];
  for (const [id, reason, why] of expect) {
    const m = byId.get(id);
    if (m && lastDeath(m)?.reason === reason && (reason !== 'delivery_limit' || deliveries === LIMIT + 1)) continue;
    t.fail({
      summary: m
        ? `${id.replace('-', ' ')} reached "${DLQ}" with ${describeDeath(m)}${reason === 'delivery_limit' ? ` after ${plural(deliveries, 'delivery')}` : ''}, where the reason should be "${reason}"${reason === 'delivery_limit' ? ` after ${LIMIT + 1} deliveries` : ''}.`
        : `${id.replace('-', ' ')} never reached "${DLQ}".`,
      expected: `${id} in "${DLQ}", x-death reason "${reason}"`,
      saw: dead.length ? dead.map((x) => `${x.properties.messageId}: ${describeDeath(x)}`).join('; ') : `"${DLQ}" empty`,
      why: `${why}.`,
      fix: `definition: { 'dead-letter-exchange': '${DLX}', 'dead-letter-routing-key': 'dead', 'delivery-limit': ${LIMIT} }`,
      link: t.ui('queues', DLQ),
    });
  }
}

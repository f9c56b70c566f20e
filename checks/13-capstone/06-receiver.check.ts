// Check 13.6: the receiver, against the Odoo stand-in behind a proxy that records every call
// (and can answer a load() in Odoo's place), with the faults switched on by the checker:
// good events reach Odoo in batches; a poison event and a message that is not JSON land in
// the dead-letter queue with a reason, as exact copies; while the dead-letter or a delay
// queue refuses the copy, the original is not acked; while Odoo is down (or fails in a way
// nobody planned), events move to the delay queue of their attempt, and past the last
// attempt to the dead-letter queue; a 'reject' error dead-letters the batch; a deleted queue
// and a cut connection are survived; stats() counts it all; stop() lets the batch in hand
// finish; a second receiver, with its API key revoked, stops consuming, gives the event
// back, and says so. Prefetch, ack mode and confirm mode are read from the management API.
import type { Message } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import { enc } from '../../runner/broker/management.js';
import type * as Exercise from '../../exercises/13-capstone/06-receiver.js';
import { memoryLogger, type LogLine } from '../../capstone/log.js';
import { announcedNames, checkerStep, event, partnersOf, rejection, sleep, standIn, wireProxy, takeReady, withResources, type WireRequest } from './support.js';
import type { CustomerEvent } from '../../solutions/13-capstone/02-topology.js';

const QUEUE = 'bridge.customers';
const DLQ = 'bridge.customers.dead';
const RETRY_1 = 'bridge.customers.retry.1s';
const RETRY_2 = 'bridge.customers.retry.2s';
const PREFETCH = 20;
const BATCH = 3;
const TRACE = { 'x-trace': 'check-13.6' };
/** The messageId of the checker's probes, which fill a queue up to its limit. */
const PROBE = 'checker-probe';

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const odoo = await standIn(defer);
    const wire = await wireProxy(defer, odoo.url);
    const config = { ...odoo.config, url: wire.url };
    const log = memoryLogger('receiver');
    const count = (q: string) => t.messageCount(q).catch(() => 0);
    const consumers = () => t.consumerCount(QUEUE).catch(() => 0);
    const reported = (lines: LogLine[]) => {
      const bad = lines.find((l) => l.level === 'error' || /TODO/.test(`${l.msg} ${String(l.error ?? '')}`));
      return bad ? ` Your receiver logged: "${bad.msg}${bad.error ? `: ${String(bad.error)}` : ''}".` : '';
    };
    const isLoad = (r: WireRequest) => r.rpc?.params?.args?.[3] === 'res.partner' && r.rpc?.params?.args?.[4] === 'load';
    const loadRows = () => wire.requests.filter(isLoad).map((r) => ((r.rpc?.params?.args?.[5] as unknown[])?.[1] as unknown[] | undefined)?.length ?? 0);
    const arrived = (keys: string[], ms: number) => t.waitFor(() => keys.every((k) => partnersOf(odoo, k).length > 0), ms, 25);
    /** Publishes like the relay does: persistent JSON, messageId, type, timestamp, and a header of the checker's. */
    const send = async (events: (CustomerEvent | string)[], headers: Record<string, unknown> | null = {}) => {
      await checkerStep(t, `publish to "${QUEUE}"`, async () => {
        const ch = await t.confirmChannel();
        for (const e of events) {
          const json = typeof e !== 'string';
          ch.sendToQueue(QUEUE, Buffer.from(json ? JSON.stringify(e) : e), {
            persistent: true,
            contentType: json ? 'application/json' : 'text/plain',
            messageId: json ? e.eventId : 'not-json',
            type: json ? 'customer.changed' : 'note',
            timestamp: 1_700_000_000,
            headers: headers === null ? undefined : { ...TRACE, ...headers }, // null: no headers at all, like the relay's messages
          });
        }
        await ch.waitForConfirms();
        await ch.close();
      });
    };
    const take = (q: string) => checkerStep(t, `read "${q}"`, () => takeReady(t, q, 200));
    const header = (m: Message | undefined, name: string) => m?.properties.headers?.[name];
    /** What a copy must keep of the message it copies (line 5). */
    const copyProblems = (m: Message, sent: { body: string; messageId: string; contentType: string; type: string }) =>
      [
        m.content.toString() !== sent.body && `the body differs: ${JSON.stringify(m.content.toString().slice(0, 60))}`,
        m.properties.deliveryMode !== 2 && 'not persistent',
        m.properties.messageId !== sent.messageId && `messageId ${JSON.stringify(m.properties.messageId)}, not ${JSON.stringify(sent.messageId)}`,
        m.properties.contentType !== sent.contentType && `contentType ${JSON.stringify(m.properties.contentType)}, not ${JSON.stringify(sent.contentType)}`,
        m.properties.type !== sent.type && `type ${JSON.stringify(m.properties.type)}, not ${JSON.stringify(sent.type)}`,
        m.properties.timestamp !== 1_700_000_000 && `timestamp ${JSON.stringify(m.properties.timestamp)}, not 1700000000`,
        header(m, 'x-trace') !== TRACE['x-trace'] && `the original's header x-trace is ${JSON.stringify(header(m, 'x-trace'))}`,
      ].filter((p): p is string => typeof p === 'string');
    const expectCopy = (m: Message, sent: { body: string; messageId: string; contentType: string; type: string }, where: string) => {
      const problems = copyProblems(m, sent);
      t.observe(5, `the copy in "${where}" ${problems.length ? `differs: ${problems.join('; ')}` : 'keeps the body and every property'}`);
      if (problems.length) {
        t.fail({
          summary: `The copy in "${where}" is not a faithful copy of the message: ${problems[0]}.`,
          expected: 'the same body, persistent, and the original messageId, contentType, type, timestamp and headers (plus your own x-bridge-… headers)',
          saw: problems.join('; '),
          why: 'Whoever reads the dead-letter queue, and the receiver when a delay queue brings a message back, sees only the copy: the event id spots duplicates, the content type says how to read the body, and a message that is not persistent is lost when the broker restarts.',
          fix: 'sendToQueue(queue, msg.content, { persistent: true, messageId, contentType, type, timestamp (all from msg.properties), headers: { ...msg.properties.headers, ...yours } }, callback)',
        });
      }
    };
    /**
     * Makes `q` refuse new messages (the broker nacks them); resolves when it does, and with how
     * many of the checker's probes `q` took before it refused: a quorum queue takes the message
     * that reaches its limit, and refuses only the next ones. The probes stay (taking them would
     * make room again) until the checker takes everything from `q`.
     */
    const refuse = async (q: string): Promise<number> => {
      await t.mgmt.setPolicy(t.vhost, `refuse-${q}`, { pattern: `^${q.replaceAll('.', '\\.')}$`, definition: { 'max-length': 0, overflow: 'reject-publish' } });
      const probe = await t.confirmChannel();
      let taken = 0;
      const refusing = await t.waitFor(() => new Promise<boolean>((resolve) => probe.sendToQueue(q, Buffer.from('probe'), { messageId: PROBE }, (err) => resolve(!!err || !++taken))), 3000, 25);
      await probe.close().catch(() => undefined);
      if (!refusing) t.skip(`the length-limit policy on "${q}" did not take effect within 3 s; run the check again`);
      return taken;
    };
    /** The user's permissions on the sandbox vhost; undefined: none at all (it cannot even connect). */
    const permissions = (p: { configure: string; write: string; read: string } | undefined) =>
      t.mgmt.request(p ? 'PUT' : 'DELETE', `/permissions/${enc(t.vhost)}/${enc(t.broker.username)}`, p);
    defer(() => permissions({ configure: '.*', write: '.*', read: '.*' }));
    /**
     * Lets `q` accept messages again. The limit is raised, not removed: a quorum queue tells the
     * publishers it refused that they may go on only when it drops below a limit it still has.
     */
    const accept = (q: string) => t.mgmt.setPolicy(t.vhost, `refuse-${q}`, { pattern: `^${q.replaceAll('.', '\\.')}$`, definition: { 'max-length': 1_000_000, overflow: 'reject-publish' } });

    // ---- line 7: a start that cannot declare the topology must fail, and close its connection ----
    await checkerStep(t, 'declare "bridge" as a fanout exchange', async () => {
      const ch = await t.channel();
      await ch.assertExchange('bridge', 'fanout', { durable: true });
      await ch.close();
    });
    t.provoke(7, 'declared "bridge" as a fanout exchange, then called startReceiver(): declaring the topology fails (PRECONDITION_FAILED)');
    const noTopology = await rejection(() => Promise.resolve(t.target.startReceiver({ amqpUrl: t.url, odoo: config, log: memoryLogger('receiver') })), 5000);
    await t.expectConnectionsClosed('startReceiver() with a topology the broker refuses');
    await t.mgmt.deleteExchange(t.vhost, 'bridge');
    t.observe(7, `startReceiver() ${noTopology === undefined ? 'resolved' : noTopology === 'timeout' ? 'hung' : `rejected (${noTopology.message.slice(0, 80)})`}; no connection left open`);
    if (!(noTopology instanceof Error)) {
      t.fail({
        summary: `startReceiver() ${noTopology === 'timeout' ? 'never settled' : 'resolved'} although the broker refused to declare the topology (PRECONDITION_FAILED): it consumes nothing, and says nothing.`,
        expected: 'startReceiver() rejects with the error, having closed its connection',
        why: 'A receiver that "starts" without its topology consumes nothing; a supervisor (systemd, Kubernetes) restarts a process that fails at start, and shows why.',
        fix: 'In setup(): try { …declare, consume… } catch (err) { await conn.close(); throw err }, and let the first setup() throw out of startReceiver().',
      });
    }

    const announced = announcedNames(defer); // the connection_name each connection announces to the broker
    // ---- line 1: consuming ----
    let stopped = false;
    const receiver = await t.call(
      `startReceiver({ amqpUrl, odoo, prefetch: ${PREFETCH}, batchSize: ${BATCH}, batchWaitMs: 20, retryDelaysMs: [1000, 2000], maxAttempts: 3, log })`,
      () => t.target.startReceiver({ amqpUrl: t.url, odoo: config, prefetch: PREFETCH, batchSize: BATCH, batchWaitMs: 20, retryDelaysMs: [1000, 2000], maxAttempts: 3, log }),
      { timeoutMs: 8000 },
    );
    defer(() => (stopped ? undefined : receiver.stop()));
    if (!(await t.waitFor(async () => (await consumers()) > 0, 2000, 25))) {
      t.fail({ summary: `startReceiver() returned, but nothing consumes "${QUEUE}".${reported(log.lines)}`, fix: 'channel.consume(QUEUE, onMessage, { noAck: false }) before returning.', link: t.ui('queues', QUEUE) });
    }
    const good = ['1', '2', '3', '4', '5', '6', '7'].map((k) => event(k, 1));
    await send(good);
    t.provoke([1, 2], `published 7 good events at once (customers 1 to 7), batchSize ${BATCH}`);
    const allIn = await arrived(good.map((e) => e.key), 8000); // the first batch also creates Odoo's version field
    const rows = loadRows();
    t.observe(1, `Odoo received ${rows.length} load() call(s) with ${rows.join(', ') || 'no'} row(s)`);
    if (!allIn) {
      t.fail({
        summary: `Of 7 good events, ${good.filter((e) => partnersOf(odoo, e.key).length).length} reached Odoo within 8 s.${reported(log.lines)}`,
        expected: 'customers 1 to 7 as contacts in Odoo',
        fix: 'Collect messages into a batch, call upsertCustomers(odoo, events), ack the written ones.',
      });
    }
    const callsBefore = wire.requests.length;
    await sleep(150);
    t.observe(1, `${wire.requests.length - callsBefore} call(s) to Odoo in 150 ms with nothing to do`);
    if (wire.requests.length !== callsBefore) {
      t.fail({
        summary: `With nothing to do, the receiver made ${wire.requests.length - callsBefore} calls to Odoo in 150 ms.`,
        expected: 'no call while no message comes',
        saw: wire.requests.slice(callsBefore, callsBefore + 3).map((r) => r.body.slice(0, 100)).join(' | '),
        why: 'An idle receiver that keeps calling Odoo (an empty batch, again and again) burns CPU on both sides and hides real traffic in the logs.',
        fix: 'Handle batches only while the buffer holds messages.',
      });
    }
    if (Math.max(...rows) !== BATCH || rows.some((n) => n > BATCH)) {
      t.fail({
        summary: Math.max(...rows) < BATCH ? `The 7 events went to Odoo ${Math.max(...rows) === 1 ? 'one at a time' : `in batches of at most ${Math.max(...rows)}`}, not in batches of ${BATCH}.` : `A batch held more than batchSize (${BATCH}) events: ${rows.join(', ')}.`,
        expected: `load() calls of at most ${BATCH} rows, and at least one of ${BATCH}`,
        saw: `load() calls with ${rows.join(', ')} row(s)`,
        why: 'One load() per batch is where the bridge gets its speed; batchSize bounds how much one call (and one failure) can hold.',
        fix: `Push each delivery into a buffer; flush when it holds batchSize messages, or batchWaitMs after the first one, and hand the whole buffer to upsertCustomers().`,
      });
    }

    // ---- line 1: prefetch, read from the queue while Odoo is slow ----
    await odoo.setFaults({ slowMs: 200 });
    const flood = Array.from({ length: PREFETCH + 5 }, (_, i) => event(String(100 + i), 1));
    await send(flood);
    t.provoke(1, `made Odoo slow (200 ms per call) and published ${flood.length} events at once: with prefetch ${PREFETCH}, the broker delivers ${PREFETCH} and keeps the rest`);
    await t.waitFor(async () => (await count(QUEUE)) <= flood.length - PREFETCH, 1000, 10);
    await new Promise((r) => setTimeout(r, 50)); // more deliveries would come just as fast
    const held = flood.length - (await count(QUEUE));
    await odoo.setFaults({ slowMs: 0 });
    t.observe(1, `"${QUEUE}" kept ${flood.length - held} of ${flood.length} ready: the receiver holds ${held} unacked`);
    if (held !== PREFETCH) {
      t.fail({
        summary: `With prefetch ${PREFETCH}, the receiver held ${held} unacked messages.`,
        expected: `${PREFETCH} delivered, ${flood.length - PREFETCH} left ready in "${QUEUE}" while the first batch is at Odoo`,
        saw: `${held} delivered, ${flood.length - held} ready`,
        why: 'Prefetch bounds how many unacked messages the broker hands the receiver (its batches come from those). Without it, a backlog of a million events lands in the receiver\'s memory at once.',
        fix: 'await channel.prefetch(prefetch) before channel.consume(…).',
        link: t.ui('queues', QUEUE),
      });
    }

    if (!(await arrived(flood.map((e) => e.key), 8000))) t.fail({ summary: `After Odoo was fast again, the ${flood.length} events did not all reach it within 8 s.${reported(log.lines)}` });

    // ---- line 2: poison, not JSON, a duplicate ----
    const poison = event('10', 1, { name: null });
    await send([poison, 'this is not JSON', good[0]!]);
    t.provoke(2, 'published an event Odoo will refuse (customer 10 has no name), a message that is not JSON, and customer 1 v1 again (stale)');
    await t.waitFor(async () => (await count(DLQ)) >= 2, 3000, 25);
    const dead = await take(DLQ);
    const copyOf = (e: CustomerEvent) => (m: Message) => m.content.toString() === JSON.stringify(e);
    const poisonDead = dead.find(copyOf(poison));
    const textDead = dead.find((m) => m.content.toString() === 'this is not JSON');
    t.observe(2, `took ${dead.length} message(s) from "${DLQ}", reasons ${dead.map((m) => JSON.stringify(header(m, 'x-bridge-reason'))).join(', ')}`);
    if (!poisonDead || !textDead) {
      const what = !poisonDead ? 'The event Odoo refused (customer 10)' : 'The message that is not JSON';
      const ready = await count(QUEUE);
      return t.fail({
        summary: `${what} is not in the dead-letter queue${ready ? ` (${ready} message(s) still in "${QUEUE}")` : ': it was acked and lost'}.`,
        expected: `both in "${DLQ}", each with an 'x-bridge-reason' header`,
        saw: `${dead.length} message(s) in "${DLQ}", ${ready} ready in "${QUEUE}", contacts for customer 10: ${partnersOf(odoo, '10').length}`,
        why: !poisonDead
          ? "Odoo refused customer 10 (HTTP 200, the refusal in the body). Acking it forgets it: nobody will ever know the row never arrived, the original project's second flaw. The dead-letter queue keeps it, with the reason, for a person to fix."
          : 'A message that cannot even be parsed will never succeed; dropping it hides a bug upstream, and throwing inside the consumer callback kills the receiver.',
        fix: "For a 'rejected' outcome (and a message that does not parse): sendToQueue(DEAD_LETTER_QUEUE, content, { …, headers: { 'x-bridge-reason': reason } }), wait for the confirm, then ack.",
        link: t.ui('queues', DLQ),
      });
    }
    const odooSaid = 'The operation cannot be completed: Contacts require a name';
    if (header(poisonDead, 'x-bridge-reason') !== odooSaid || !/json|malformed|unexpected token/i.test(String(header(textDead, 'x-bridge-reason') ?? ''))) {
      t.fail({
        summary: 'A dead-lettered message has no useful reason in its x-bridge-reason header.',
        expected: `customer 10: "${odooSaid}" (Odoo's own words); the text: a reason saying it is not JSON`,
        saw: `customer 10: ${JSON.stringify(header(poisonDead, 'x-bridge-reason'))}; the text: ${JSON.stringify(header(textDead, 'x-bridge-reason'))}`,
        why: 'The reason is all a person has to go on when fixing the data: it must be the outcome\'s reason (or the parse error), not a generic word.',
        fix: "headers: { 'x-bridge-reason': outcome.reason } (or `malformed message: ${err.message}`).",
      });
    }
    const deadNote = log.lines.find((l) => l.level === 'warn' && JSON.stringify(l).includes(odooSaid));
    t.observe(8, deadNote ? `the receiver logged warn "${deadNote.msg}" with the reason` : 'the receiver logged no warning with the reason');
    if (!deadNote) {
      t.fail({ summary: 'The receiver dead-lettered customer 10, and logged no warning with the reason.', expected: `a warning mentioning "${odooSaid}"`, why: 'The dead-letter queue is a to-do list; the log says when each entry arrived and why.', fix: "log.warn('dead-lettered', { reason, messageId })" });
    }
    expectCopy(poisonDead, { body: JSON.stringify(poison), messageId: poison.eventId, contentType: 'application/json', type: 'customer.changed' }, DLQ);
    expectCopy(textDead, { body: 'this is not JSON', messageId: 'not-json', contentType: 'text/plain', type: 'note' }, DLQ);

    // ---- line 5: the dead-letter queue refuses the copy: the original must not be acked ----
    const deadProbes = await refuse(DLQ);
    const poison2 = event('11', 1, { name: null });
    const beside = event('13', 1);
    const openedBeside = t.connectionsOpened();
    await send([beside, poison2]);
    t.provoke(5, `made "${DLQ}" refuse new messages (max-length 0, reject-publish: the broker nacks the copy), then published customer 13 and an event Odoo refuses (customer 11), in one batch`);
    const tries = (key: string) => wire.requests.filter((r) => isLoad(r) && r.body.includes(`customer_${key}"`)).length;
    await t.waitFor(() => tries('11') >= 3, 1500, 10); // Odoo refused it three times: three copies refused, or lost
    await accept(DLQ);
    t.log(`let "${DLQ}" accept messages again`);
    await t.waitFor(async () => (await count(DLQ)) > deadProbes, 3000, 25);
    const dead2 = (await take(DLQ)).filter(copyOf(poison2));
    t.observe(5, `"${DLQ}" holds ${dead2.length} copy(ies) of customer 11 once it accepts again`);
    const reopened = t.connectionsOpened() - openedBeside;
    t.observe(5, `customer 13, in the same batch, ${partnersOf(odoo, '13').length ? 'reached Odoo' : 'did NOT reach Odoo'}; the receiver opened ${reopened} new connection(s) meanwhile`);
    if (reopened || partnersOf(odoo, '13').length !== 1) {
      t.fail({
        summary: reopened ? `Giving back customer 11 (its copy was refused) broke the receiver's channel: it had to reconnect (${reopened} new connection).` : 'Customer 13, written in the same batch as a refused copy, is not in Odoo.',
        expected: 'customer 11 given back alone (nack of that one delivery); customer 13 written and acked; the channel still open',
        why: 'nack(msg, true, true) gives back every unacked delivery up to that one, customer 13 included; acking customer 13 afterwards is an unknown delivery tag, and the broker closes the channel (PRECONDITION_FAILED).',
        fix: 'nack(msg, false, true): allUpTo false, requeue true.',
      });
    }
    if (dead2.length !== 1) {
      t.fail({
        summary: dead2.length === 0 ? `While "${DLQ}" refused its copy, the receiver acked customer 11 anyway: it was lost.` : `Customer 11 was dead-lettered ${dead2.length} times.`,
        expected: `customer 11 kept (given back to "${QUEUE}") while its copy was refused, then exactly one copy in "${DLQ}"`,
        saw: `${dead2.length} copies; ${await count(QUEUE)} ready in "${QUEUE}"`,
        why: 'The copy and the ack are two steps. Acking before the broker confirmed the copy, or after it refused it, loses the message for good: it is in neither queue.',
        fix: 'sendToQueue(…, callback): ack in the callback when err is null, nack(msg, false, true) when the broker refused.',
      });
    }

    // ---- line 4: Odoo refuses the whole call (nothing else in flight: no delay queue holds a message yet) ----
    const loadOf = (key: string) => (r: WireRequest) => isLoad(r) && r.body.includes(`customer_${key}"`);
    wire.when(loadOf('25'), { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, error: { code: 200, message: 'Odoo Server Error', data: { name: 'odoo.exceptions.AccessError', message: 'You are not allowed to create Contact (res.partner) records (scripted by the checker)' } } }) });
    const refused = [event('25', 1), event('26', 1)];
    await send(refused);
    t.provoke(4, "published customers 25 and 26 and answered their load() with odoo.exceptions.AccessError (a 'reject' OdooError: Odoo refuses the call itself)");
    await t.waitFor(async () => (await count(DLQ)) >= 2, 2000, 25);
    const rejectedBatch = await take(DLQ);
    const reasons = rejectedBatch.map((m) => String(header(m, 'x-bridge-reason') ?? ''));
    t.observe(4, `"${DLQ}" got ${rejectedBatch.length} message(s), reasons ${reasons.map((r) => JSON.stringify(r.slice(0, 60))).join(', ')}`);
    if (rejectedBatch.length !== 2 || !reasons.every((r) => r.includes('not allowed to create Contact'))) {
      t.fail({
        summary: `A 'reject' OdooError for the batch of customers 25 and 26 did not dead-letter both with its message (${rejectedBatch.length} dead-lettered).`,
        expected: `customers 25 and 26 in "${DLQ}", x-bridge-reason with the error's message`,
        saw: `${rejectedBatch.length} in "${DLQ}" (${reasons.join('; ')}), ${await count(RETRY_1)} in "${RETRY_1}", ${await count(QUEUE)} ready`,
        why: "A 'reject' error refuses the whole call: retrying it changes nothing. The messages must go where a person will look, with Odoo's words.",
        fix: "If upsertCustomers() throws an OdooError of kind 'reject': dead-letter every message of the batch with err.message.",
      });
    }

    // ---- lines 3, 5: Odoo is down ----
    await odoo.setFaults({ down: true });
    const probes = await refuse(RETRY_2);
    const parked = event('20', 1);
    const second = event('21', 1);
    const third = event('22', 1);
    const spent = event('23', 1);
    await send([second], { 'x-bridge-attempt': 1 });
    await send([third], { 'x-bridge-attempt': 2 });
    await send([spent], { 'x-bridge-attempt': 3 });
    t.provoke([3, 5], `took Odoo down, made "${RETRY_2}" refuse copies, then published customers 21 (x-bridge-attempt 1), 22 (attempt 2) and 23 (attempt 3, the last one allowed)`);
    const asked = wire.requests.length;
    await t.waitFor(async () => (await count(DLQ)) >= 1, 2500, 25);
    await t.waitFor(() => wire.requests.length >= asked + 4, 1500, 10); // Odoo down: a few batches tried, their copies refused
    const inSecond = (await count(RETRY_2)) - probes;
    await accept(RETRY_2);
    t.log(`let "${RETRY_2}" accept messages again`);
    await t.waitFor(async () => (await count(RETRY_2)) - probes >= 2, 2500, 25);
    const mainReady = await count(QUEUE);
    const later = (await take(RETRY_2)).filter((m) => m.content.toString() !== 'probe');
    const gaveUp = (await take(DLQ)).find(copyOf(spent));
    // Last, and Odoo back up at once: a parked event must not come back (after 1 s) while Odoo is still down.
    await send([parked], null);
    t.provoke([3, 5], `then published customer 20 (no headers at all, as the relay publishes), Odoo still down`);
    const parkedOk = await t.waitFor(async () => (await count(RETRY_1)) >= 1, 2500, 10);
    await odoo.setFaults({ down: false });
    t.log('brought Odoo back');
    t.observe([3, 5], `"${RETRY_1}": ${await count(RETRY_1)}; "${RETRY_2}": ${inSecond} while refusing, then ${later.map((m) => `${[second, third].find((e) => copyOf(e)(m)) ? `customer ${[second, third].find((e) => copyOf(e)(m))!.key}` : 'an unknown message'} attempt ${JSON.stringify(header(m, 'x-bridge-attempt'))}`).join(', ') || 'nothing'}; "${DLQ}": ${gaveUp ? `customer 23, ${JSON.stringify(header(gaveUp, 'x-bridge-reason'))}` : 'nothing'}; "${QUEUE}": ${mainReady} ready`);
    if (!parkedOk || later.length !== 2) {
      t.fail({
        summary: `While Odoo was down, the events did not go to the delay queue of their attempt (${RETRY_1}: ${parkedOk ? 1 : 0} of 1, ${RETRY_2}: ${later.length} of 2).${reported(log.lines)}`,
        expected: `customer 20 in "${RETRY_1}" with x-bridge-attempt 1; customers 21 and 22 in "${RETRY_2}" with attempts 2 and 3; all acked in "${QUEUE}"`,
        saw: `${mainReady} ready in "${QUEUE}", the rest held unacked by your receiver, requeued, or elsewhere`,
        why: 'Holding a message and retrying in place (the original project waited 5 s, again and again) blocks every message behind it, and a nack with requeue spins at full speed. A delay queue parks the message outside the main queue and the broker brings it back later; each attempt waits longer.',
        fix: "On a 'retry' OdooError: attempt = (x-bridge-attempt ?? 0) + 1; forward each message to retryQueueFor(attempt) with headers x-bridge-attempt and x-bridge-last-error, wait for the confirm, then ack.",
        link: t.ui('queues', RETRY_1),
      });
    }
    if (inSecond !== 0 || mainReady !== 0) {
      t.fail({
        summary: inSecond !== 0 ? `"${RETRY_2}" holds ${inSecond} copies although it refused every one.` : `"${QUEUE}" still holds ${mainReady} message(s) while Odoo is down: the main queue does not keep flowing.`,
        why: 'The main queue must keep flowing while Odoo is down: every message either parked in a delay queue (once the broker confirmed the copy) or held back to try again.',
        fix: 'Ack the original only once the broker confirmed the copy; give it back (nack with requeue) when it refused.',
      });
    }
    const parkedNote = log.lines.find((l) => l.level === 'warn' && /unreachable|ECONNREFUSED|UND_ERR|fetch failed/i.test(JSON.stringify(l)) && l.msg.trim() !== '');
    t.observe(8, parkedNote ? `the receiver logged warn "${parkedNote.msg}" with the error` : 'the receiver logged no warning about Odoo being unavailable');
    if (!parkedNote) {
      t.fail({ summary: 'While Odoo was down, the receiver sent batches to a delay queue and logged no warning with the error.', expected: "a warning with the error's message (Odoo unreachable)", why: 'Events parked in delay queues are invisible from the main queue: the log is where a person sees that Odoo is down, and since when.', fix: "log.warn('Odoo unavailable: … event(s) wait in a delay queue', { error: err.message })" });
    }
    const attempts = later.map((m) => header(m, 'x-bridge-attempt')).sort();
    const lastErrors = later.map((m) => header(m, 'x-bridge-last-error'));
    if (attempts.join() !== '2,3' || lastErrors.some((e) => typeof e !== 'string' || e === '')) {
      t.fail({
        summary: `The events retried a second and a third time carry x-bridge-attempt ${attempts.map((a) => JSON.stringify(a)).join(' and ')}${lastErrors.some((e) => !e) ? ' and no x-bridge-last-error' : ''}.`,
        expected: "x-bridge-attempt 2 and 3 (the attempt it arrived with, plus one), and x-bridge-last-error = the error's message",
        saw: later.map((m) => `attempt ${JSON.stringify(header(m, 'x-bridge-attempt'))}, last error ${JSON.stringify(header(m, 'x-bridge-last-error'))}`).join('; '),
        why: 'The attempt is what makes each retry wait longer and what ends the retries after maxAttempts; the last error tells whoever looks at a delay queue why the events wait.',
        fix: "const attempt = Number(msg.properties.headers?.['x-bridge-attempt'] ?? 0) + 1; headers: { 'x-bridge-attempt': attempt, 'x-bridge-last-error': err.message }",
      });
    }
    for (const m of later) {
      const sent = [second, third].find((e) => copyOf(e)(m));
      if (sent) expectCopy(m, { body: JSON.stringify(sent), messageId: sent.eventId, contentType: 'application/json', type: 'customer.changed' }, RETRY_2);
    }
    const spentReason = String(header(gaveUp, 'x-bridge-reason') ?? '');
    if (!gaveUp || !/3/.test(spentReason) || !/attempt/i.test(spentReason)) {
      t.fail({
        summary: gaveUp ? `Customer 23 was dead-lettered with the reason ${JSON.stringify(spentReason)}, which does not say it ran out of attempts.` : `An event that already used its 3 attempts was not dead-lettered.`,
        expected: `customer 23 in "${DLQ}" with a reason like "gave up after 3 attempts: …"`,
        saw: gaveUp ? spentReason : `"${DLQ}" has no copy of customer 23`,
        why: 'Without a limit, an event whose failure never goes away circles through the delay queues forever; the reason tells a person it was not Odoo refusing the record.',
        fix: "Past maxAttempts, dead-letter the message with a reason like `gave up after ${maxAttempts} attempts: ${err.message}`.",
      });
    }

    // ---- line 3: the parked event comes back; then a failure nobody planned ----
    const backAgain = await arrived([parked.key], 3000);
    t.observe(3, `customer 20 ${backAgain ? 'reached' : 'did NOT reach'} Odoo once its delay was over`);
    if (!backAgain) {
      t.fail({
        summary: 'After Odoo came back, the parked event (customer 20) did not reach it within 3 s.',
        expected: 'customer 20 in Odoo once its 1 s delay expired',
        fix: 'The delay queue sends it back to the main queue (13.2); the receiver must then write it like any other.',
      });
    }
    wire.when(loadOf('24'), { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, result: { ids: false } }) });
    const odd = event('24', 1);
    await send([odd]);
    t.provoke(3, "once Odoo was back and customer 20 written, published customer 24 and answered its load() with a result the upsert cannot read (ids false and no messages: it throws a TypeError, not an OdooError)");
    const oddParked = await t.waitFor(async () => (await count(RETRY_1)) >= 1, 2000, 25);
    const oddNote = log.lines.find((l) => l.level === 'warn' && /Cannot read properties/.test(JSON.stringify(l)) && !/gave up/.test(JSON.stringify(l)));
    if (oddParked && !oddNote) {
      t.fail({ summary: 'The receiver sent customer 24 to a delay queue after a TypeError, and logged no warning with that error.', expected: "a warning with the error's message (Cannot read properties of undefined…)", why: 'An error nobody planned for is the one a person most needs to read about.', fix: "log.warn('Odoo unavailable: … wait in a delay queue', { error: err.message }) for every batch sent to a delay queue." });
    }
    t.observe(3, `"${RETRY_1}" holds ${await count(RETRY_1)} message(s) (customer 24 expected)`);
    if (!oddParked) {
      t.fail({
        summary: `An error that is not an OdooError (a TypeError inside the upsert) did not send customer 24 to "${RETRY_1}".${reported(log.lines)}`,
        expected: `customer 24 in "${RETRY_1}" with x-bridge-attempt 1`,
        saw: `${await count(QUEUE)} ready in "${QUEUE}", ${await count(DLQ)} in "${DLQ}", ${await count(RETRY_1)} in "${RETRY_1}"`,
        why: 'Something nobody planned for (a new Odoo version answering differently, a bug) is no reason to drop an event, nor to dead-letter it: try again later, and the log says why.',
        fix: "In the catch: anything that is not an OdooError is treated like a 'retry' one.",
      });
    }
    const oddBack = await arrived([odd.key], 3000);
    t.observe(3, `customer 24 ${oddBack ? 'reached' : 'did NOT reach'} Odoo after its delay`);
    if (!oddBack) {
      t.fail({
        summary: 'Customer 24, parked after an error nobody planned, did not reach Odoo within 3 s.',
        expected: 'customer 24 in Odoo once its 1 s delay expired',
        fix: 'The delay queue sends it back to the main queue (13.2); the receiver must then write it like any other.',
      });
    }

    // ---- lines 6, 8: someone deletes the queue ----
    let mark = log.lines.length;
    await t.mgmt.deleteQueue(t.vhost, QUEUE);
    t.provoke([6, 8], `deleted the queue "${QUEUE}" (an operator's mistake)`);
    const resumed = await t.waitFor(async () => (await consumers()) > 0, 4000, 25);
    const cancelled = log.lines.slice(mark).find((l) => l.level === 'error');
    t.observe([6, 8], `${await consumers()} consumer(s) on "${QUEUE}"; the receiver logged ${cancelled ? `error "${cancelled.msg}"` : 'no error'}`);
    if (!resumed || !cancelled) {
      t.fail({
        summary: !resumed ? `After "${QUEUE}" was deleted, the receiver did not consume again within 4 s.` : 'The broker cancelled the consumer (its queue was deleted), and the receiver logged no error.',
        why: "When its queue is deleted, the broker cancels the consumer (the callback gets null). A receiver that ignores it sits idle forever, while the relay's messages come back unroutable; a person should learn that someone deleted it.",
        fix: 'On a null message: log.error(…), assertTopology() again, then consume again.',
      });
    }
    await send([event('30', 1)]);
    if (!(await arrived(['30'], 3000))) t.fail({ summary: 'After the queue was declared again, customer 30 did not reach Odoo.' });

    // ---- lines 6, 8: deleted again while its topology cannot be declared; then it may not even connect ----
    await t.mgmt.deleteExchange(t.vhost, 'bridge');
    await checkerStep(t, 'declare "bridge" as a fanout exchange', async () => {
      const ch = await t.channel();
      await ch.assertExchange('bridge', 'fanout', { durable: true });
      await ch.close();
    });
    mark = log.lines.length;
    const openedBefore = t.connectionsOpened();
    await t.mgmt.deleteQueue(t.vhost, QUEUE);
    const deletedAt = Date.now();
    t.provoke([6, 8], `replaced the exchange "bridge" by a fanout exchange, then deleted "${QUEUE}" again: declaring the topology again fails (PRECONDITION_FAILED) and the broker closes the channel`);
    const cannot = await t.waitFor(() => log.lines.slice(mark).find((l) => l.level === 'error' && /PRECONDITION|406|inequivalent/.test(JSON.stringify(l)) && l.msg.trim() !== ''), 1000, 10);
    await permissions(undefined);
    t.log('then took away its access to the vhost: it cannot even connect');
    await sleep(Math.max(0, deletedAt + 1000 - Date.now()));
    const triesWhileShut = t.connectionsOpened() - openedBefore;
    const restoredAt = Date.now();
    await permissions({ configure: '.*', write: '.*', read: '.*' });
    await t.mgmt.deleteExchange(t.vhost, 'bridge');
    t.log(`gave the access back and deleted the fanout exchange, ${restoredAt - deletedAt} ms after the deletion`);
    const cameBack = await t.waitFor(async () => ((await consumers()) > 0 ? Date.now() : 0), 3000, 10);
    // The broker lists the consumer once it has sent consume-ok; the receiver logs its info line
    // when that reply reaches it, a moment later on a busy machine: it gets that moment.
    if (cameBack) await t.waitFor(() => log.lines.slice(mark).some((l) => l.level === 'info' && l.msg.trim() !== ''), 500, 10);
    const shut = log.lines.slice(mark);
    const refusedLogged = shut.find((l) => l.level === 'warn' && /ConnectionClose|ACCESS_REFUSED|access to vhost|not allowed/i.test(JSON.stringify(l)) && l.msg.trim() !== '');
    const consumingAgain = shut.find((l) => l.level === 'info' && l.msg.trim() !== '');
    t.observe([6, 8], `the receiver logged ${cannot ? `error "${cannot.msg}"` : 'no error about it'}; it tried to connect ${triesWhileShut} time(s) in the 1 s it was shut out, was back ${cameBack ? `${cameBack - restoredAt} ms after the door opened` : 'not within 3 s'}; its log: ${shut.map((l) => `${l.level} "${l.msg}"`).slice(0, 6).join('; ')}`);
    if (!cameBack || cameBack - restoredAt > 1500 || triesWhileShut !== 1) {
      t.fail({
        summary: !cameBack
          ? `After the broker closed its channel (a declaration it refused) and let it in again, the receiver did not consume again within 3 s.${reported(shut)}`
          : triesWhileShut !== 1
            ? `While it was shut out for 1 s, the receiver tried to connect ${triesWhileShut} times: ${triesWhileShut === 0 ? 'it did not try at all' : 'it does not wait longer after each failure'}.`
            : `Once let in again, the receiver took ${cameBack - restoredAt} ms to come back: it waits too long between tries.`,
        expected: 'the connection closed when the broker closed the channel; a first try 0.5 s later, the next 1 s after that (then 2 s, 4 s… at most 10 s): one refused try in the 1 s, back about 0.5 s after the door opens',
        saw: `${triesWhileShut} tr${triesWhileShut === 1 ? 'y' : 'ies'} while shut out; back ${cameBack ? `${cameBack - restoredAt} ms after` : 'never'}`,
        why: 'A channel the broker closed stays closed, and a consumer on it gets nothing ever again; the connection under it looks fine. Starting over (close, reconnect, declare, consume) heals it, with a delay that grows so that a broker in trouble is not hammered.',
        fix: "channel.on('close', () => connection.close()); the connection's 'close' handler reconnects: for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) { await sleep(delay); if (stopping || halted) return; try { await setup(); return } catch (err) { log.warn(…) } }",
      });
    }
    const channelWarned = shut.find((l) => l.level === 'warn' && /PRECONDITION|406|inequivalent/.test(JSON.stringify(l)) && l.msg.trim() !== '');
    if (!cannot || !channelWarned || !refusedLogged || !consumingAgain) {
      t.fail({
        summary: !cannot
          ? 'The receiver could not consume again (declaring the topology was refused), and logged no error saying so.'
          : !channelWarned
            ? "The broker closed the receiver's channel (PRECONDITION_FAILED), and the receiver logged no warning with that error."
            : !refusedLogged ? "The broker refused the receiver's reconnection, and it logged no warning with the error." : 'The receiver came back, and logged no info line saying it consumes again.',
        expected: "a warning with the channel's error, an error when it cannot consume again, a warning with the error's message for each failed reconnection, an info line once consuming",
        saw: shut.map((l) => `${l.level} "${l.msg}"${l.error ? ` (${String(l.error)})` : ''}`).slice(0, 8).join('; ') || 'nothing',
        why: "The original project's advice holds: keep a log, to find out later why something failed. A receiver that stops consuming in silence looks exactly like one with nothing to do.",
        fix: "log.error('could not resume consuming', { error: err.message }) where resuming fails; log.warn('broker unreachable', { error: err.message }) in each failed reconnection; log.info('consuming') once consuming.",
      });
    }

    // ---- lines 5, 6: a network failure while a poison event's batch is at Odoo ----
    wire.when(isLoad, { delayMs: 200 });
    const poison3 = event('12', 1, { name: null });
    await send([poison3]);
    await t.waitFor(() => wire.requests.some((r) => isLoad(r) && r.body.includes('customer_12"')), 2000, 10);
    t.cutConnections('a network failure while a batch is at Odoo');
    t.provoke([5, 6], "made Odoo's next load() slow, published an event Odoo refuses (customer 12), and cut the receiver's broker connection while its batch was at Odoo: the copy to the dead-letter queue cannot be sent");
    await t.waitFor(async () => (await consumers()) === 0, 1000, 10);
    const reconnected = await t.waitFor(async () => (await consumers()) > 0, 6000, 25);
    await t.waitFor(async () => (await count(DLQ)) > 0, 3000, 25);
    const dead3 = (await take(DLQ)).filter(copyOf(poison3));
    t.observe([5, 6], `${reconnected ? 'back' : 'NOT back'} after the cut; ${dead3.length} copy(ies) of customer 12 in "${DLQ}"`);
    if (!reconnected) t.fail({ summary: `After the checker cut its connection, the receiver did not come back within 6 s.${reported(log.lines)}`, fix: "On the connection's 'close' event, connect again with a growing delay." });
    if (dead3.length !== 1) {
      t.fail({
        summary: `Customer 12, whose copy could not be sent (the connection was cut), ended with ${dead3.length} copies in "${DLQ}".`,
        expected: `exactly one copy, sent once the message came back after the reconnection`,
        why: 'A copy that was never confirmed does not exist: the original must stay unacked (the broker hands it out again after a reconnection) and be handled again.',
        fix: 'sendToQueue on a closed channel throws: catch it and resolve false (not confirmed); never count a copy that was not confirmed.',
      });
    }

    const names = announced();
    if (names.length === 0 || names.some((n) => n !== 'bridge receiver')) {
      t.fail({
        summary: names.length ? `The receiver's broker connection is named ${names.map((n) => JSON.stringify(n)).join(', ')} instead of "bridge receiver".` : `The receiver's broker connection has no name (no connection_name): the management UI shows "127.0.0.1:port -> …".`,
        expected: "connect(amqpUrl, 'bridge receiver', log) (13.2)",
        why: 'With relays and receivers connected, the name is how an operator tells them apart in the management UI.',
        fix: "const conn = await connect(amqpUrl, 'bridge receiver', log);",
        link: t.ui('connections'),
      });
    }
    t.observe(6, `the receiver's connections announced the connection_name ${[...new Set(names)].map((n) => JSON.stringify(n)).join(', ')}`);

    // ---- line 7: stop() while a batch is at Odoo and the broker is away ----
    wire.when(isLoad, { delayMs: 300 });
    const last = event('32', 1);
    await send([last]);
    await t.waitFor(() => wire.requests.some((r) => isLoad(r) && r.body.includes('customer_32"')), 2000, 10);
    t.cutConnections('a network failure just before stop()');
    const lastCut = Date.now();
    await sleep(100); // the receiver notices, and waits to reconnect
    mark = log.lines.length;
    t.provoke(7, "made Odoo's next load() take 0.3 s, published customer 32, cut the receiver's broker connection while its batch was at Odoo, and called stop() while it waited to reconnect");
    let writtenAtStop = -1;
    const stopError = await rejection(async () => {
      await receiver.stop();
      writtenAtStop = partnersOf(odoo, '32').length;
    }, 5000);
    stopped = true;
    if (stopError) t.fail({ summary: `receiver.stop() ${stopError === 'timeout' ? 'did not return within 5 s' : `threw: ${stopError.message}`}.`, fix: 'stop(): wait for the batch in hand, close the connection.' });
    const afterStop = log.lines.length; // judged at the end: a reconnect would come 0.5 s after the cut
    t.observe(7, `when stop() returned, customer 32 ${writtenAtStop === 1 ? 'was' : 'was NOT yet'} in Odoo`);
    if (writtenAtStop !== 1) {
      t.fail({
        summary: 'stop() returned before the batch in hand was done: customer 32 was still on its way to Odoo.',
        expected: 'stop() waits for the batch in hand: customer 32 written, then the connection closed',
        saw: `customer 32 not in Odoo when stop() returned${partnersOf(odoo, '32').length ? ' (it got there afterwards)' : ''}`,
        why: 'A deploy stops the receiver many times a day. Closing under a batch makes its messages come again, and a process that exits right after stop() leaves the batch half done.',
        fix: 'In stop(): await the batch in progress, then close the connection.',
      });
    }
    // Customer 32 comes back (its ack went down with the connection); nothing else may: every other
    // message was acked, on its own when it was copied elsewhere.
    const leftover = await take(QUEUE);
    const unexpected = leftover.filter((m) => !copyOf(last)(m));
    t.observe([2, 7], `after stop(), "${QUEUE}" holds ${leftover.length} message(s): ${leftover.map((m) => m.content.toString().slice(0, 40)).join(' | ') || 'none'}`);
    if (unexpected.length) {
      t.fail({
        summary: `After stop(), ${unexpected.length} message(s) the receiver had already handled came back to "${QUEUE}": ${unexpected.map((m) => m.content.toString().slice(0, 60)).join(' | ')}.`,
        expected: `only customer 32, whose ack went down with the cut connection`,
        why: 'A message copied to the dead-letter or a delay queue must be acked on its own; a later ack with `multiple` only covers it while that channel lives. Unacked, it comes back after every reconnect and is copied again.',
        fix: 'ack(h) right after its copy is confirmed.',
      });
    }

    // ---- line 6: stats() ----
    const stats = await t.call('receiver.stats()', () => receiver.stats());
    const want = { written: 12 + flood.length, retried: 4, deadLettered: 7 };
    t.observe(6, `stats(): ${JSON.stringify(stats)}`);
    const off: [string, unknown][] = Object.entries(want).filter(([k, v]) => stats?.[k as keyof typeof want] !== v);
    // Stale: customer 1 again, and at most one message whose ack lost a race against a cut.
    if (!(stats?.stale >= 1 && stats.stale <= 2)) off.push(['stale', '1 (or 2)']);
    if (off.length || !(stats?.batches >= 10)) {
      t.fail({
        summary: `stats() does not count what happened: ${off.map(([k, v]) => `${k} ${JSON.stringify(stats?.[k as keyof typeof stats])} instead of ${v}`).join(', ') || `batches ${stats?.batches}`}.`,
        expected: `written ${want.written} (customers 1 to 7, 13, 20, 24, 30, 32 and the ${flood.length} of the prefetch test), stale 1 (customer 1 again; 2 if the broker handed out again a message acked just before a cut), retried 4 (20, 21, 22, 24), dead-lettered 7 (10, the text, 11, 12, 23, 25, 26), batches 10 or more`,
        saw: JSON.stringify(stats),
        why: 'stats() is how the bridge reports its progress (the status line of npm run capstone -- up): a count that is off hides a problem.',
        fix: 'Count once per message, when its fate is sealed: written or stale when acked, retried when its copy is confirmed in a delay queue, dead-lettered when its copy is confirmed in the dead-letter queue; batches once per batch handled.',
      });
    }

    // ---- line 4: a second receiver, whose API key is revoked ----
    await odoo.setFaults({ keysRevoked: true });
    const log2 = memoryLogger('receiver 2');
    let stopped2 = false;
    const receiver2 = await t.call('a second startReceiver({ …, log })', () => t.target.startReceiver({ amqpUrl: t.url, odoo: config, prefetch: PREFETCH, batchSize: BATCH, batchWaitMs: 20, retryDelaysMs: [1000, 2000], maxAttempts: 3, log: log2 }), { timeoutMs: 8000 });
    defer(() => (stopped2 ? undefined : receiver2.stop()));
    await t.waitFor(async () => (await consumers()) > 0, 2000, 25);
    await send([event('40', 1)]);
    t.provoke(4, "started a second receiver, revoked its API key in Odoo (every call answers AccessDenied), then published customer 40");
    const gone = await t.waitFor(async () => (await consumers()) === 0, 3000, 25);
    const retriedAway = (await count(RETRY_1)) + (await count(RETRY_2));
    const reason = await Promise.race([receiver2.halted, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1500))]);
    const backInQueue = await t.waitFor(async () => (await count(QUEUE)) === 1, 2000, 25);
    t.observe(4, `${await consumers()} consumer(s); ${await count(QUEUE)} ready in "${QUEUE}"; halted ${reason === undefined ? 'pending' : `resolved with ${JSON.stringify(reason)}`}; ${log2.lines.filter((l) => l.level === 'error').length} error(s) logged`);
    if (!gone) {
      t.fail({
        summary: `With a revoked API key, the receiver is still consuming${retriedAway ? ' (and sent customer 40 to a delay queue)' : ''}.`,
        expected: `no consumer on "${QUEUE}", customer 40 back in it, an error in the log`,
        saw: `${await consumers()} consumer(s); ${retriedAway} message(s) in delay queues; ${await count(DLQ)} dead-lettered`,
        why: 'AccessDenied fails every call the same way. Retrying sends every event round the delay queues, dead-lettering fills the dead-letter queue with good events. Stop, keep the events in the queue, and tell a person.',
        fix: "On a 'fatal' OdooError: cancel the consumer, nack(msg, false, true) what you hold, log.error(…), and resolve `halted`.",
      });
    }
    if (!backInQueue) {
      t.fail({ summary: `After stopping, customer 40 is not back in "${QUEUE}" (${await count(QUEUE)} ready, ${await count(DLQ)} dead-lettered).`, fix: 'nack(msg, false, true) the messages you hold, or close the channel: unacked messages return to the queue.' });
    }
    if (typeof reason !== 'string' || reason.trim() === '' || !log2.lines.some((l) => l.level === 'error')) {
      t.fail({
        summary: `The receiver stopped, but ${typeof reason !== 'string' ? '`halted` did not resolve' : reason.trim() === '' ? '`halted` resolved with an empty reason' : 'logged no error'}: nobody will know why events stopped flowing.`,
        expected: "`halted` resolved with the fatal OdooError's message, and an error in the log",
        fix: "log.error('STOPPED CONSUMING: Odoo refused our credentials …') and resolve `halted` with err.message.",
      });
    }
    await sleep(50); // the close events of its connection
    const stillGone = (await consumers()) === 0 && !log2.lines.some((l) => l.level === 'info' && l.t > (log2.lines.find((e) => e.level === 'error')?.t ?? ''));
    const lostAfterHalt = log2.lines.filter((l) => /reconnect/i.test(l.msg));
    t.observe(4, `after halting: ${await consumers()} consumer(s), ${lostAfterHalt.length} line(s) about reconnecting`);
    if (!stillGone || lostAfterHalt.length) {
      t.fail({
        summary: !stillGone ? 'The receiver halted (AccessDenied), then connected and consumed again by itself.' : `The receiver halted, then logged "${lostAfterHalt[0]!.msg}": it takes its own stop for a failure.`,
        expected: 'a halted receiver stays stopped, and quiet, until a person restarts it',
        why: 'Reconnecting with the same refused credentials only takes the next events out of the queue and gives them back, forever.',
        fix: 'Set halted = true first; the connection\'s close handler and the reconnect loop check it.',
      });
    }
    await odoo.setFaults({ keysRevoked: false });
    await t.call('the second receiver.stop()', () => receiver2.stop());
    stopped2 = true;
    await sleep(Math.max(0, lastCut + 700 - Date.now())); // the first receiver would reconnect 0.5 s after its cut
    await t.expectConnectionsClosed('receiver.stop() (the first receiver, stopped while its connection was down, and the second one)');
    const lateLines = log.lines.slice(afterStop);
    t.observe(7, `after its stop(), the first receiver logged ${lateLines.length} line(s)${lateLines.length ? `: ${lateLines.map((l) => `${l.level} "${l.msg}"`).join('; ')}` : ''}`);
    if (lateLines.length) {
      t.fail({
        summary: `After stop(), the receiver went on by itself: it logged "${lateLines[0]!.msg}".`,
        expected: 'nothing reconnecting, and nothing logged, once stop() returned',
        why: 'A stopped receiver that reconnects by itself keeps consuming next to the one that replaced it, and never lets the process exit.',
        fix: 'Set stopping = true first in stop(); the reconnect loop checks it after each wait.',
      });
    }
    const mute = [...log.lines, ...log2.lines].find((l) => l.msg.trim() === '');
    t.observe(8, `${log.lines.length + log2.lines.length} log line(s), ${mute ? 'some' : 'none'} without a message`);
    if (mute) t.fail({ summary: `The receiver logged a ${mute.level} line without a message (${JSON.stringify(mute)}).`, why: 'A log line says what happened in words; fields alone (or nothing) tell a person nothing.', fix: "log.warn('lost the broker; reconnecting'), log.info('consuming')…" });
  }),
);

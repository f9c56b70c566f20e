// Check 13.6: the receiver, against the Odoo stand-in, with the faults switched on by the
// checker: good events reach Odoo; a poison event and a message that is not JSON land in
// the dead-letter queue with a reason; while Odoo is down, events move to a delay queue
// (the main queue keeps flowing) and reach Odoo once it is back; an event out of attempts
// is dead-lettered; a deleted queue and a cut connection are survived; with its API key
// revoked, the receiver stops consuming, gives the event back, and says so.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/06-receiver.js';
import { memoryLogger } from '../../capstone/log.js';
import { event, partnersOf, standIn, withResources } from './support.js';

const QUEUE = 'bridge.customers';
const DLQ = 'bridge.customers.dead';
const FIRST_RETRY = 'bridge.customers.retry.1s';

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const odoo = await standIn(defer);
    const log = memoryLogger('receiver');
    const count = (q: string) => t.messageCount(q).catch(() => 0);
    const consumers = () => t.consumerCount(QUEUE).catch(() => 0);
    const reported = () => {
      const bad = log.lines.find((l) => l.level === 'error' || /TODO/.test(`${l.msg} ${String(l.error ?? '')}`));
      return bad ? ` Your receiver logged: "${bad.msg}${bad.error ? `: ${String(bad.error)}` : ''}".` : '';
    };
    const send = async (events: (object | string)[], headers: Record<string, unknown> = {}) => {
      const ch = await t.confirmChannel();
      for (const e of events) {
        const body = typeof e === 'string' ? Buffer.from(e) : Buffer.from(JSON.stringify(e));
        ch.sendToQueue(QUEUE, body, { persistent: true, contentType: 'application/json', messageId: (e as { eventId?: string }).eventId, headers });
      }
      await ch.waitForConfirms();
      await ch.close();
    };
    const arrived = (keys: string[], ms: number) => t.waitFor(() => keys.every((k) => partnersOf(odoo, k).length > 0), ms, 50);

    let stopped = false;
    const receiver = await t.call(
      'startReceiver({ amqpUrl, odoo, retryDelaysMs: [1000, 2000], maxAttempts: 3, log })',
      () => t.target.startReceiver({ amqpUrl: t.url, odoo: odoo.config, retryDelaysMs: [1000, 2000], maxAttempts: 3, batchWaitMs: 20, log }),
      { timeoutMs: 8000 },
    );
    defer(() => (stopped ? undefined : receiver.stop()));
    if (!(await t.waitFor(async () => (await consumers()) > 0, 2000, 50))) {
      t.fail({ summary: `startReceiver() returned, but nothing consumes "${QUEUE}".`, fix: 'channel.consume(QUEUE, onMessage, { noAck: false }) before returning.', link: t.ui('queues', QUEUE) });
    }

    // 1. Good events.
    await send([event('1', 1), event('2', 1), event('3', 1)]);
    t.log('published 3 good events (customers 1, 2, 3)');
    if (!(await arrived(['1', '2', '3'], 3000))) {
      t.fail({
        summary: `Of 3 good events, ${['1', '2', '3'].filter((k) => partnersOf(odoo, k).length).length} reached Odoo within 3 s.${reported()}`,
        expected: 'customers 1, 2 and 3 as contacts in Odoo',
        fix: 'Collect messages into a batch, call upsertCustomers(odoo, events), ack the written ones.',
      });
    }

    // 2. Poison: Odoo refuses it; and a message that is not JSON.
    await send([event('10', 1, { name: null })]);
    await send(['this is not JSON']);
    t.log('published an event Odoo will refuse (customer 10 has no name) and a message that is not JSON');
    await t.waitFor(async () => (await count(DLQ)) >= 2, 3000, 50);
    const dead = await t.takeMessages(DLQ);
    const poisonDead = dead.some((m) => m.content.toString().includes('"key":"10"'));
    const textDead = dead.some((m) => m.content.toString() === 'this is not JSON');
    if (!poisonDead || !textDead) {
      const what = !poisonDead ? 'The event Odoo refused (customer 10)' : 'The message that is not JSON';
      const ready = await count(QUEUE);
      t.fail({
        summary: `${what} is not in the dead-letter queue${ready ? ` (${ready} message(s) still in "${QUEUE}")` : ': it was acked and lost'}.`,
        expected: `both in "${DLQ}", each with an 'x-bridge-reason' header`,
        saw: `${dead.length} message(s) in "${DLQ}", ${ready} ready in "${QUEUE}", contacts for customer 10: ${partnersOf(odoo, '10').length}`,
        why: !poisonDead
          ? "Odoo refused customer 10 (HTTP 200, the refusal in the body). Acking it forgets it: nobody will ever know the row never arrived, the seed's second flaw. The dead-letter queue keeps it, with the reason, for a person to fix."
          : 'A message that cannot even be parsed will never succeed; dropping it hides a bug upstream, and throwing inside the consumer callback kills the receiver.',
        fix: "For a 'rejected' outcome (and a message that does not parse): sendToQueue(DEAD_LETTER_QUEUE, content, { headers: { 'x-bridge-reason': reason } }), wait for the confirm, then ack.",
        link: t.ui('queues', DLQ),
      });
    }
    const reasons = dead.map((m) => String(m.properties.headers?.['x-bridge-reason'] ?? ''));
    if (reasons.some((r) => !r) || !reasons.some((r) => /name/i.test(r))) {
      t.fail({
        summary: 'A dead-lettered message has no useful reason in its x-bridge-reason header.',
        expected: "'x-bridge-reason' with Odoo's message (e.g. \"…Contacts require a name\")",
        saw: reasons.map((r) => JSON.stringify(r)).join(', '),
        fix: 'Pass the outcome\'s reason (or the parse error) into the header.',
      });
    }

    // 3. Odoo down: events move to a delay queue; the main queue keeps flowing.
    await odoo.setFaults({ down: true });
    t.log('took Odoo down (connections refused)');
    await send([event('20', 1), event('21', 1)]);
    t.log('published customers 20 and 21');
    const parked = await t.waitFor(async () => (await count(FIRST_RETRY)) >= 2, 2500, 25);
    if (!parked) {
      const ready = await count(QUEUE);
      t.fail({
        summary: `While Odoo was down, the 2 events did not go to a delay queue ("${FIRST_RETRY}" has ${await count(FIRST_RETRY)}).${reported()}`,
        expected: `both events copied to "${FIRST_RETRY}" (retryQueueFor(1)) with x-bridge-attempt 1, and acked`,
        saw: `${ready} ready in "${QUEUE}", the rest held unacked by your receiver or requeued`,
        why: 'Holding a message and retrying in place (the seed waited 5 s, again and again) blocks every message behind it, and a nack with requeue spins at full speed. A delay queue parks the message outside the main queue and the broker brings it back later.',
        fix: "On a 'retry' OdooError: forward each message to retryQueueFor(attempt) with header 'x-bridge-attempt', wait for the confirm, then ack.",
        link: t.ui('queues', FIRST_RETRY),
      });
    }
    await send([event('22', 1)], { 'x-bridge-attempt': 3 });
    t.log('published customer 22 carrying x-bridge-attempt 3 (its last allowed attempt is over)');
    if (!(await t.waitFor(async () => (await count(DLQ)) >= 1, 2500, 50))) {
      t.fail({
        summary: `An event that already used its 3 attempts was not dead-lettered (dead-letter queue: ${await count(DLQ)}).`,
        expected: `customer 22 in "${DLQ}" with a reason like "gave up after 3 attempts"`,
        why: 'Without a limit, an event whose failure never goes away circles through the delay queues forever.',
        fix: "Read 'x-bridge-attempt' from the headers; past maxAttempts, dead-letter instead of retrying.",
      });
    }
    await t.takeMessages(DLQ);
    await odoo.setFaults({ down: false });
    t.log('Odoo is back');
    if (!(await arrived(['20', '21'], 6000))) {
      t.fail({
        summary: 'After Odoo came back, the parked events did not reach it within 6 s.',
        expected: 'customers 20 and 21 in Odoo once the delay expired',
        fix: 'The delay queue sends them back to the main queue (13.2); the receiver must then write them like any other.',
      });
    }

    // 4. Someone deletes the queue; the receiver declares it again and resumes.
    await t.mgmt.deleteQueue(t.vhost, QUEUE);
    t.log(`deleted the queue "${QUEUE}" (an operator's mistake)`);
    if (!(await t.waitFor(async () => (await consumers()) > 0, 4000, 100))) {
      t.fail({
        summary: `After "${QUEUE}" was deleted, the receiver did not consume again within 4 s.`,
        why: 'When its queue is deleted, the broker cancels the consumer (the callback gets null). A receiver that ignores it sits idle forever, while the relay\'s messages come back unroutable.',
        fix: 'On a null message: assertTopology() again, then consume again.',
      });
    }
    await send([event('30', 1)]);
    if (!(await arrived(['30'], 3000))) t.fail({ summary: 'After the queue was declared again, customer 30 did not reach Odoo.' });

    // 5. A network failure between the receiver and the broker.
    t.cutConnections('a network failure between the receiver and the broker');
    if (!(await t.waitFor(async () => (await consumers()) > 0, 6000, 100))) {
      t.fail({ summary: 'After the checker cut its connection, the receiver did not come back within 6 s.', fix: "On the connection's 'close' event, connect again with a growing delay." });
    }
    await send([event('31', 1)]);
    if (!(await arrived(['31'], 3000))) t.fail({ summary: 'After reconnecting, customer 31 did not reach Odoo.' });

    // 6. The API key is revoked: stop consuming, give the event back, say so.
    await odoo.setFaults({ keysRevoked: true });
    t.log("revoked the receiver's API key in Odoo (every call now answers AccessDenied)");
    await send([event('40', 1)]);
    t.log('published customer 40');
    const gone = await t.waitFor(async () => (await consumers()) === 0, 3000, 50);
    const retried = (await count(FIRST_RETRY)) + (await count('bridge.customers.retry.2s'));
    if (!gone) {
      t.fail({
        summary: `With a revoked API key, the receiver is still consuming${retried ? ` (and sent customer 40 to a delay queue)` : ''}.`,
        expected: `no consumer on "${QUEUE}", customer 40 back in it, an error in the log`,
        saw: `${await consumers()} consumer(s); ${retried} message(s) in delay queues; ${await count(DLQ)} dead-lettered`,
        why: 'AccessDenied fails every call the same way. Retrying sends every event round the delay queues, dead-lettering fills the dead-letter queue with good events. Stop, keep the events in the queue, and tell a person.',
        fix: "On a 'fatal' OdooError: cancel the consumer, nack(msg, false, true) what you hold, log.error(…), and resolve `halted`.",
      });
    }
    const reason = await Promise.race([receiver.halted, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1500))]);
    if (!(await t.waitFor(async () => (await count(QUEUE)) === 1, 2000, 50))) {
      t.fail({ summary: `After stopping, customer 40 is not back in "${QUEUE}" (${await count(QUEUE)} ready, ${await count(DLQ)} dead-lettered).`, fix: 'nack(msg, false, true) the messages you hold, or close the channel: unacked messages return to the queue.' });
    }
    if (!reason || !log.lines.some((l) => l.level === 'error')) {
      t.fail({
        summary: `The receiver stopped, but ${!reason ? '`halted` did not resolve' : 'logged no error'}: nobody will know why events stopped flowing.`,
        fix: "log.error('STOPPED CONSUMING: Odoo refused our credentials …') and resolve `halted` with the reason.",
      });
    }
    await odoo.setFaults({ keysRevoked: false });

    // 7. stop()
    await t.call('receiver.stop()', () => receiver.stop());
    stopped = true;
    await t.expectConnectionsClosed('receiver.stop()');
  }),
);

// Check 4.2: publishOrReport() says 'routed' for a message a queue took (and that message
// is the text, persistent, through the exchange with the key), and 'returned' for one no
// binding matched (mandatory: true + the channel's 'return' event). It rejects when the
// broker refuses the message (a nack) and when the exchange does not exist, without
// declaring it, and closes its connection every time. Its 'return' listener is in place when
// it publishes, and nothing of one call's answer carries over to the next.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/02-publish-or-report.js';
import { confirmWindows, expectClosed, expectClosedAfter, expectMissingExchangeHandled, refuseNewMessages, settle, type ConfirmReport } from './support.js';

type Ctx = CheckContext<typeof Exercise>;

const EXCHANGE = 'shop';
const QUEUE = 'orders';
const BOUND = 'order.created';
const UNBOUND = 'order.refunded';
const PUBLISH = `channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, mandatory: true })`;

export default defineCheck<typeof Exercise>(async (t) => {
  const ch = await t.channel();
  await ch.assertExchange(EXCHANGE, 'direct', { durable: true });
  await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue(QUEUE, EXCHANGE, BOUND);
  await ch.close();
  t.log(`declared the exchange "${EXCHANGE}" (direct) and the queue "${QUEUE}", bound with "${BOUND}" only`);
  const tag = Math.floor(Math.random() * 9000) + 1000;

  // 1. A message that a queue takes.
  const text = `order A-${tag} ✓`;
  t.provoke([1, 3, 4], `called publishOrReport(url, "${EXCHANGE}", "${BOUND}", …): a key that "${QUEUE}" is bound with`);
  confirmWindows.reset();
  const routed = await t.call(`publishOrReport(url, "${EXCHANGE}", "${BOUND}", ${JSON.stringify(text)})`, () => t.target.publishOrReport(t.url, EXCHANGE, BOUND, text), { timeoutMs: 2500 });
  const window = confirmWindows.report();
  await expectClosed(t, 'publishOrReport()');
  expectConfirmed(t, window);
  t.observe(3, 'read amqplib\'s confirm bookkeeping: the message was confirmed before publishOrReport() resolved');
  const held = await t.takeMessages(QUEUE, 3);
  expectPublished(t, held, text);
  t.observe(1, `took the message from "${QUEUE}": the text byte for byte, persistent, through "${EXCHANGE}" with "${BOUND}"`);
  if (routed !== 'routed') {
    t.fail({
      summary: `publishOrReport() answered ${JSON.stringify(routed)} for a message the queue "${QUEUE}" took.`,
      expected: '"routed"',
      saw: JSON.stringify(routed),
      why: 'The broker returns a message only when no binding matched. This one matched, and nothing came back.',
      fix: "Answer 'returned' only when the channel emitted 'return' for the message; otherwise 'routed'.",
    });
  }
  t.observe(4, `publishOrReport() answered "routed"`);

  // 2. A message no binding matches.
  t.provoke([1, 2, 4], `called publishOrReport(url, "${EXCHANGE}", "${UNBOUND}", …): a key no binding of "${EXCHANGE}" matches`);
  confirmWindows.reset();
  const returned = await t.call(`publishOrReport(url, "${EXCHANGE}", "${UNBOUND}", …)`, () => t.target.publishOrReport(t.url, EXCHANGE, UNBOUND, `order B-${tag}`), { timeoutMs: 2500 });
  const back = confirmWindows.report();
  await expectClosed(t, 'publishOrReport()');
  if (returned !== 'returned') {
    explainMissedReturn(t, returned, back);
    t.fail({
      summary: `publishOrReport() answered ${JSON.stringify(returned)} for a message no queue could take ("${UNBOUND}" matches no binding of "${EXCHANGE}").`,
      expected: '"returned"',
      saw: JSON.stringify(returned),
      why: "Without mandatory: true the broker drops an unroutable message silently, and still acks it: the confirm alone does not tell you a queue has it. With mandatory, the broker sends the message back (basic.return) BEFORE the ack, so a 'return' listener registered before publishing has fired by the time waitForConfirms() resolves. publish()'s boolean says nothing about routing: it is about the client's write buffer.",
      fix: "Register channel.on('return', …) first, publish with { mandatory: true }, await channel.waitForConfirms(), then look at what the listener saw.",
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  const after = await t.messageCount(QUEUE);
  if (after !== 0) {
    t.fail({ summary: `The queue "${QUEUE}" now holds ${after} message(s); the unroutable one must not land anywhere.`, expected: '0 messages', saw: `${after}`, fix: `Publish exactly once per call, with the routing key you were given: ${PUBLISH}` });
  }
  t.observe([1, 2, 4], `publishOrReport() answered "returned", and "${QUEUE}" stayed empty`);
  expectListenerFirst(t, back);
  t.observe(2, `read amqplib's channel when publishOrReport() published: a 'return' listener was already in place`);

  // 3. A routable message again: the answer of the previous call must not linger.
  t.provoke(4, `called publishOrReport(url, "${EXCHANGE}", "${BOUND}", …) again, right after the call whose message came back`);
  confirmWindows.reset();
  const again = await t.call(`publishOrReport(url, "${EXCHANGE}", "${BOUND}", …) after a returned message`, () => t.target.publishOrReport(t.url, EXCHANGE, BOUND, `order D-${tag}`), { timeoutMs: 2500 });
  const third = confirmWindows.report();
  await expectClosed(t, 'publishOrReport()');
  const landed = (await t.takeMessages(QUEUE, 3)).length;
  if (again !== 'routed' && landed === 1) {
    const stale = again === 'returned' && third.seen && third.returns === 0;
    t.fail({
      summary: stale
        ? `publishOrReport() answered "returned" for a message the queue "${QUEUE}" took, right after a call whose message came back: the answer of the previous call stuck.`
        : `publishOrReport() answered ${JSON.stringify(again)} for a message the queue "${QUEUE}" took, right after a call whose message came back.`,
      expected: '"routed": nothing came back this time',
      saw: `${JSON.stringify(again)}; the message is in "${QUEUE}"${third.seen ? `, and the broker sent ${third.returns === 0 ? 'nothing' : `${third.returns} message(s)`} back during this call` : ''}`,
      why: stale
        ? 'A flag kept outside the function (a variable at module level, a field of a shared object) is still true from the last returned message: every later call reports "returned", and messages that are safely in a queue are logged as lost, or sent again.'
        : 'Each call answers for its own message only.',
      fix: "Make the flag inside the function, for this call: let returned = false; channel.on('return', () => { returned = true; }); …",
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(4, `publishOrReport() answered ${JSON.stringify(again)} for the next routable message`);

  // 4. The broker refuses the message.
  await checkRefused(t, tag);

  // 5. The exchange does not exist.
  await expectMissingExchangeHandled(t, {
    declareLine: 5,
    closeLine: 6,
    name: 'publishOrReport()',
    exchange: 'billing',
    call: () => t.target.publishOrReport(t.url, 'billing', 'invoice.created', `invoice ${tag}`),
  });
});

/** Line 1: the queue holds exactly the message, as published. */
function expectPublished(t: Ctx, held: GetMessage[], text: string): void {
  if (held.length === 0) {
    t.fail({
      summary: `The message published with "${BOUND}" did not reach the queue "${QUEUE}".`,
      expected: '1 message in the queue',
      saw: '0 messages',
      why: `"${QUEUE}" is bound to "${EXCHANGE}" with "${BOUND}": a message published there with that key lands in it, unless it is lost on the way because the connection closed before the broker confirmed it.`,
      fix: `${PUBLISH} on a confirm channel, then await channel.waitForConfirms() before closing.`,
      link: t.ui('queues', QUEUE),
    });
  }
  if (held.length > 1) {
    t.fail({ summary: `publishOrReport() was called once, but the queue "${QUEUE}" holds ${held.length} messages.`, expected: '1 message', saw: `${held.length} messages`, fix: `Publish exactly once per call: ${PUBLISH}` });
  }
  const m = held[0]!;
  if (!m.content.equals(Buffer.from(text))) {
    t.fail({
      summary: 'The message in the queue is not the text that was passed to publishOrReport().',
      expected: JSON.stringify(text),
      saw: JSON.stringify(m.content.toString()),
      why: 'A consumer gets exactly the bytes you publish: Buffer.from(text) is the text in UTF-8.',
      fix: PUBLISH,
    });
  }
  if (m.fields.exchange !== EXCHANGE || m.fields.routingKey !== BOUND) {
    t.fail({
      summary: `The message went through ${m.fields.exchange ? `"${m.fields.exchange}"` : 'the default exchange'} with the key "${m.fields.routingKey}".`,
      expected: `exchange "${EXCHANGE}", routing key "${BOUND}"`,
      saw: `exchange "${m.fields.exchange}", routing key "${m.fields.routingKey}"`,
      fix: PUBLISH,
    });
  }
  if (m.properties.deliveryMode !== 2) {
    t.fail({
      summary: 'The message was not published as persistent.',
      expected: 'deliveryMode 2 (persistent: true)',
      saw: `deliveryMode ${m.properties.deliveryMode ?? 'not set (transient)'}`,
      why: 'A transient message in a classic queue is lost when the broker restarts. Say what you mean on every message, whatever queue it lands in.',
      fix: PUBLISH,
    });
  }
}

/**
 * Lines 1 and 2: the unroutable message was not reported as returned. amqplib's channel shows
 * whether the broker sent it back at all (only with mandatory: true), and whether anybody
 * listened for 'return' when it arrived.
 */
function explainMissedReturn(t: Ctx, answer: unknown, back: ConfirmReport): void {
  if (!back.seen) return;
  const saw = `publishOrReport() answered ${JSON.stringify(answer)}`;
  if (back.returns === 0) {
    t.fail({
      summary: `publishOrReport() published without mandatory: true: the broker dropped the message no queue could take ("${UNBOUND}"), acked it, and sent nothing back.`,
      expected: `the broker hands the message back (basic.return), and publishOrReport() answers "returned"`,
      saw: `no basic.return on your channel; ${saw}`,
      why: 'An unroutable message is dropped silently, and still acked: the confirm means "dealt with", not "in a queue". Only a message published with mandatory: true comes back.',
      fix: `Publish with { persistent: true, mandatory: true }: ${PUBLISH}`,
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  if (back.returnsUnheard > 0 && back.returnListeners > 0) {
    t.fail({
      summary: `publishOrReport() registered its 'return' listener after the message had already come back.`,
      expected: `channel.on('return', …) registered before channel.publish(…)`,
      saw: `the broker sent the message back (basic.return) while your channel had no 'return' listener; one was added later; ${saw}`,
      why: 'An event is delivered to the listeners registered when it is emitted, and never replayed. The return arrives before the ack, so a listener added after waitForConfirms() can never see it.',
      fix: "Register channel.on('return', () => { returned = true; }) first, then publish, then await channel.waitForConfirms().",
    });
  }
  if (back.returnsUnheard > 0) {
    t.fail({
      summary: `The broker sent the message back (basic.return), but publishOrReport() never listened for the channel's 'return' event.`,
      expected: `a 'return' listener that sees the message come back, and the answer "returned"`,
      saw: `a basic.return nobody listened for; ${saw}`,
      why: "mandatory: true makes the broker hand an unroutable message back, and amqplib emits it as a 'return' event on the channel: that event is the only sign. publish()'s boolean says nothing about routing: it only says whether the client's write buffer has room.",
      fix: "let returned = false; channel.on('return', () => { returned = true; }); publish; await channel.waitForConfirms(); return returned ? 'returned' : 'routed';",
    });
  }
}

/**
 * Line 2: when the code published, its channel already had a 'return' listener. Added right
 * after publish() (before any await) it still catches the return, by luck of timing; anything
 * awaited in between, and the return is gone without a trace.
 */
function expectListenerFirst(t: Ctx, back: ConfirmReport): void {
  if (!back.seen || back.sentUnheard === 0) return;
  t.fail({
    summary: `publishOrReport() published before it listened for the channel's 'return' event: it added its listener after channel.publish().`,
    expected: `channel.on('return', …) registered before channel.publish(…)`,
    saw: `no 'return' listener on the channel when the message was published; one was added afterwards`,
    why: "It works here only because the return needs a round trip to the broker, and your next line runs before it. An event reaches only the listeners registered when it is emitted, and is never replayed: put anything that waits between the publish and the listener (a log write, a lookup, a second message) and the return is lost, the answer silently \"routed\".",
    fix: "Register the listener first, then publish: channel.on('return', () => { returned = true; }); channel.publish(…); await channel.waitForConfirms();",
  });
}

/** Line 3: on a confirm channel, and confirmed before the function resolved. */
function expectConfirmed(t: Ctx, window: ConfirmReport): void {
  if (!window.seen) {
    t.note("The checker could not see amqplib's confirm bookkeeping (another client library, or its internals changed): the confirm channel was not checked.");
    return;
  }
  if (window.confirmChannels === 0) {
    t.fail({
      summary: 'publishOrReport() published on a plain channel, not on a confirm channel.',
      expected: 'connection.createConfirmChannel()',
      saw: `${window.channels} channel(s) opened with createChannel()`,
      why: 'Only a confirm says the broker has dealt with the message; and the return of an unroutable message is certain to have arrived only once the ack that follows it has.',
      fix: 'const channel = await connection.createConfirmChannel(); … await channel.waitForConfirms();',
    });
  }
  if (window.unconfirmed > 0) {
    t.fail({
      summary: 'publishOrReport() resolved while its message was still waiting for its confirm.',
      expected: 'the confirm before publishOrReport() answers',
      saw: 'the connection closed before the broker answered',
      why: "Until the ack arrives, the broker may still refuse the message, and a return may still be on its way: an answer given earlier is a guess.",
      fix: 'await channel.waitForConfirms() before you answer.',
    });
  }
}

/** Lines 3 and 6: a message the broker refuses (nack) makes publishOrReport() reject, and close. */
async function checkRefused(t: Ctx, tag: number): Promise<void> {
  // Over its limit, a quorum queue refuses every new message.
  if (!(await refuseNewMessages(t, QUEUE, 'over'))) throw new Error(`the broker kept accepting messages on "${QUEUE}" despite the max-length policy; the check cannot judge`);
  const before = await t.messageCount(QUEUE);
  t.provoke([3, 6], `filled "${QUEUE}" past a policy of max-length 0 with overflow reject-publish: the broker will refuse (nack) the next message routed to it`);
  const outcome = await settle(t, `publishOrReport(url, "${EXCHANGE}", "${BOUND}", …) while "${QUEUE}" is full`, () => t.target.publishOrReport(t.url, EXCHANGE, BOUND, `order C-${tag}`), 2500);
  if ((await t.messageCount(QUEUE)) > before) {
    // Not the learner's fault: the broker did not apply the policy. Say so instead of passing.
    throw new Error(`the broker accepted the message despite the max-length policy; the check cannot judge`);
  }
  if (!outcome.rejected) {
    t.fail({
      summary: `The broker refused the message (it sent a nack: "${QUEUE}" is full), but publishOrReport() resolved with ${JSON.stringify(outcome.value)}.`,
      expected: 'publishOrReport() rejects',
      saw: `publishOrReport() resolved with ${JSON.stringify(outcome.value)}`,
      why: "A nack means the broker did not take the message: it is in no queue. 'routed' tells the caller it is safe; 'returned' tells it no queue was bound. Both are wrong, and the message is lost without a trace.",
      fix: 'await channel.waitForConfirms(), which rejects on a nack, and let the rejection reach the caller (or reject yourself when the publish callback gets an error).',
      link: t.ui('queues', QUEUE),
    });
  }
  await expectClosedAfter(t, 'publishOrReport()', 'when the broker refused the message');
  t.observe([3, 6], 'saw publishOrReport() reject on the nack and leave no connection open');
}

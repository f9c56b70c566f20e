// Check 4.2: publishOrReport() says 'routed' for a message a queue took, and 'returned'
// for one no binding matched (mandatory: true + the channel's 'return' event).
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/02-publish-or-report.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const exchange = 'shop';
  const queue = 'orders';
  const bound = 'order.created';
  const unbound = 'order.refunded';
  const ch = await t.channel();
  await ch.assertExchange(exchange, 'direct', { durable: true });
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue(queue, exchange, bound);
  await ch.close();
  t.log(`declared the exchange "${exchange}" (direct) and the queue "${queue}", bound with "${bound}" only`);

  // 1. A message that a queue takes.
  const routed = await t.call(`publishOrReport(url, "${exchange}", "${bound}", …)`, () => t.target.publishOrReport(t.url, exchange, bound, 'order A-1'), { timeoutMs: 2500 });
  await t.expectConnectionsClosed('publishOrReport()');
  const inQueue = await t.messageCount(queue);
  if (inQueue !== 1) {
    t.fail({
      summary: `The message published with "${bound}" did not reach the queue "${queue}" (${inQueue} messages there).`,
      expected: '1 message in the queue',
      saw: `${inQueue} messages`,
      fix: `Publish with channel.publish('${exchange}', routingKey, Buffer.from(text), { persistent: true, mandatory: true }) and wait for the confirm before closing.`,
      link: t.ui('queues', queue),
    });
  }
  if (routed !== 'routed') {
    t.fail({
      summary: `publishOrReport() answered ${JSON.stringify(routed)} for a message the queue "${queue}" took.`,
      expected: '"routed"',
      saw: JSON.stringify(routed),
      why: 'The broker returns a message only when no binding matched. This one matched, and nothing came back.',
      fix: "Answer 'returned' only when the channel emitted 'return' for the message; otherwise 'routed'.",
    });
  }

  // 2. A message no binding matches.
  const returned = await t.call(`publishOrReport(url, "${exchange}", "${unbound}", …)`, () => t.target.publishOrReport(t.url, exchange, unbound, 'order A-2'), { timeoutMs: 2500 });
  await t.expectConnectionsClosed('publishOrReport()');
  if (returned !== 'returned') {
    t.fail({
      summary: `publishOrReport() answered ${JSON.stringify(returned)} for a message no queue could take ("${unbound}" matches no binding of "${exchange}").`,
      expected: '"returned"',
      saw: JSON.stringify(returned),
      why: "Without mandatory: true the broker drops an unroutable message silently, and still acks it: the confirm alone does not tell you a queue has it. With mandatory, the broker sends the message back (basic.return) BEFORE the ack, so a 'return' listener registered before publishing has fired by the time waitForConfirms() resolves. publish()'s boolean says nothing about routing: it is about the client's write buffer.",
      fix: "Register channel.on('return', …) first, publish with { mandatory: true }, await channel.waitForConfirms(), then look at what the listener saw.",
      link: t.ui('exchanges', exchange),
    });
  }
  const after = await t.messageCount(queue);
  if (after !== 1) {
    t.fail({ summary: `The queue "${queue}" now holds ${after} messages; the unroutable one must not land anywhere.`, expected: '1 message', saw: `${after}`, fix: `Publish exactly once per call, with the routing key you were given.` });
  }
});

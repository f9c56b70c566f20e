// Check 5.5: the rascal consumer declares a quorum queue, consumes from it, and resumes by
// itself after the checker force-closes its connection through the management API.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/05-consumers/05-rascal.js';
import { clock, closeAsOperator } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'payments';
  const handled: string[] = [];
  const handle = async (text: string) => {
    handled.push(text);
  };
  const missing = (texts: string[]) => texts.filter((x) => !handled.includes(x));

  const consumer = await t.call(`startRascalConsumer(url, "${queue}", handle)`, () => t.target.startRascalConsumer(t.url, queue, handle), { timeoutMs: 8000 });
  const q = await t.queue(queue, {
    why: 'Rascal declares the queues of its configuration when the broker is created. rascal.withTestConfig() prefixes every queue name with a random namespace (and purges the queue, and makes it non-durable): it is meant for tests, not for a service.',
    fix: `Use rascal.withDefaultConfig(), and declare the queue under its own name: queues: { ${queue}: { options: … } }.`,
  });
  if (q.type !== 'quorum') {
    t.fail({
      summary: `The queue "${queue}" is a ${q.type ?? 'classic'} queue, not a quorum queue.`,
      expected: "options: { durable: true, arguments: { 'x-queue-type': 'quorum' } }",
      saw: `type ${q.type ?? 'classic'}, arguments ${JSON.stringify(q.arguments)}`,
      why: "Rascal's defaults declare classic queues. Quorum queues are the replicated, durable default of modern RabbitMQ.",
      fix: `queues: { ${queue}: { options: { durable: true, arguments: { 'x-queue-type': 'quorum' } } } }`,
      link: t.ui('queues', queue),
    });
  }
  if (!(await t.waitFor(async () => (await t.consumerCount(queue)) > 0, 3000, 50))) {
    t.fail({
      summary: `startRascalConsumer() returned, but there is no consumer on "${queue}".`,
      expected: '1 consumer',
      saw: '0 consumers',
      why: "Rascal starts consuming when you add a 'message' listener to the subscription.",
      fix: "const subscription = await broker.subscribe('work'); subscription.on('message', …).on('error', …)",
      link: t.ui('queues', queue),
    });
  }
  const first = ['payment-1', 'payment-2'];
  await t.publish(queue, first);
  if (!(await t.waitFor(() => missing(first).length === 0, 3000))) {
    t.fail({
      summary: `handle() got ${first.length - missing(first).length} of the ${first.length} messages published to "${queue}".`,
      expected: first.map((x) => `handle("${x}")`).join(', '),
      saw: handled.length ? handled.map((x) => `handle(${JSON.stringify(x)})`).join(', ') : 'no call',
      fix: "In subscription.on('message', (message, content, ackOrNack) => …): call handle(String(content)), and ackOrNack() when it resolves.",
      link: t.ui('queues', queue),
    });
  }

  // An operator closes the connection (management UI, "Force Close").
  const openedBefore = t.connectionsOpened();
  await closeAsOperator(t, queue);
  const closedAt = clock();
  const second = ['payment-3', 'payment-4'];
  await t.publish(queue, second);
  if (!(await t.waitFor(() => missing(second).length === 0, 5000))) {
    const reconnected = t.connectionsOpened() > openedBefore;
    const consumers = await t.consumerCount(queue);
    t.fail({
      summary: `The checker closed your connection at ${closedAt}; your consumer had not resumed 5 s later: ${
        !reconnected ? 'rascal never reconnected' : consumers === 0 ? 'rascal reconnected, but the subscription was not resumed' : `handle() still missed ${missing(second).join(', ')}`
      }.`,
      expected: `${second.join(', ')} handled after the reconnect`,
      saw: `${t.connectionsOpened() - openedBefore} new connection(s), ${consumers} consumer(s) on "${queue}"`,
      why: "Rascal reconnects the vhost (connection retry) and then resubscribes each subscription (subscription retry). With the subscription's retry set to false, the connection comes back but the consumer does not.",
      fix: "Keep rascal's defaults for retry (or set a retry with a delay): do not pass retry: false.",
      link: t.ui('queues', queue),
    });
  }
  t.log(`your consumer resumed: handled ${second.join(', ')}`);

  await t.call('stop()', () => consumer.stop(), { timeoutMs: 8000 });
  await t.expectConnectionsClosed('stop()');
  const left = await t.messageCount(queue);
  if (left > 0) {
    t.fail({
      summary: `After stop(), ${left} message(s) are back in "${queue}": they were handled but not acknowledged.`,
      expected: `"${queue}" empty`,
      saw: `${left} message(s)`,
      fix: 'Call ackOrNack() (no argument) once handle() has resolved.',
      link: t.ui('queues', queue),
    });
  }
  t.note(`Closed by an operator at ${closedAt}: rascal reconnected and resubscribed by itself.`);
});

// Check 5.5: the rascal consumer connects with the URL exactly as given (the checker's URL asks
// for a 7 s heartbeat, which the broker then reports), declares a quorum queue, hands each body
// to handle() as a string, acks it once handled and requeues it when handle() rejects, and
// resumes by itself after the checker force-closes its connection through the management API
// while a handler is still running; answering that message late must not crash the process.
// stop() shuts everything down.
import { defineCheck } from '../../runner/check/context.js';
import { connectionsSince } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/05-consumers/05-rascal.js';
import { clock, closeAsOperator, pause, ScriptedHandler } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'payments';
  const heartbeat = 7;
  const url = `${t.url}?heartbeat=${heartbeat}`;
  // payment-2 fails once; payment-3 is still being handled when the connection goes.
  const handler = new ScriptedHandler<string>(String, (key) => (key === 'payment-2' ? { kind: 'fail', times: 1 } : key === 'payment-3' ? { kind: 'hold' } : { kind: 'ok' }));
  const missing = (texts: string[]) => texts.filter((x) => !handler.finished(x));
  const show = () => handler.calls.map((x) => `handle(${typeof x === 'string' ? JSON.stringify(x) : `<${typeof x}>`})`).join(', ') || 'no call';

  t.provoke(1, `called startRascalConsumer("…/${t.vhost}?heartbeat=${heartbeat}", "${queue}", handle): the URL asks for a ${heartbeat} s heartbeat`);
  const consumer = await t.call(`startRascalConsumer(url, "${queue}", handle)`, () => t.target.startRascalConsumer(url, queue, handler.handle), { timeoutMs: 8000 });
  const q = await t.queue(queue, {
    why: 'Rascal declares the queues of its configuration when the broker is created. rascal.withTestConfig() prefixes every queue name with a random namespace (and purges the queue, and makes it non-durable): it is meant for tests, not for a service.',
    fix: `Use rascal.withDefaultConfig(), and declare the queue under its own name: queues: { ${queue}: { options: … } }.`,
  });
  if (q.type !== 'quorum' || !q.durable) {
    t.fail({
      summary: `The queue "${queue}" is a ${q.durable ? '' : 'non-durable '}${q.type ?? 'classic'} queue, not a durable quorum queue.`,
      expected: "options: { durable: true, arguments: { 'x-queue-type': 'quorum' } }",
      saw: `type ${q.type ?? 'classic'}, durable ${q.durable}, arguments ${JSON.stringify(q.arguments)}`,
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

  // Messages: handled as text, acked; a failed one requeued. No content type: rascal hands over such a body as a Buffer.
  const first = ['payment-1', 'payment-2'];
  await t.publish(queue, first, { contentType: undefined });
  t.provoke(3, 'published payment-1 and payment-2, with no content type; handle() rejects payment-2 once');
  if (!(await t.waitFor(() => missing(first).length === 0, 3000))) {
    const requeueMissing = handler.count('payment-2') === 1 && handler.finished('payment-1');
    t.fail({
      summary: requeueMissing
        ? 'handle() rejected payment-2 once, and the message was not delivered again: it was nacked without requeue, and is gone.'
        : `handle() got ${first.length - missing(first).length} of the ${first.length} messages published to "${queue}".`,
      expected: 'handle("payment-1"), handle("payment-2") twice (it fails once)',
      saw: show(),
      why: requeueMissing ? "In rascal 21, ackOrNack(err) with no recovery strategy nacks WITHOUT requeue: the message is dead-lettered, or dropped. A failed handler is a passing problem: ask for a requeue." : undefined,
      fix: requeueMissing
        ? "ackOrNack(err, { strategy: 'nack', requeue: true }) when handle() rejects."
        : "In subscription.on('message', (message, content, ackOrNack) => …): call handle(String(content)), and ackOrNack() when it resolves.",
      link: t.ui('queues', queue),
    });
  }
  const notText = handler.calls.find((c) => typeof c !== 'string');
  if (notText !== undefined) {
    t.fail({
      summary: `handle() got ${Buffer.isBuffer(notText) ? 'a Buffer' : `a ${typeof notText}`}, not the body as a string.`,
      expected: 'handle("payment-1"): a string',
      saw: show(),
      why: "Rascal hands over the content decoded by its content type: a string for text/plain, an object for application/json, and a Buffer when there is none, as for these payments. The handler works with text.",
      fix: 'handle(String(content))',
    });
  }

  // The failed payment went back as itself: a nack with requeue, not an ack and a copy.
  if (t.sent('basic.nack', 'basic.reject').every((m) => !m.requeue)) {
    const copies = t.sent('basic.publish').length;
    t.fail({
      summary: copies
        ? 'When handle() rejected payment-2, your subscription acked it and published a copy (rascal\'s republish strategy), instead of nacking it with requeue.'
        : 'When handle() rejected payment-2, your subscription did not nack it with requeue, yet it came back.',
      expected: "ackOrNack(err, { strategy: 'nack', requeue: true }): a basic.nack with requeue",
      saw: `no nack with requeue; ${copies} basic.publish from your connection`,
      why: 'A copy is a new message: it goes to the back of the queue, and the broker counts its deliveries from zero again, so a quorum queue\'s delivery limit (RabbitMQ 4.0 to 4.2, or a delivery-limit policy) can never stop a payment that fails every time; rascal\'s own count of republishes stops nothing without attempts. A nack with requeue gives the broker the same message back.',
      fix: "ackOrNack(err, { strategy: 'nack', requeue: true }) when handle() rejects.",
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, 'read the frames your connection sent: payment-2 went back with a basic.nack, requeue');

  // The operator closes the connection (management UI, "Force Close") while payment-3 is being handled.
  await t.publish(queue, ['payment-3']);
  await t.waitFor(() => handler.heldCount('payment-3') > 0, 2000);
  // The management API lists the consumer, then its connection, after a statistics tick or two.
  const connection = await t.waitFor(
    async () => {
      const name = (await t.consumersOf(queue)).find((c) => c.channel_details?.connection_name)?.channel_details.connection_name;
      return name ? (await t.mgmt.connections(t.vhost)).find((c) => c.name === name) : undefined;
    },
    8000,
    100,
  );
  if (connection && connection.timeout !== heartbeat) {
    t.fail({
      summary: `Your connection runs with a heartbeat of ${connection.timeout} s, not the ${heartbeat} s the URL asks for: rascal did not connect with the URL as it was given.`,
      expected: `heartbeat ${heartbeat} s (from ?heartbeat=${heartbeat} in the URL)`,
      saw: `${connection.timeout} s`,
      why: "Rascal builds its connection from connection.url when there is one, and from its defaults (heartbeat 10 s, localhost, guest, the vhost named after the configuration key) otherwise. The URL you are given carries the host, the user, the vhost and the options: use it whole.",
      fix: 'connection: { url } in the vhost of the configuration.',
      link: t.ui('connections'),
    });
  }
  t.observe(1, `read from the broker: "${queue}" is a durable quorum queue, and your connection runs with the heartbeat of ${connection?.timeout ?? '?'} s the URL asked for`);
  const openedBefore = t.connectionsOpened();
  t.provoke([2, 3, 4], 'closes your connection through the management API while handle("payment-3") is still running');
  await closeAsOperator(t, queue);
  const closedAt = clock();
  const second = ['payment-4'];
  await t.publish(queue, second);
  if (!(await t.waitFor(() => missing(second).length === 0 && handler.count('payment-3') >= 2, 5000))) {
    const reconnected = t.connectionsOpened() > openedBefore;
    const consumers = await t.consumerCount(queue);
    t.fail({
      summary: `The checker closed your connection at ${closedAt}; your consumer had not resumed 5 s later: ${
        !reconnected ? 'rascal never reconnected' : consumers === 0 ? 'rascal reconnected, but the subscription was not resumed' : `handle() still missed ${[...missing(second), ...(handler.count('payment-3') < 2 ? ['payment-3 (again)'] : [])].join(', ')}`
      }.`,
      expected: `${second.join(', ')} handled after the reconnect, and payment-3 delivered again`,
      saw: `${t.connectionsOpened() - openedBefore} new connection(s), ${consumers} consumer(s) on "${queue}"`,
      why: "Rascal reconnects the vhost (connection retry) and then resubscribes each subscription (subscription retry). With the subscription's retry set to false, the connection comes back but the consumer does not.",
      fix: "Keep rascal's defaults for retry (or set a retry with a delay): do not pass retry: false.",
      link: t.ui('queues', queue),
    });
  }
  t.observe([2, 4], `your process survived the close, and rascal resumed: handled ${second.join(', ')}, and got payment-3 again`);

  // The first handle("payment-3") ends now: its channel is gone.
  handler.release('payment-3');
  await pause(50);
  t.observe(4, "payment-3's late answer, on the dead channel, did not crash your process");

  // Each payment reached handle() once, plus once per failure or lost connection: the others were acked.
  const times: Record<string, number> = { 'payment-1': 1, 'payment-2': 2, 'payment-3': 2, 'payment-4': 1 };
  const wrong = Object.entries(times).filter(([x, n]) => handler.count(x) !== n);
  if (wrong.length > 0) {
    t.fail({
      summary: `Some payments reached handle() more often than they should: ${wrong.map(([x]) => `${x} ${handler.count(x)} times`).join(', ')}.`,
      expected: Object.entries(times).map(([x, n]) => `${x} ${n === 1 ? 'once' : `${n} times`}`).join(', '),
      saw: show(),
      why: 'A message that is never acked stays unacknowledged on the consumer; when the connection goes, the broker delivers it again, and the work is done twice.',
      fix: 'Call ackOrNack() (no argument) once handle() has resolved.',
      link: t.ui('queues', queue),
    });
  }
  t.observe(3, 'every payment reached handle() as a string, once, plus once after its failure or the lost connection');

  t.provoke(5, 'called stop()');
  await t.expectClosedOnReturn('stop()', connectionsSince(), () => consumer.stop(), { closer: 'broker.shutdown()', timeoutMs: 8000 });
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
  t.observe([3, 5], `after stop(), your connection is closed and "${queue}" is empty: every handled payment was acked`);
  t.note(`Closed by an operator at ${closedAt}: rascal reconnected and resubscribed by itself.`);
});

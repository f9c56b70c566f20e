// Check 3.1: "app-logs" is a durable direct exchange; publishing each severity to it lands
// in exactly the right queues ("error" in both). publishLog() goes through the exchange with
// the severity as key, persistent, byte for byte, and rejects when the broker refuses the
// message. Both functions close their connection, also when the broker refuses something.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/01-direct.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { callSetup, catchStrays, drainQueues, expectClosedAfterFailure, expectRefusedDeclarationHandled, expectRoutes, refuseNewMessages, type RouteCase, STRAYS } from './support.js';

const EXCHANGE = 'app-logs';
const PUBLISH = `channel.publish('${EXCHANGE}', severity, Buffer.from(text), { persistent: true })`;

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3, 4], 'called setupLogRouting(url) on an empty vhost');
  await callSetup(t, 'setupLogRouting(url)', () => t.target.setupLogRouting(t.url), { exchanges: [EXCHANGE], queues: ['alerts', 'archive'] });
  await t.expectConnectionsClosed('setupLogRouting()');

  await expectExchange(t, EXCHANGE, 'direct', `await channel.assertExchange('${EXCHANGE}', 'direct', { durable: true })`);
  t.observe(1, `read "${EXCHANGE}" from the management API: a durable direct exchange`);
  await expectQuorumQueue(t, 'alerts');
  await expectQuorumQueue(t, 'archive');
  t.observe(2, 'read "alerts" and "archive" from the management API: quorum queues');

  // Play the applications: one log line per severity, straight to the exchange.
  const cases: RouteCase[] = [
    { key: 'debug', expect: [], because: 'Nobody asked for debug lines: with no binding for "debug", the exchange drops them.' },
    { key: 'info', expect: ['archive'], because: '"archive" keeps info, warning and error.' },
    { key: 'warning', expect: ['archive'], because: '"archive" keeps info, warning and error.' },
    {
      key: 'error',
      expect: ['alerts', 'archive'],
      because: 'An error line belongs in both queues. When two bindings match, the exchange puts a copy in each queue: a message is not "used up" by the first one.',
    },
  ];
  await expectRoutes(
    t,
    EXCHANGE,
    cases,
    (queue) =>
      queue === 'alerts'
        ? `Bind "alerts" with the binding key of the lines it wants: channel.bindQueue('alerts', '${EXCHANGE}', 'error'). A direct exchange compares the routing key with the binding key, not with the queue's name.`
        : `Bind "archive" once per severity it keeps: for (const s of ['info', 'warning', 'error']) await channel.bindQueue('archive', '${EXCHANGE}', s).`,
    [3, 4],
  );

  await checkPublishLog(t);
  await checkRefusedMessage(t);

  await expectRefusedDeclarationHandled(t, { line: 5, label: 'setupLogRouting(url)', call: () => t.target.setupLogRouting(t.url), exchange: EXCHANGE, type: 'direct' });
});

type Ctx = CheckContext<typeof Exercise>;

/** Two lines through the learner's publisher; where they land, their bytes, order and properties. */
async function checkPublishLog(t: Ctx): Promise<void> {
  const n = Math.floor(Math.random() * 90) + 10;
  // Not ASCII on purpose: a text encoded other than as UTF-8 shows in its bytes.
  const lines = [
    { severity: 'info', text: `cache warmed on web-${n} in 120 ms ✓` },
    { severity: 'error', text: `disk full on db-${n}: 0 octets left ⚠` },
  ];
  await catchStrays(t, EXCHANGE, lines.map((l) => l.severity));
  t.provoke([6, 7, 8], `called publishLog() twice, for an "info" and an "error" line, with texts that are not plain ASCII`);
  for (const { severity, text } of lines) {
    await t.call(`publishLog(url, "${severity}", ${JSON.stringify(text)})`, () => t.target.publishLog(t.url, severity, text));
    await t.expectConnectionsClosed('publishLog()');
  }
  const held = await drainQueues(t, ['alerts', 'archive', STRAYS, ...lines.map((l) => l.severity)]);
  t.observe([6, 7], 'read "alerts" and "archive" (and the checker\'s nets for stray messages)');

  // Published the wrong way: say how, from where the message was caught.
  const viaDefault = lines.flatMap((l) => held.get(l.severity)!);
  if (viaDefault.length) {
    const m = viaDefault[0]!;
    t.fail({
      summary: `publishLog() published to the default exchange (routing key "${m.fields.routingKey}"), not to "${EXCHANGE}".`,
      expected: `exchange "${EXCHANGE}", routing key "${m.fields.routingKey}"`,
      saw: `exchange "" (the default exchange), routing key "${m.fields.routingKey}": the checker had declared a queue of that name to catch it`,
      why: `sendToQueue(q, …) publishes to the default exchange, which routes by queue name. No queue is called "${m.fields.routingKey}", so in a real system the line is dropped, and the broker still confirms it: a confirm means "taken care of", not "delivered to a queue". The bindings of "${EXCHANGE}" never see it.`,
      fix: PUBLISH,
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  const strays = held.get(STRAYS)!;
  if (strays.length) {
    const m = strays[0]!;
    t.fail({
      summary: `publishLog() published to "${EXCHANGE}" with the routing key "${m.fields.routingKey}" instead of the severity.`,
      expected: `routing keys ${lines.map((l) => `"${l.severity}"`).join(' and ')}, one per call`,
      saw: strays.map((x) => `routing key "${x.fields.routingKey}"`).join(', '),
      why: `A direct exchange delivers a message to the queues bound with exactly its routing key. With any other key no binding matches, and the line is dropped (the checker caught it with an alternate exchange).`,
      fix: `Pass the severity as the routing key: ${PUBLISH}`,
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  const alerts = held.get('alerts')!;
  const archive = held.get('archive')!;
  if (alerts.length === 0 && archive.length === 0) {
    const others = (await t.mgmt.exchanges(t.vhost)).filter((x) => x.name !== '' && !x.name.startsWith('amq.') && ![EXCHANGE, STRAYS].includes(x.name));
    t.fail({
      summary: others.length
        ? `publishLog() resolved twice, but neither line went through "${EXCHANGE}": there is another exchange, ${others.map((x) => `"${x.name}"`).join(', ')}.`
        : `publishLog() resolved twice, but neither line reached the broker: they were lost on the way.`,
      expected: `the "info" line in "archive", the "error" line in "archive" and "alerts"`,
      saw: `both queues empty, and nothing published to the default exchange or to "${EXCHANGE}"`,
      why: others.length
        ? 'A message goes where its exchange routes it. The bindings of the exercise are on the exchange "app-logs".'
        : 'publish() only writes the message to a buffer. Closing the connection before the broker has confirmed it can lose it, and nothing tells you: only a confirm (a confirm channel and waitForConfirms) says the broker has it.',
      fix: `Publish on a confirm channel and wait: ${PUBLISH}; await channel.waitForConfirms();`,
      link: t.ui('exchanges', EXCHANGE),
    });
  }
  // A line with the wrong key says more than "too many lines in alerts": name it.
  for (const m of [...alerts, ...archive]) {
    const line = lines.find((l) => m.content.equals(Buffer.from(l.text, 'utf8')));
    if (line && m.fields.routingKey !== line.severity) {
      t.fail({
        summary: `publishLog(url, "${line.severity}", …) published with the routing key "${m.fields.routingKey}", not the severity it was given.`,
        expected: `routing key "${line.severity}" for the ${line.severity} line`,
        saw: `routing key "${m.fields.routingKey}"`,
        why: 'The routing key is what the direct exchange routes by: a line published with another severity lands in the queues of that severity.',
        fix: PUBLISH,
        link: t.ui('exchanges', EXCHANGE),
      });
    }
  }
  const [info, error] = lines;
  expectLines(t, 'alerts', alerts, [error!]);
  expectLines(t, 'archive', archive, [info!, error!]);
  t.observe(6, 'compared the bodies byte for byte, the exchange, the routing keys and the delivery mode of the lines');
}

/** The queue holds exactly these lines, in this order, each as published by publishLog(). */
function expectLines(t: Ctx, queue: string, got: GetMessage[], want: { severity: string; text: string }[]): void {
  const shown = (ms: GetMessage[]) => ms.map((m) => JSON.stringify(m.content.toString('utf8'))).join(', ') || 'nothing';
  const bodiesMatch = got.length === want.length && got.every((m, i) => m.content.equals(Buffer.from(want[i]!.text, 'utf8')));
  if (!bodiesMatch) {
    const sameCount = got.length === want.length;
    const reordered = sameCount && want.every((w) => got.some((m) => m.content.equals(Buffer.from(w.text, 'utf8'))));
    const asJson = sameCount && got.every((m, i) => m.content.toString('utf8') === JSON.stringify(want[i]!.text));
    const otherEncoding = sameCount && !asJson && got.every((m, i) => m.content.toString('latin1') === want[i]!.text || m.content.toString('utf16le') === want[i]!.text);
    t.fail({
      summary: reordered
        ? `"${queue}" holds the lines in another order than publishLog() published them.`
        : asJson
          ? `publishLog() published the text JSON-encoded, in quotes, instead of the text itself.`
          : otherEncoding
            ? `publishLog() encoded the text in another encoding than UTF-8: its non-ASCII characters arrive as other bytes.`
            : `After publishLog(), "${queue}" holds ${got.length === want.length ? 'other lines' : `${got.length} line(s)`} instead of the ${want.length} published.`,
      expected: want.map((w) => JSON.stringify(w.text)).join(', '),
      saw: shown(got),
      why: asJson
        ? 'JSON.stringify of a string adds quotes (and escapes): the consumer of a log line gets "\\"disk full…\\"".'
        : otherEncoding
          ? 'A consumer decodes bytes as UTF-8 unless told otherwise; Buffer.from(text) is UTF-8.'
          : 'Each call publishes its text exactly once, as it was given: Buffer.from(text).',
      fix: PUBLISH,
      link: t.ui('queues', queue),
    });
  }
  for (const [i, m] of got.entries()) {
    if (m.fields.exchange !== EXCHANGE || m.fields.routingKey !== want[i]!.severity) {
      t.fail({
        summary: `publishLog() did not publish to "${EXCHANGE}" with the severity as routing key.`,
        expected: `exchange "${EXCHANGE}", routing key "${want[i]!.severity}"`,
        saw: `exchange "${m.fields.exchange}", routing key "${m.fields.routingKey}"`,
        fix: PUBLISH,
      });
    }
    if (m.properties.deliveryMode !== 2) {
      t.fail({
        summary: 'publishLog() did not publish the line as a persistent message.',
        expected: 'deliveryMode 2 (persistent: true)',
        saw: `deliveryMode ${m.properties.deliveryMode ?? 'not set (transient)'}`,
        why: 'A quorum queue keeps every message on disk anyway, but a classic queue drops transient messages when the broker restarts; log lines kept in an archive should say that they matter, on every publish.',
        fix: PUBLISH,
      });
    }
  }
}

/** The broker refuses the next line: publishLog() must reject, and still close its connection. */
async function checkRefusedMessage(t: Ctx): Promise<void> {
  await refuseNewMessages(t, 'alerts', [7, 8]);
  const outcome = await t.call('publishLog(url, "error", …) while "alerts" refuses new messages', async () => {
    try {
      await t.target.publishLog(t.url, 'error', 'refused: the alerts queue is full');
      return 'resolved';
    } catch {
      return 'rejected';
    }
  });
  if (outcome === 'resolved') {
    t.fail({
      summary: 'The broker refused the message (it sent a nack), but publishLog() reported success.',
      expected: 'publishLog() rejects when the broker nacks',
      saw: 'publishLog() resolved',
      why: 'publish() only writes to a socket buffer. Until the broker confirms, the message may be refused or lost, and your program has already moved on, believing the alert was sent.',
      fix: 'Publish on connection.createConfirmChannel() and await channel.waitForConfirms() before returning: it rejects when the broker nacks.',
    });
  }
  t.observe(7, 'saw publishLog() reject when the broker nacked the message');
  await expectClosedAfterFailure(t, 'publishLog()', 'the message');
  t.observe(8, 'saw no connection left open after publishLog(), confirmed or refused');
}

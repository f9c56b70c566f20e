// Check 3.1: "app-logs" is a durable direct exchange; publishing each severity to it lands
// in exactly the right queues ("error" in both). publishLog() goes through the exchange with
// the severity as key, persistent, byte for byte, and rejects when the broker refuses the
// message. Both functions close their connection, also when the broker refuses something.
import type { GetMessage } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/01-direct.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { bindingsFrom, callSetup, catchStrays, drainQueues, expectClosedAfterFailure, expectRefusedDeclarationHandled, expectRoutes, refuseNewMessages, type RouteCase, STRAYS } from './support.js';
import { ReturnWatch } from '../01-messaging-concepts/support.js';

const EXCHANGE = 'app-logs';
const PUBLISH = `channel.publish('${EXCHANGE}', severity, Buffer.from(text), { persistent: true })`;

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3, 4], 'called setupLogRouting(url) on an empty vhost');
  await callSetup(t, 'setupLogRouting(url)', () => t.target.setupLogRouting(t.url), { exchanges: [EXCHANGE], queues: ['alerts', 'archive'] });

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
  await expectNoOtherBindings(t);

  await checkPublishLog(t);
  await checkRefusedMessage(t);

  await expectRefusedDeclarationHandled(t, { line: 5, label: 'setupLogRouting(url)', call: () => t.target.setupLogRouting(t.url), exchange: EXCHANGE, type: 'direct' });
});

type Ctx = CheckContext<typeof Exercise>;

/** The severities each queue is bound for, and no other: a binding for a key no line has yet still lets such lines in. */
const WANTED: Record<string, string[]> = { alerts: ['error'], archive: ['info', 'warning', 'error'] };

async function expectNoOtherBindings(t: Ctx): Promise<void> {
  const bindings = (await bindingsFrom(t, EXCHANGE)).filter((b) => b.destination_type === 'queue');
  for (const [queue, keys] of Object.entries(WANTED)) {
    const extra = [...new Set(bindings.filter((b) => b.destination === queue && !keys.includes(b.routing_key)).map((b) => b.routing_key))];
    if (extra.length === 0) continue;
    const all = [...new Set(bindings.filter((b) => b.destination === queue).map((b) => b.routing_key))];
    t.fail({
      summary: `"${queue}" is also bound with ${extra.map((k) => `"${k}"`).join(', ')}: it receives ${extra.map((k) => `"${k}"`).join(' and ')} lines too, but it wants ${keys.map((k) => `"${k}"`).join(', ')} only.`,
      expected: `"${queue}" bound with ${keys.map((k) => `"${k}"`).join(', ')}`,
      saw: `"${queue}" bound with ${all.map((k) => `"${k}"`).join(', ')}`,
      why: `A direct exchange delivers a line to every queue bound with its routing key. Each extra binding is one more kind of line in "${queue}": ${queue === 'alerts' ? 'whoever is paged for every alert gets lines nobody asked to be woken up for' : 'the archive keeps what it was told to leave out'}. A severity nobody asked for belongs nowhere: the exchange drops it.`,
      fix: `Bind "${queue}" with exactly these keys: ${keys.map((k) => `channel.bindQueue('${queue}', '${EXCHANGE}', '${k}')`).join('; ')}. Remove the other binding${extra.length === 1 ? '' : 's'} (npm run reset 3.1).`,
      link: t.ui('queues', queue),
    });
  }
  t.observe([3, 4], `read the bindings of "${EXCHANGE}": ${Object.entries(WANTED).map(([q, k]) => `"${q}" bound with ${k.join(', ')}`).join('; ')}, nothing else`);
}

/** Two lines through the learner's publisher; where they land, their bytes, order and properties. */
async function checkPublishLog(t: Ctx): Promise<void> {
  const n = Math.floor(Math.random() * 90) + 10;
  // Not ASCII on purpose: a text encoded other than as UTF-8 shows in its bytes.
  const lines = [
    { severity: 'info', text: `cache warmed on web-${n} in 120 ms ✓` },
    { severity: 'error', text: `disk full on db-${n}: 0 octets left ⚠` },
  ];
  // A severity no queue is bound for, in capitals as some applications write it: the exchange
  // must get it as it is (keys are case-sensitive) and drop it; the checker's net catches it.
  const shouted = { severity: 'ERROR', text: `LEGACY BATCH ${n} ABORTED` };
  await catchStrays(t, EXCHANGE, [...lines, shouted].map((l) => l.severity));
  t.provoke([6, 7, 8], `called publishLog() three times: an "info" and an "error" line with texts that are not plain ASCII, then an "ERROR" line, a key no queue is bound for`);
  const watch = ReturnWatch.for(t);
  for (const { severity, text } of [...lines, shouted]) {
    await t.call(`publishLog(url, "${severity}", ${JSON.stringify(text)})`, () => watch.run(() => t.target.publishLog(t.url, severity, text)));
    await t.expectConnectionsClosed('publishLog()');
    watch.expectClosedOnReturn(t, 'publishLog()');
  }
  const held = await drainQueues(t, ['alerts', 'archive', STRAYS, ...[...lines, shouted].map((l) => l.severity)]);
  t.observe([6, 7], 'read "alerts" and "archive" (and the checker\'s nets for stray messages)');

  // Published the wrong way: say how, from where the message was caught.
  const viaDefault = [...lines, shouted].flatMap((l) => held.get(l.severity)!);
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
  // The "ERROR" line belongs there (its body is judged with the others, in the queues).
  const isShouted = (m: GetMessage) => m.fields.routingKey === shouted.severity;
  const strays = held.get(STRAYS)!.filter((m) => !isShouted(m));
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
        ? `publishLog() resolved for the "info" and the "error" line, but neither went through "${EXCHANGE}": there is another exchange, ${others.map((x) => `"${x.name}"`).join(', ')}.`
        : `publishLog() resolved for the "info" and the "error" line, but neither reached the broker: they were lost on the way.`,
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
    const line = [...lines, shouted].find((l) => m.content.equals(Buffer.from(l.text, 'utf8')));
    if (line && m.fields.routingKey !== line.severity) {
      const recased = m.fields.routingKey.toLowerCase() === line.severity.toLowerCase();
      t.fail({
        summary: recased
          ? `publishLog(url, "${line.severity}", …) published with the routing key "${m.fields.routingKey}": it changed the case of the severity it was given.`
          : `publishLog(url, "${line.severity}", …) published with the routing key "${m.fields.routingKey}", not the severity it was given.`,
        expected: `routing key "${line.severity}" for the ${line.severity} line${line === shouted ? ' (no queue is bound for it, so the exchange drops it)' : ''}`,
        saw: `routing key "${m.fields.routingKey}", so it landed in "${m.fields.routingKey === 'error' ? 'alerts" and "archive' : 'archive'}"`,
        why: recased
          ? `A direct exchange compares routing keys character for character: "${line.severity}" and "${m.fields.routingKey}" are two keys. Which keys a queue takes is decided where it is bound (bind "${line.severity}" too if you want those lines), not by a publisher that rewrites what its caller gave it.`
          : 'The routing key is what the direct exchange routes by: a line published with another severity lands in the queues of that severity.',
        fix: PUBLISH,
        link: t.ui('exchanges', EXCHANGE),
      });
    }
  }
  if (!held.get(STRAYS)!.some(isShouted)) {
    t.fail({
      summary: `publishLog(url, "${shouted.severity}", …) resolved, but no line with the routing key "${shouted.severity}" reached "${EXCHANGE}".`,
      expected: `the line published to "${EXCHANGE}" with the routing key "${shouted.severity}" (the checker catches what no binding takes)`,
      saw: 'no such message anywhere in the vhost',
      why: 'publishLog() publishes every line it is given, with its severity as it is. Which severities are kept is decided by the bindings: here none takes it, so the exchange drops it. A publisher that filters or renames severities itself makes a new severity disappear without anyone deciding so.',
      fix: PUBLISH,
      link: t.ui('exchanges', EXCHANGE),
    });
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
    const encodings: BufferEncoding[] = ['latin1', 'ascii', 'utf16le'];
    const otherEncoding = sameCount && !asJson && got.every((m, i) => encodings.some((e) => m.content.equals(Buffer.from(want[i]!.text, e)) || m.content.toString(e) === want[i]!.text));
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
  const watch = ReturnWatch.for(t);
  const outcome = await t.call('publishLog(url, "error", …) while "alerts" refuses new messages', async () => {
    try {
      await watch.run(() => t.target.publishLog(t.url, 'error', 'refused: the alerts queue is full'));
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
  watch.expectClosedOnReturn(t, 'publishLog()');
  t.observe(8, 'saw no connection left open after publishLog(), confirmed or refused');
}

// Check 2.4: a durable classic queue with persistent messages still holds them, the same bodies
// in the same order, after the checker restarts the broker. Before the restart, the checker
// makes the broker refuse messages on a second queue (room for one, then reject-publish), and
// sendDurable() must reject. Without a broker the workbook owns, the restart is skipped and
// the check judges the two settings that decide it (and says so).
import type { GetMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import { catchCrashes, expectClosed, expectConfirmsAwaited, expectNoCrash, messageOf, outcomeOf, persistence, recordConfirmWaits, showBody } from './support.js';
import type * as Exercise from '../../exercises/02-hello-world/04-survive-restart.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'audit-log';
  const texts = ['user 7 logged in', 'user 7 changed e-mail to zoë@example.com', 'user 7 paid order 31 (€12.50)'];
  const expectTexts = (messages: GetMessage[], when: string) => {
    const bodies = messages.map((m) => m.content);
    if (bodies.length === texts.length && bodies.every((b, i) => b.equals(Buffer.from(texts[i]!, 'utf8')))) return;
    t.fail({
      summary: `${when}, "${queue}" does not hold the ${texts.length} texts, once each and in order.`,
      expected: texts.map((x) => JSON.stringify(x)).join(', '),
      saw: bodies.map(showBody).join(', ') || 'no message',
      why: 'An audit log is worth its order: each text once, as UTF-8 bytes, in the order it was given.',
      fix: 'for (const text of texts) channel.sendToQueue(queue, Buffer.from(text), { persistent: true });',
      link: t.ui('queues', queue),
    });
  };

  const confirms = await recordConfirmWaits(t);
  const { crashes, restore } = catchCrashes();
  try {
    t.provoke([1, 2, 3], `called sendDurable(url, "${queue}", [${texts.length} texts]); the queue does not exist yet`);
    await t.call(`sendDurable(url, "${queue}", [${texts.length} texts])`, () => t.target.sendDurable(t.url, queue, texts));
    expectConfirmsAwaited(t, confirms.waits, 0, 'sendDurable()');
    expectNoCrash(t, crashes, 'while sending');
    await expectClosed(t, 'sendDurable()');
    const q = await t.queue(queue);
    if ((q.type ?? 'classic') !== 'classic') {
      t.fail({
        summary: `"${queue}" is a ${q.type} queue; this exercise asks for a classic queue.`,
        expected: "arguments: { 'x-queue-type': 'classic' }",
        saw: `type ${q.type}`,
        why: 'A quorum queue would pass the restart whatever you chose. The lesson is the two choices a classic queue makes you take.',
        fix: "assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } })",
      });
    }
    if (q.arguments['x-queue-type'] !== 'classic') {
      t.fail({
        summary: `"${queue}" is a classic queue only because that is this broker's default: it was declared without 'x-queue-type': 'classic'.`,
        expected: "arguments: { 'x-queue-type': 'classic' }",
        saw: `arguments ${JSON.stringify(q.arguments ?? {})}`,
        why: 'The default queue type is a setting of the broker (and, in recent versions, of each vhost): where it is quorum, the same code declares a quorum queue. Say which type you mean.',
        fix: "assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } })",
      });
    }
    const before = await t.messageCount(queue);
    if (before > 0 && before !== texts.length) expectTexts(await t.takeMessages(queue), 'Before any restart');
    if (before !== texts.length) {
      t.fail({
        summary: `Before any restart, "${queue}" holds ${before} of the ${texts.length} messages.`,
        expected: `${texts.length} messages`,
        saw: `${before}`,
        why: 'Messages published without waiting for the confirms can still be on their way when the connection closes, and are lost.',
        fix: 'Publish on a confirm channel and await channel.waitForConfirms() before closing.',
        link: t.ui('queues', queue),
      });
    }

    // Play the other side, on a second queue: room for one message, and the others refused.
    const full = `${queue}-full`;
    await t.mgmt.setPolicy(t.vhost, 'room-for-one', { pattern: `^${full}$`, definition: { 'max-length': 1, overflow: 'reject-publish' }, 'apply-to': 'queues' });
    t.provoke([3, 4], `set a policy on "${full}" (max-length 1, overflow reject-publish): the broker takes the first message and refuses the others; then called sendDurable(url, "${full}", [${texts.length} texts])`);
    const waitsBefore = confirms.waits.length;
    const refused = await outcomeOf(t, `sendDurable(url, "${full}", [${texts.length} texts])`, () => t.target.sendDurable(t.url, full, texts));
    expectNoCrash(t, crashes, 'when the broker refused messages');
    if (refused.resolved) {
      const dropped = confirms.waits.slice(waitsBefore).includes('rejected');
      t.fail({
        summary: dropped
          ? 'The broker refused two of the messages, waitForConfirms() rejected to say so, and sendDurable() still reported success: the error was caught and dropped.'
          : 'The broker refused two of the three messages (it sent nacks), but sendDurable() reported success.',
        expected: 'sendDurable() rejects when the broker nacks a message',
        saw: 'sendDurable() resolved',
        why: 'The caller believes all three entries are in the log. Two are not, and nobody will ever know.',
        fix: dropped ? 'Do not catch the error: try { … } finally { await connection.close(); } lets it reach the caller.' : 'Publish on a confirm channel and await channel.waitForConfirms() before returning.',
      });
    }
    await expectClosed(t, 'sendDurable(), after the broker refused messages,');
    t.observe(3, `sendDurable() rejected when the broker refused messages: ${messageOf(refused.error)}`);
    t.observe(4, 'the connection was closed after the success and after the refusal');

    if (await t.restartBroker()) {
      const after = await t.mgmt.queue(t.vhost, queue);
      if (!after) {
        t.fail({
          summary: `After the broker restarted, the queue "${queue}" is gone.`,
          expected: 'the queue, back after the restart',
          saw: 'no queue',
          why: 'A queue declared with durable: false lives in memory only. A restart (an upgrade, a crash) deletes it with every message inside.',
          fix: 'Declare it with { durable: true }.',
        });
      }
      t.observe(1, `"${queue}" is a classic queue, and came back after the restart: durable`);
      const left = await t.takeMessages(queue);
      if (left.length !== texts.length) {
        t.fail({
          summary: `After the broker restarted, "${queue}" came back with ${left.length} of its ${texts.length} messages.`,
          expected: `${texts.length} messages`,
          saw: `${left.length}`,
          why: 'A durable queue comes back, but only persistent messages come back inside it. Transient messages are kept in memory only.',
          fix: 'Publish with { persistent: true }.',
          link: t.ui('queues', queue),
        });
      }
      expectTexts(left, 'After the restart');
      t.observe(2, `the ${texts.length} texts came back after the restart, once each and in order: persistent`);
      return;
    }

    // No restart allowed here: judge the two settings the restart would have tested.
    if (!q.durable) {
      t.fail({ summary: `The queue "${queue}" is not durable: a restart would delete it.`, expected: 'durable: true', saw: 'durable: false', fix: 'Declare it with { durable: true }.' });
    }
    t.observe(1, `"${queue}" is a durable classic queue`);
    const messages = await t.takeMessages(queue);
    const transient = messages.find((m) => m.properties.deliveryMode !== 2);
    if (transient) {
      t.fail({ summary: 'The messages are not persistent: a restart would lose them.', expected: 'deliveryMode 2 (persistent: true)', saw: persistence(transient), fix: 'Publish with { persistent: true }.' });
    }
    expectTexts(messages, 'Without a restart');
    t.observe(2, `the ${texts.length} texts, once each and in order, persistent`);
  } finally {
    restore();
    confirms.restore();
  }
});

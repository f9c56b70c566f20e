// Check 2.4: a durable classic queue with persistent messages still holds them after
// the checker restarts the broker. Without a broker the workbook owns, the restart is
// skipped and the check judges the two settings that decide it (and says so).
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/02-hello-world/04-survive-restart.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'audit-log';
  const texts = ['user 7 logged in', 'user 7 changed e-mail', 'user 7 paid order 31'];

  await t.call(`sendDurable(url, "${queue}", [3 texts])`, () => t.target.sendDurable(t.url, queue, texts));
  await t.expectConnectionsClosed('sendDurable()');
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
  const before = await t.messageCount(queue);
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
    const left = await t.messageCount(queue);
    if (left !== texts.length) {
      t.fail({
        summary: `After the broker restarted, "${queue}" came back with ${left} of its ${texts.length} messages.`,
        expected: `${texts.length} messages`,
        saw: `${left}`,
        why: 'A durable queue comes back, but only persistent messages come back inside it. Transient messages are kept in memory only.',
        fix: 'Publish with { persistent: true }.',
        link: t.ui('queues', queue),
      });
    }
    return;
  }

  // No restart allowed here: judge the two settings the restart would have tested.
  if (!q.durable) {
    t.fail({ summary: `The queue "${queue}" is not durable: a restart would delete it.`, expected: 'durable: true', saw: 'durable: false', fix: 'Declare it with { durable: true }.' });
  }
  const messages = await t.takeMessages(queue);
  if (messages.some((m) => m.properties.deliveryMode !== 2)) {
    t.fail({ summary: 'The messages are not persistent: a restart would lose them.', expected: 'deliveryMode 2', saw: 'transient messages', fix: 'Publish with { persistent: true }.' });
  }
});

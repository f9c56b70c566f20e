// Check 2.1: send() leaves one persistent message in a durable quorum queue, closes its
// connection, and does not claim success when the broker refuses the message.
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/02-hello-world/01-send.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const queue = 'hello';
  const text = `Hello, RabbitMQ! (#${Math.floor(Math.random() * 9000) + 1000})`;

  await t.call(`send(url, "${queue}", "${text}")`, () => t.target.send(t.url, queue, text));
  await t.expectConnectionsClosed('send()');

  await expectQuorumQueue(t, queue);

  const messages = await t.takeMessages(queue);
  if (messages.length === 0) {
    t.fail({
      summary: `send() returned, but the queue "${queue}" is empty.`,
      expected: '1 message in the queue',
      saw: '0 messages',
      why: 'Two mistakes end like this. A message published before its queue exists is unroutable, and dropped silently. A message published without waiting for the confirm can still be on its way when the connection closes, and is lost.',
      fix: 'Declare the queue first (await channel.assertQueue), publish on a confirm channel, and await channel.waitForConfirms() before closing.',
      link: t.ui('queues', queue),
    });
  }
  if (messages.length > 1) {
    t.fail({
      summary: `send() was called once but the queue holds ${messages.length} messages.`,
      expected: '1 message',
      saw: `${messages.length} messages`,
      fix: 'Publish exactly once per call.',
    });
  }
  const [m] = messages;
  if (m.content.toString() !== text) {
    t.fail({ summary: 'The message body is not the text that was passed to send().', expected: JSON.stringify(text), saw: JSON.stringify(m.content.toString()), fix: 'Publish Buffer.from(text).' });
  }
  if (m.properties.deliveryMode !== 2) {
    t.fail({
      summary: 'The message was not published as persistent.',
      expected: 'deliveryMode 2 (persistent: true)',
      saw: `deliveryMode ${m.properties.deliveryMode ?? 'not set (transient)'}`,
      why: 'A transient message in a classic queue is lost when the broker restarts. Say what you mean on every message, whatever the queue type.',
      fix: 'channel.sendToQueue(queue, Buffer.from(text), { persistent: true })',
    });
  }

  // Play the other side: make the broker refuse the next message, and see whether send() notices.
  await t.publish(queue, ['already here']);
  await t.mgmt.setPolicy(t.vhost, 'refuse-new-messages', { pattern: `^${queue}$`, definition: { 'max-length': 0, overflow: 'reject-publish' } });
  t.log(`made the broker refuse new messages on "${queue}" (policy: max-length 0, overflow reject-publish)`);
  const outcome = await t.call('send() while the broker refuses messages', async () => {
    try {
      await t.target.send(t.url, queue, 'this one will be refused');
      return 'resolved';
    } catch {
      return 'rejected';
    }
  });
  if (outcome === 'resolved') {
    t.fail({
      summary: 'The broker refused the message (it sent a nack), but send() reported success.',
      expected: 'send() rejects when the broker nacks',
      saw: 'send() resolved',
      why: 'publish() only writes to a socket buffer. Until the broker confirms, the message may be refused or lost, and your program has already moved on, believing it was sent.',
      fix: 'Use connection.createConfirmChannel() and await channel.waitForConfirms() before returning.',
    });
  }
  await t.expectConnectionsClosed('send(), after the broker refused the message,');
});

// Check 1.1: declareQueue() leaves a durable quorum queue in the check's own vhost (so it
// connected to the url it was given) and closes its connection, also when the broker
// refuses the declaration, which must reach the caller.
import { randomBytes } from 'node:crypto';
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/01-messaging-concepts/01-first-queue.js';
import { recordChannelsLeftOpen, ReturnWatch } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  // A fresh name per run: if the queue lands in the shared vhost "/", it cannot be mistaken for another one.
  const name = `first-queue-${randomBytes(3).toString('hex')}`;

  t.provoke(1, `handed declareQueue() the URL of this check's own vhost "${t.vhost}"`);
  const watch = ReturnWatch.for(t);
  const channels = await recordChannelsLeftOpen(t);
  await t.call(`declareQueue(url, "${name}")`, () => watch.run(() => t.target.declareQueue(t.url, name))).finally(channels.restore);
  await t.expectConnectionsClosed('declareQueue()');
  watch.expectClosedOnReturn(t, 'declareQueue()');

  let q = await t.mgmt.queue(t.vhost, name);
  if (!q) {
    // Connected somewhere else? The usual suspect is a hard-coded amqp://localhost, which means vhost "/".
    const strayed = await t.mgmt.queue('/', name);
    if (strayed) {
      await t.mgmt.deleteQueue('/', name);
      t.log(`found "${name}" in the default vhost "/" and deleted it from there, to leave no trace`);
      t.fail({
        summary: `The queue "${name}" was created in the default vhost "/", not in the vhost of the url you were given.`,
        expected: `a queue "${name}" in vhost "${t.vhost}" (the path of the url argument)`,
        saw: `the queue in vhost "/" (the checker has deleted it)`,
        why: 'A connection belongs to exactly one virtual host: the one its URL names, or "/" when the URL has no path. Your code connected with another URL than the one it was given, so the queue ended up in another vhost, invisible to everything that uses this one.',
        fix: 'Pass the `url` argument to amqp.connect(url) instead of a hard-coded address.',
        link: `${t.broker.managementUrl.replace(/\/+$/, '')}/#/queues/%2F`,
      });
    }
    q = await t.queue(name); // fails with "there is no queue named …"
  }
  t.observe(1, `found queue "${name}" in vhost "${t.vhost}", the one the URL names`);
  t.provoke(2, `asked for a queue "${name}"`);
  await expectQuorumQueue(t, name);
  t.observe(2, `"${name}" is a durable quorum queue`);
  if (channels.left.length) {
    t.fail({
      summary: 'declareQueue() closed its connection without closing its channel first.',
      expected: 'await channel.close(), then await connection.close()',
      saw: `connection.close() while channel ${channels.left.map((c) => c.channel).join(', ')} of that connection was still open`,
      why: 'Closing a connection closes its channels too, so nothing is lost here. But a program that keeps its connection and opens a channel per task must close each one: a channel never closed stays open on the broker, with its resources, until the connection goes (and a connection takes at most 2047 channels).',
      fix: 'await channel.close() at the end of the try block, before the finally block closes the connection.',
    });
  }
  t.observe(3, 'declareQueue() closed its channel, then its connection, before it returned');

  // Make the declaration fail: a classic queue already holds the name, so the broker refuses a quorum one.
  const taken = `${name}-taken`;
  const ch = await t.channel();
  await ch.assertQueue(taken, { durable: true });
  await ch.close();
  t.provoke(3, `declared "${taken}" as a classic queue first, so that declaring it as a quorum queue fails (406 PRECONDITION_FAILED)`);
  await t.expectRefusalPassedOn(`declareQueue(url, "${taken}")`, () => watch.run(() => t.target.declareQueue(t.url, taken)), {
    what: `to declare "${taken}" (it exists as a classic queue)`,
    error: '406 PRECONDITION_FAILED',
    link: t.ui('queues', taken),
  });
  watch.expectClosedOnReturn(t, 'declareQueue()');
  t.observe(3, 'declareQueue() rejected with the broker\'s refusal, and its connection is closed');
});

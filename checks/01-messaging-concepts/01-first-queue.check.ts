// Check 1.1: declareQueue() leaves a durable quorum queue in the check's own vhost (so it
// connected to the url it was given) and closes its connection.
import { randomBytes } from 'node:crypto';
import { defineCheck } from '../../runner/check/context.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import type * as Exercise from '../../exercises/01-messaging-concepts/01-first-queue.js';

export default defineCheck<typeof Exercise>(async (t) => {
  // A fresh name per run: if the queue lands in the shared vhost "/", it cannot be mistaken for another one.
  const name = `first-queue-${randomBytes(3).toString('hex')}`;

  await t.call(`declareQueue(url, "${name}")`, () => t.target.declareQueue(t.url, name));
  await t.expectConnectionsClosed('declareQueue()');

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
  t.log(`found queue "${name}" in vhost "${t.vhost}": type ${q.type ?? 'classic'}, durable ${q.durable}`);
  await expectQuorumQueue(t, name);
});

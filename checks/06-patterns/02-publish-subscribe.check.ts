// Check 6.2: three subscribers of the learner's code on a fanout exchange. Each must get every
// event, through a queue of its own; a stopped subscriber's queue must be gone at once (exclusive),
// instead of collecting events nobody will read.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/02-publish-subscribe.js';
import { expectExchange } from '../../runner/check/topology.js';
import { publishToExchange } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const exchange = 'news';
  const SUBSCRIBERS = 3;
  const got: string[][] = Array.from({ length: SUBSCRIBERS }, () => []);
  const queuesOf: string[][] = [];
  const subs: Exercise.Subscription[] = [];
  const queueNames = async () => new Set((await t.mgmt.queues(t.vhost)).map((q) => q.name));

  for (let i = 0; i < SUBSCRIBERS; i++) {
    const before = await queueNames();
    subs.push(await t.call(`subscribe(url, "${exchange}", onEvent) for subscriber ${i + 1}`, () => t.target.subscribe(t.url, exchange, (text) => got[i]!.push(text))));
    queuesOf.push([...(await queueNames())].filter((n) => !before.has(n)));
  }

  await expectExchange(t, exchange, 'fanout', `channel.assertExchange('${exchange}', 'fanout', { durable: true })`);

  // Publish with assorted routing keys: a fanout exchange ignores them.
  const events: [string, string][] = [
    ['sports', 'goal 1-0'],
    ['', 'goal 1-1'],
    ['weather.today', 'rain at half time'],
    ['sports', 'goal 2-1'],
  ];
  const bound = async () => new Set((await t.mgmt.bindings(t.vhost)).filter((b) => b.source === exchange && b.destination_type === 'queue').map((b) => b.destination));
  const boundQueues = await bound();
  await publishToExchange(t, exchange, events);
  t.log(`published ${events.length} events to "${exchange}" (routing keys: ${events.map(([k]) => `"${k}"`).join(', ')})`);
  const copies = events.length * boundQueues.size; // what the broker stored
  const total = () => got.reduce((n, g) => n + g.length, 0);
  await t.waitFor(() => total() >= copies, 1500);

  const bodies = events.map(([, b]) => b);
  const counts = got.map((g) => g.length);
  if (counts.some((n) => n !== bodies.length)) {
    const own = new Set(queuesOf.flat());
    const tally = counts.map((n, i) => `subscriber ${i + 1} got ${n}`).join(', ');
    if (boundQueues.size === 0) {
      t.fail({
        summary: `The subscribers got nothing: no queue is bound to "${exchange}", so the exchange dropped every event.`,
        expected: `${SUBSCRIBERS} queues bound to "${exchange}", one per subscriber`,
        saw: `queues ${[...own].map((n) => `"${n}"`).join(', ') || '(none)'}, not bound`,
        why: 'An exchange only copies messages into queues bound to it. A queue nobody bound receives nothing, and an event no binding matches is dropped.',
        fix: `channel.bindQueue(queue, '${exchange}', '') after declaring the queue.`,
        link: t.ui('exchanges', exchange),
      });
    }
    if (boundQueues.size < SUBSCRIBERS || queuesOf.some((q) => q.length === 0)) {
      t.fail({
        summary: `The ${SUBSCRIBERS} subscribers share ${boundQueues.size === 1 ? 'one queue' : `${boundQueues.size} queues`}, so they take turns with the events: ${tally} of the ${bodies.length}.`,
        expected: `every subscriber gets all ${bodies.length} events, through a queue of its own`,
        saw: `queues bound to "${exchange}": ${[...boundQueues].map((n) => `"${n}"`).join(', ')}`,
        why: 'Consumers on one queue compete: each message goes to one of them (that is a work queue). Publish/subscribe needs one queue per subscriber; the exchange puts a copy in each.',
        fix: "Let every subscriber declare its own queue: channel.assertQueue('', { exclusive: true }) gives each call a fresh, server-named one.",
        link: t.ui('exchanges', exchange),
      });
    }
    const i = counts.findIndex((n) => n !== bodies.length);
    t.fail({
      summary: `Subscriber ${i + 1} got ${counts[i]} of the ${bodies.length} events (${tally}).`,
      expected: `all ${bodies.length} events for every subscriber`,
      saw: `subscriber ${i + 1}: ${got[i]!.map((b) => `"${b}"`).join(', ') || 'nothing'}; its queue: ${queuesOf[i]!.join(', ') || 'none of its own'}`,
      fix: 'Bind each subscriber queue to the exchange, and call onEvent(msg.content.toString()) for every message.',
      link: t.ui('exchanges', exchange),
    });
  }
  const wrongText = got.findIndex((g) => g.join('\n') !== bodies.join('\n'));
  if (wrongText >= 0) {
    t.fail({
      summary: `Subscriber ${wrongText + 1} got the events with other texts, or in another order.`,
      expected: bodies.join(' | '),
      saw: got[wrongText]!.join(' | '),
      fix: 'Pass msg.content.toString() to onEvent, once per message.',
    });
  }

  // A subscriber leaves: its queue must go with it.
  const leaving = queuesOf[1]!;
  await t.call('stop() on subscriber 2', () => subs[1]!.stop());
  const gone = await t.waitFor(async () => {
    const now = await queueNames();
    return leaving.every((n) => !now.has(n));
  }, 1000);
  if (!gone) {
    await publishToExchange(t, exchange, [['', 'published after subscriber 2 left']]);
    const left = (await t.mgmt.queues(t.vhost)).filter((q) => leaving.includes(q.name));
    const waiting = left[0] ? await t.messageCount(left[0].name) : 0;
    t.fail({
      summary: `After subscriber 2 stopped, its queue "${leaving[0]}" is still there, collecting events nobody will ever read (${waiting} waiting already).`,
      expected: 'the queue deleted when its subscriber goes away',
      saw: left.map((q) => `"${q.name}": durable ${q.durable}, exclusive ${q.exclusive}, auto-delete ${q.auto_delete}, type ${q.type ?? 'classic'}`).join('; '),
      why: 'A subscriber that goes away for good leaves its queue behind, bound to the exchange. It fills up with a copy of every event until someone deletes it: one more leaked queue per subscriber that ever ran.',
      fix: "Declare it exclusive: channel.assertQueue('', { exclusive: true }). The broker deletes an exclusive queue when its connection closes.",
      link: t.ui('queues', leaving[0]),
    });
  }
  t.log(`subscriber 2's queue ${leaving.map((n) => `"${n}"`).join(', ')} was deleted when it stopped`);

  await publishToExchange(t, exchange, [['', 'full time']]);
  const rest = await t.waitFor(() => got[0]!.length > bodies.length && got[2]!.length > bodies.length, 1000);
  if (!rest || got[1]!.length !== bodies.length) {
    t.fail({
      summary: 'After subscriber 2 stopped, the next event did not reach subscribers 1 and 3 (and only them).',
      expected: 'subscribers 1 and 3 get "full time", subscriber 2 does not',
      saw: got.map((g, i) => `subscriber ${i + 1}: ${g.length} events`).join(', '),
      fix: 'stop() should affect only its own subscriber: close the connection that subscribe() opened.',
    });
  }

  await t.call('stop() on subscribers 1 and 3', async () => {
    await subs[0]!.stop();
    await subs[2]!.stop();
  });
  await t.expectConnectionsClosed('stop()');
  const leftover = await t.waitFor(async () => ((await queueNames()).size === 0 ? 'none' : undefined), 1000);
  if (!leftover) {
    const names = [...(await queueNames())];
    t.fail({
      summary: `After every subscriber stopped, ${names.length} queue(s) are still there: ${names.map((n) => `"${n}"`).join(', ')}.`,
      expected: 'no queues left',
      saw: names.join(', '),
      fix: "Use exclusive queues (assertQueue('', { exclusive: true })), and close the connection in stop().",
      link: t.ui('queues'),
    });
  }
});

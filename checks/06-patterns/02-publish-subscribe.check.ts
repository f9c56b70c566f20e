// Check 6.2: three subscribers of the learner's code on a fanout exchange. Each must get every
// event, as text and in order, through a queue of its own; a stopped subscriber's queue must be
// gone at once, and so must the queues of subscribers whose connections the checker cuts:
// exclusive, server-named queues.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/06-patterns/02-publish-subscribe.js';
import { expectExchange } from '../../runner/check/topology.js';
import { connectionMark, connectionsSince, unsettled, type AmqpConnection } from '../../runner/check/frames.js';
import { cutConnectionsAndSurvive, describeValue, expectMethods, publishToExchange } from './support.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const exchange = 'news';
  const SUBSCRIBERS = 3;
  const got: string[][] = Array.from({ length: SUBSCRIBERS }, () => []);
  let notText: string | undefined;
  const queuesOf: string[][] = [];
  const subs: Exercise.Subscription[] = [];
  const connectionsOf: AmqpConnection[][] = [];
  const queueNames = async () => new Set((await t.mgmt.queues(t.vhost)).map((q) => q.name));

  t.provoke([1, 2], `started ${SUBSCRIBERS} subscribers, the first in a vhost without the exchange "${exchange}"`);
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const before = await queueNames();
    const mark = connectionMark();
    const onEvent = (text: string) => {
      if (typeof text !== 'string') notText ??= describeValue(text);
      got[i]!.push(String(text));
    };
    const sub = await t.call(`subscribe(url, "${exchange}", onEvent) for subscriber ${i + 1}`, () => t.target.subscribe(t.url, exchange, onEvent));
    expectMethods(t, 'subscribe()', sub, ['stop']);
    subs.push(sub);
    connectionsOf.push(connectionsSince(mark));
    queuesOf.push([...(await queueNames())].filter((n) => !before.has(n)));
  }

  await expectExchange(t, exchange, 'fanout', `channel.assertExchange('${exchange}', 'fanout', { durable: true })`);
  t.observe(1, `read "${exchange}" from the broker: a durable fanout exchange`);

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
  t.provoke(3, `published ${events.length} events to "${exchange}" (routing keys: ${events.map(([k]) => `"${k}"`).join(', ')})`);
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
  if (notText) {
    t.fail({
      summary: `onEvent() was called with ${notText}, not with the text of the event.`,
      expected: `onEvent("${bodies[0]}"): a string`,
      saw: `onEvent(${notText})`,
      why: 'msg.content is a Buffer: the raw bytes of the body. The subscriber expects the text; a Buffer only looks like it when printed.',
      fix: 'onEvent(msg.content.toString())',
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
  t.observe(3, `each subscriber got the ${bodies.length} events, as text, in the order they were published`);

  // How each subscriber consumes: no-ack mode, or manual acks that it actually sends.
  const pile = () => connectionsOf.map((conns) => conns.map((c) => unsettled(c, bodies.length)).find((u) => u.count > 0));
  await t.waitFor(() => pile().every((u) => !u), 300, 10);
  const neverAcked = pile().findIndex((u) => u);
  if (neverAcked >= 0) {
    const u = pile()[neverAcked]!;
    t.fail({
      summary: `Subscriber ${neverAcked + 1} consumes with manual acks (noAck: false) but did not acknowledge ${u.settled === 0 ? 'any' : `${u.count}`} of the ${bodies.length} events it got: they stay in the broker, unacknowledged, until its connection closes.`,
      expected: "consume(queue, onMessage, { noAck: true }), or channel.ack(msg) for every event",
      saw: `basic.consume of "${u.consume?.queue}" with no-ack false; ${u.settled} of ${bodies.length} deliveries acked ${300} ms after the last one arrived`,
      why: 'The broker keeps every delivered message it has no ack for, in memory, ready to deliver it again. A subscriber that never acks holds every event it ever got: a dashboard that runs for a day holds a day of events, and without a prefetch limit nothing stops the pile. On an exclusive queue a redelivery can never happen (the queue dies with the connection), so automatic acks cost nothing.',
      fix: "channel.consume(queue, onMessage, { noAck: true })",
      link: t.ui('channels'),
    });
  }
  t.observe(3, 'every subscriber consumes in no-ack mode, or acked every event it got: nothing piles up unacknowledged');

  // A subscriber leaves: its queue must go with it, and so must its connection.
  const leaving = queuesOf[1]!;
  const openBefore = t.connectionsOpen();
  t.provoke([2, 5], 'called stop() on subscriber 2');
  await t.expectClosedOnReturn('stop() on subscriber 2', connectionsOf[1]!, () => subs[1]!.stop());
  if (!(await t.waitFor(() => t.connectionsOpen() < openBefore, 500))) {
    t.fail({

      summary: "stop() left subscriber 2's connection open.",
      expected: `${openBefore - 1} connection(s) open after one of ${openBefore} subscribers stopped`,
      saw: `${t.connectionsOpen()} still open`,
      why: 'An open connection keeps a socket, a broker process and memory alive; a program whose subscribers come and go leaks one per subscriber.',
      fix: 'In stop(): await connection.close() (closing the channel alone leaves the connection open).',
      link: t.ui('connections'),
    });
  }
  const gone = await t.waitFor(async () => {
    const now = await queueNames();
    return leaving.every((n) => !now.has(n));
  }, 1000);
  if (!gone) {
    await publishToExchange(t, exchange, [['', 'published after subscriber 2 left']]);
    const left = (await t.mgmt.queues(t.vhost)).filter((q) => leaving.includes(q.name));
    const waiting = left[0] ? await t.messageCount(left[0].name).catch(() => 0) : 0;
    t.fail({
      summary: `After subscriber 2 stopped, its queue "${leaving[0]}" is still there, collecting events nobody will ever read (${waiting} waiting already).`,
      expected: 'the queue deleted when its subscriber goes away',
      saw: left.map((q) => `"${q.name}": durable ${q.durable}, exclusive ${q.exclusive}, auto-delete ${q.auto_delete}, type ${q.type ?? 'classic'}`).join('; '),
      why: 'A subscriber that goes away for good leaves its queue behind, bound to the exchange. It fills up with a copy of every event until someone deletes it: one more leaked queue per subscriber that ever ran.',
      fix: "Declare it exclusive: channel.assertQueue('', { exclusive: true }). The broker deletes an exclusive queue when its connection closes.",
      link: t.ui('queues', leaving[0]),
    });
  }
  t.observe([2, 5], `subscriber 2's connection closed, and its queue ${leaving.map((n) => `"${n}"`).join(', ')} was deleted with it`);

  await publishToExchange(t, exchange, [['', 'full time']]);
  t.provoke(3, 'published "full time" after subscriber 2 left');
  const rest = await t.waitFor(() => got[0]!.length > bodies.length && got[2]!.length > bodies.length, 1000);
  if (!rest || got[1]!.length !== bodies.length) {
    t.fail({
      summary: 'After subscriber 2 stopped, the next event did not reach subscribers 1 and 3 (and only them).',
      expected: 'subscribers 1 and 3 get "full time", subscriber 2 does not',
      saw: got.map((g, i) => `subscriber ${i + 1}: ${g.length} events`).join(', '),
      fix: 'stop() should affect only its own subscriber: close the connection that subscribe() opened.',
    });
  }
  t.observe(3, 'subscribers 1 and 3 got "full time", subscriber 2 nothing more');

  // The queues of the subscribers still running: exclusive and named by the broker.
  const staying = [...queuesOf[0]!, ...queuesOf[2]!];
  for (const name of staying) {
    const q = await t.queue(name);
    if (!q.exclusive || !name.startsWith('amq.gen-')) {
      t.fail({
        summary: !q.exclusive
          ? `The subscriber's queue "${name}" is not exclusive: it outlives a subscriber that crashes${q.auto_delete ? ' before its first consume' : ''}.`
          : `The subscriber's queue "${name}" was named by your code, not by the broker.`,
        expected: "a server-named (amq.gen-…), exclusive queue: channel.assertQueue('', { exclusive: true })",
        saw: `"${name}": exclusive ${q.exclusive}, auto-delete ${q.auto_delete}, durable ${q.durable}`,
        why: !q.exclusive
          ? 'Only an exclusive queue belongs to its connection: the broker deletes it the moment the connection goes away, however it goes, and no other connection can consume from it by mistake.'
          : 'A name of your own invention can collide with another subscriber\'s, or with a queue someone else relies on. With the empty name, the broker picks a unique one and returns it: const { queue } = await channel.assertQueue(…).',
        fix: "const { queue } = await channel.assertQueue('', { exclusive: true })",
        link: t.ui('queues', name),
      });
    }
  }
  t.observe(2, `the queues of subscribers 1 and 3 are exclusive and named by the broker: ${staying.map((n) => `"${n}"`).join(', ')}`);

  // The others crash: their queues must go too.
  await cutConnectionsAndSurvive(t, 4, 'subscribers 1 and 3 lose their network');
  t.provoke(2, 'subscribers 1 and 3 went away without stop()');
  const leftover = await t.waitFor(async () => {
    const now = await queueNames();
    return staying.every((n) => !now.has(n)) ? 'none' : undefined;
  }, 1000);
  if (!leftover) {
    const names = [...(await queueNames())];
    t.fail({
      summary: `After subscribers 1 and 3 lost their connections, ${names.length} queue(s) are still there: ${names.map((n) => `"${n}"`).join(', ')}.`,
      expected: 'no queues left',
      saw: names.join(', '),
      why: 'A subscriber that crashes never calls stop(). Only an exclusive queue is deleted by the broker when its connection dies.',
      fix: "Use exclusive queues: assertQueue('', { exclusive: true }).",
      link: t.ui('queues'),
    });
  }
  t.observe(2, 'their queues were deleted by the broker as their connections died');
});

// Check 8.3: first a consumer of a side queue, which the checker deletes under it (a null message).
// Then the consumer gets its connections from the checker's connect(), the first one on the node
// of the quorum queue's leader (L). It must consume with prefetch 10 and manual acks, requeue a failed
// message, and handle each messageId once: the checker publishes duplicates (the same messageId twice),
// and two different shipments with the same body. Then, while 20 shipments are in flight, the
// checker kills node L from inside handle("s-030"): that shipment is done but its ack can never
// arrive, and handle("s-029"), still running, resolves only once the connection is dead (its ack
// throws). The next connection connect() hands out breaks at once; the one after must consume again,
// get the unacknowledged shipments back and ack those already done without handling them twice.
// At the end every shipment was handled exactly once, the consumer is on a live node, stop() closes
// it for good, and nothing comes back to the queue (nothing was left unacknowledged).
import amqp, { type ChannelModel } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { CheckCluster } from '../../runner/check/cluster.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { closing, connectionMark, connectionsSince, sentBy } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/08-clusters/03-survive-node-kill.js';
import { breakOnFirstWrite, declareQuorumQueueOn, expectConsumeSetup, openLearnerConnections, RecordingHandler } from './support.js';

const QUEUE = 'shipments';

type Ctx = CheckContext<typeof Exercise>;

export default defineCheck<typeof Exercise>(async (t) => {
  const cluster = await CheckCluster.of(t);
  try {
    await check(t, cluster);
  } finally {
    await cluster.close();
  }
});

const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `s-${String(from + i).padStart(3, '0')}`);
const bodyOf = (id: string) => JSON.stringify({ shipment: id, parcels: Number(id.slice(2)) % 3 + 1 });

async function check(t: Ctx, cluster: CheckCluster): Promise<void> {
  // The queue, declared through node 2 so that its leader is there; the consumer starts on that node.
  const placed = await declareQuorumQueueOn(t, cluster, QUEUE, 2);
  const L = placed.leader!;
  const O = [1, 2, 3].find((n) => n !== L)!;
  t.log(`declared the quorum queue "${QUEUE}": its leader is on node ${L}`);

  // The handler: s-005 fails once, s-029 waits for the checker, s-030 kills node L.
  const handler = new RecordingHandler(['s-005']);
  const bodies = new Map<string, unknown>();
  const handle = (id: string, body: string) => {
    bodies.set(id, body);
    return handler.handle(id);
  };
  const release029 = handler.hold('s-029');
  const crash = cluster.crashWhen(L, `inside handle("s-030"), before it resolved`);
  handler.on('s-030', () => crash.fire());

  // The connect() the consumer is given: node L first; after the kill, once s-029 is released and
  // the queue has a new leader, a connection to node O that breaks at once, then a good one.
  const connects: { at: number; node: number; broken: boolean }[] = [];
  let ready: Promise<unknown> = Promise.resolve();
  let plan: () => { node: number; breakIt?: boolean } = () => ({ node: L });
  const connect = async (): Promise<ChannelModel> => {
    await ready;
    const { node, breakIt = false } = plan();
    const conn = await amqp.connect(cluster.node(node).url);
    connects.push({ at: Date.now(), node, broken: breakIt });
    if (breakIt) breakOnFirstWrite(conn);
    t.log(`your consumer called connect(): a connection to node ${node}${breakIt ? ', which the checker breaks (ECONNRESET) as soon as your code uses it' : ''}`);
    return conn;
  };

  // 0. A consumer of another queue, and that queue deleted under it: amqplib hands the callback a null.
  //    (Before any kill: with a member on a dead node, a quorum queue takes seconds to delete.)
  const side = `${QUEUE}.side`;
  const sideConsumer = await t.call(`startShippingConsumer(connect, "${side}", handle)`, () => t.target.startShippingConsumer(connect, side, handle), { timeoutMs: 8000 });
  await t.waitFor(async () => ((await cluster.counts(side).catch(() => undefined))?.consumerCount === 1 ? true : undefined), 5000, 50);
  const sentBefore = new Map(openLearnerConnections().map((c) => [c, c.sent.length] as const));
  const before = connects.length;
  const deleting = await cluster.channel(O);
  await deleting.deleteQueue(side);
  await deleting.close().catch(() => undefined);
  t.provoke(1, `started a consumer of "${side}", then deleted that queue under it: the broker cancels it, and amqplib calls your callback with null`);
  // The cancel reaches your connection a moment later, later still on a busy machine: give a throw time to show.
  const threw = () => [...sentBefore].some(([conn, n]) => conn.sent.slice(n).some((m) => m.name === 'channel.close'));
  const broken = () => threw() || openLearnerConnections().length === 0 || connects.length > before;
  await t.waitFor(broken, 3000, 20);
  if (broken()) {
    t.fail({
      summary: `When the broker cancelled your consumer (the checker deleted "${side}"), your message callback threw, and amqplib closed your ${threw() ? 'channel' : 'connection'}.`,
      expected: 'the callback returns at once on a null message',
      saw: threw() ? 'a channel.close from your connection right after the cancel' : 'your connection closed right after the cancel',
      why: 'When the broker cancels a consumer (its queue was deleted), amqplib calls the callback once more, with null. msg.properties on null throws inside amqplib, which closes the connection, and every consumer on it.',
      fix: 'Begin the callback with: if (msg === null) return;',
      link: t.ui('connections'),
    });
  }
  t.observe(1, 'your connection stayed open after the null message: the callback skipped it');
  await t.call(`stop() of the consumer of "${side}"`, () => sideConsumer.stop(), { timeoutMs: 5000 });

  // 1. The start.
  t.provoke(1, `called startShippingConsumer(connect, "${QUEUE}", handle); connect() hands out a connection to node ${L}, the queue's leader`);
  const consumer = await t.call(`startShippingConsumer(connect, "${QUEUE}", handle)`, () => t.target.startShippingConsumer(connect, QUEUE, handle), { timeoutMs: 8000 });
  await expectQuorumQueue(t, QUEUE);
  expectSetup(t, 'on its first connection');

  // 2. Shipments are handled and acked; a failure is requeued.
  const first = ids(1, 20);
  await publish(cluster, O, first.map((id) => ({ id, body: bodyOf(id) })));
  t.provoke(4, `published s-001 to s-020, each with its messageId; handle() rejects s-005 once`);
  await expectDone(t, handler, first, 'published with nothing broken', 8000);
  if (bodies.get('s-001') !== bodyOf('s-001')) {
    t.fail({
      summary: `handle("s-001", body) got ${JSON.stringify(bodies.get('s-001'))} as its body.`,
      expected: `the message's body as text: ${bodyOf('s-001')}`,
      saw: JSON.stringify(bodies.get('s-001')),
      fix: "handle(id, msg.content.toString())",
    });
  }
  t.expectRejectsNotNacks(4, 'When handle() rejected s-005');
  t.observe(4, `handle() got every shipment with its id and body; s-005 came back after it failed, and went through`);

  // 3. Duplicates, and two different shipments with the same body.
  await publish(cluster, O, [{ id: 's-041', body: bodyOf('s-041') }]);
  await expectDone(t, handler, ['s-041'], 'published after the first 20', 5000);
  const mark = sentBy(connectionsSince(), 'basic.ack').length;
  await publish(cluster, O, [
    { id: 's-003', body: bodyOf('s-003') },
    { id: 's-007', body: bodyOf('s-007') },
    { id: 's-042', body: bodyOf('s-041') },
  ]);
  t.provoke(3, 'published s-041, then s-003 and s-007 again (the same messageId: a publisher that sent them twice), and s-042, another shipment with the same body as s-041');
  await t.waitFor(() => handler.done('s-042') > 0, 3000, 20);
  const acked = await t.waitFor(() => sentBy(connectionsSince(), 'basic.ack').length - mark >= 3, 3000, 20);
  expectOnce(t, handler, [...first, 's-041', 's-042'], 'When the checker published s-003 and s-007 a second time');
  if (!acked) {
    t.fail({
      summary: `Your consumer did not ack the duplicates of s-003 and s-007: ${sentBy(connectionsSince(), 'basic.ack').length - mark} ack(s) for the 3 messages published.`,
      expected: 'a duplicate acked without calling handle(): it is done already',
      saw: `${sentBy(connectionsSince(), 'basic.ack').length - mark} basic.ack`,
      why: 'A duplicate is a message like any other for the broker: unanswered, it stays unacknowledged, holds a prefetch slot for ever, and comes back at the next reconnect.',
      fix: 'if (handled.has(id)) { channel.ack(msg); return; }',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(3, 'the duplicates of s-003 and s-007 were acked without calling handle() again; s-041 and s-042, the same body but other ids, were both handled');

  // 4. The node dies mid-stream. connect() is ready for it first: after the kill, once s-029 is
  //    released and the queue has a new leader, a connection to node O that breaks, then a good one.
  const batch = ids(21, 40);
  let released = false;
  const beforeKill = connects.length;
  plan = () => (connects.length === beforeKill ? { node: O, breakIt: true } : { node: O });
  ready = (async () => {
    await crash.crashed;
    await t.waitFor(() => released, 10_000, 10);
    await t.waitFor(async () => {
      const p = await cluster.placement(QUEUE).catch(() => undefined);
      return p?.leader && p.leader !== L ? true : undefined;
    }, 15_000, 100);
  })();
  const learnerOnL = openLearnerConnections().find((c) => cluster.nodeOf(c) === L);
  await publish(cluster, O, batch.map((id) => ({ id, body: bodyOf(id) })));
  t.provoke(2, `published s-021 to s-040; handle("s-029") waits for the checker, and handle("s-030") kills node ${L}, your consumer's node and the queue's leader, before it resolves: its ack can never arrive`);
  if (!(await t.waitFor(() => crash.fired(), 8000, 10))) {
    t.fail({
      summary: `handle("s-030") was not called within 8 s of publishing it: your consumer ${handler.count('s-029') ? 'stopped after s-029, whose handle() had not resolved yet' : 'did not get s-021 to s-040'}.`,
      expected: 'up to 10 shipments handled at the same time (prefetch 10)',
      saw: `handle() got ${handler.calls.slice(-12).map((c) => c.key).join(', ')}`,
      why: 'amqplib calls the message callback for each delivery without waiting for the previous one: with a prefetch of 10, ten handlers can run at once.',
      fix: 'Call handle() in the callback without awaiting it; answer the message in its .then().',
    });
  }
  await crash.crashed;
  await t.waitFor(() => !learnerOnL || closing(learnerOnL), 3000, 10);
  release029();
  released = true;
  t.provoke(4, 'released handle("s-029") now that its connection is dead: its ack throws');
  t.provoke(2, `the first connection connect() hands out after the kill (node ${O}) breaks as soon as your code uses it`);
  const markKill = connectionMark();
  if (!(await t.waitFor(() => batch.every((id) => handler.done(id) > 0), 20_000, 50))) {
    const after = connects.length - beforeKill;
    t.fail({
      summary:
        after === 0
          ? `Node ${L} died with your consumer's connection; 20 s later your consumer had not asked connect() for a new one.`
          : after === 1
            ? `After node ${L} died, the new connection broke before your consumer could use it, and it gave up: no other connection in 20 s.`
            : `After node ${L} died, your consumer got a new connection, but ${batch.filter((id) => handler.done(id) === 0).join(', ')} were never handled.`,
      expected: 'a new connection from connect() (another one when it breaks), consuming again: the shipments not acked come back',
      saw: `connect() called ${after} time(s) after the kill; handle() finished ${batch.filter((id) => handler.done(id) > 0).length} of the 20`,
      why:
        after === 1
          ? 'The node you reach next may be in trouble too: opening a connection can fail like anything else, and needs the same answer, another try.'
          : "amqplib's connection is to one node. When that node dies, the connection is gone for good: your code must get a new one, and make its consumer again there.",
      fix: after === 1 ? 'open().catch(() => reopen()): when opening fails, open again.' : "connection.on('close', () => { if (!stopped) reopen(); }), and in open(): channel, queue, prefetch, consume.",
    });
  }
  expectOnce(t, handler, [...first, 's-041', 's-042', ...batch], `After node ${L} died`);
  expectSetup(t, 'on its new connection', markKill);
  t.observe(2, `your consumer got a new connection after the kill (and another when that one broke), consumed again, and every shipment from s-021 to s-040 was handled`);
  t.observe(4, `handle("s-029") resolved on a dead channel: its ack threw, and your process survived`);

  // 5. On a live node, and nothing left.
  const live = await t.waitFor(async () => {
    const consumers = await cluster.mgmt().consumers(t.vhost).catch(() => []);
    const mine = consumers.filter((c) => c.queue.name === QUEUE);
    const nodes = mine.map((c) => {
      const named = cluster.nodes.find((n) => n.name === (c.channel_details as { node?: string }).node)?.index;
      const socket = openLearnerConnections().find((x) => x.socket.localPort === c.channel_details?.peer_port);
      return named ?? (socket && cluster.nodeOf(socket));
    });
    return mine.length > 0 && nodes.every((n) => n !== undefined && n !== L) ? nodes : undefined;
  }, 8000, 200);
  if (!live) throw new Error(`the management API did not list a consumer of "${QUEUE}" on a live node within 8 s`);
  t.observe(2, `the management API lists your consumer of "${QUEUE}" on node ${live.join(', ')}, a live node`);
  // 6. stop(): closed for good, and nothing left unacknowledged (it would be back in the queue now).
  t.provoke(5, 'called stop()');
  const beforeStop = connects.length;
  await t.expectClosedOnReturn('stop()', openLearnerConnections(), () => consumer.stop(), { timeoutMs: 5000 });
  await t.pause(500);
  if (connects.length > beforeStop || openLearnerConnections().length > 0) {
    t.fail({
      summary: `After stop(), your consumer ${connects.length > beforeStop ? 'asked connect() for a new connection' : 'still has a connection open'}.`,
      expected: 'its connection closed, and no new one',
      saw: `${connects.length - beforeStop} call(s) of connect() after stop(), ${openLearnerConnections().length} connection(s) open`,
      why: "A connection's 'close' also fires when you close it yourself: without a `stopped` flag, the consumer comes straight back.",
      fix: 'stop(): stopped = true; await current?.close(); and reopen only when !stopped.',
      link: t.ui('connections'),
    });
  }
  t.observe(5, 'stop() closed your connection and no new one came');
  const left = (await cluster.counts(QUEUE)).messageCount;
  if (left > 0) {
    t.fail({
      summary: `Every shipment was handled, but after stop() ${left} message(s) are back in "${QUEUE}": your consumer had left them unacknowledged.`,
      expected: 'every delivery answered: acked (handled now, or done before), or rejected',
      saw: `${left} message(s) ready again once the consumer was gone`,
      why: 'A message never answered stays with the consumer until its channel closes, then comes back: the duplicate you skipped without an ack is delivered again, for ever.',
      fix: 'Ack a duplicate too: if (handled.has(id)) { channel.ack(msg); return; }',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(3, `every delivery was answered: once the consumer stopped, "${QUEUE}" was empty`);

  const again = handler.calls.filter((c) => c.key !== 's-005');
  t.note(`Node ${L} died mid-stream; your consumer moved to node ${O} and handled each of ${new Set(again.map((c) => c.key)).size} shipments exactly once (s-005 twice: its first try failed), skipping the duplicates and the redeliveries.`);
}

/** Each consume since `mark`: prefetch 10, manual acks, after declaring the queue. */
function expectSetup(t: Ctx, where: string, mark = 0): void {
  expectConsumeSetup(t, connectionsSince(mark), {
    queue: QUEUE,
    where,
    line: 1,
    why: 'A new connection starts empty. Without manual acks the broker forgets a message as soon as it is sent: if the node dies then, it is lost. Without a prefetch, the whole backlog lands at once.',
    fix: 'In open(), every time: assertQueue, prefetch(10), consume(queue, onMessage, { noAck: false }).',
  });
}

async function expectDone(t: Ctx, handler: RecordingHandler, keys: string[], what: string, ms: number): Promise<void> {
  if (await t.waitFor(() => keys.every((k) => handler.done(k) > 0), ms, 20)) return;
  const missing = keys.filter((k) => handler.done(k) === 0);
  const skipped = missing.filter((k) => handler.count(k) > 0);
  t.fail({
    summary: skipped.length
      ? `${skipped.join(', ')} failed once in handle(), and ${skipped.length === 1 ? 'was' : 'were'} never handled again: your consumer remembered ${skipped.length === 1 ? 'it' : 'them'} as done.`
      : `handle() never finished ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? '…' : ''}, ${what}, within ${ms / 1000} s.`,
    expected: skipped.length ? 'a failed shipment requeued, and handled when it comes back' : `handle() for each of ${keys.length} shipments`,
    saw: `handle() got ${handler.calls.slice(-10).map((c) => `${c.key}${c.ok ? '' : ' (failed)'}`).join(', ') || 'nothing'}`,
    why: skipped.length
      ? 'An id goes among the handled ones only once handle() has resolved. Remembered before, a failure makes the message look done: it is acked when it comes back, and never handled.'
      : 'The consumer is there to get every message through.',
    fix: skipped.length ? 'handle(id, body).then(() => { handled.add(id); channel.ack(msg); }, () => channel.reject(msg, true))' : 'Consume with { noAck: false } and call handle(id, msg.content.toString()) for each message.',
    link: t.ui('queues', QUEUE),
  });
}

/** Each id's handle() resolved exactly once. */
function expectOnce(t: Ctx, handler: RecordingHandler, keys: string[], when: string): void {
  const twice = keys.filter((k) => handler.done(k) > 1);
  const byBody = keys.filter((k) => handler.done(k) === 0);
  if (twice.length) {
    t.fail({
      summary: `${when}, your consumer handled ${twice.slice(0, 5).join(', ')} twice.`,
      expected: 'handle() once per messageId, however many times the message is delivered',
      saw: twice.map((k) => `handle("${k}") resolved ${handler.done(k)} times`).join(', '),
      why: 'A message comes again when its publisher sent it twice (exercise 8.2) or when its ack was lost with a node. A shipment handled twice is two parcels sent, two payments taken: the consumer must know what it has done, by id.',
      fix: 'Keep the ids whose handle() resolved in a Set; when one comes again, ack it without calling handle().',
    });
  }
  if (byBody.length) {
    t.fail({
      summary: `${when}, ${byBody.join(', ')} never reached handle(): your consumer took ${byBody.length === 1 ? 'it' : 'them'} for a duplicate.`,
      expected: 'a message is a duplicate when its messageId was handled, whatever its body',
      saw: `handle() never got ${byBody.join(', ')}`,
      why: 'Two shipments can carry the same content (the same parcel, sent twice on purpose). Only the id says whether a message is one you have done.',
      fix: 'Remember msg.properties.messageId, not the body or the delivery tag.',
    });
  }
}

/** Publishes shipments with their messageId through the checker's confirm channel on node `node`. */
async function publish(cluster: CheckCluster, node: number, messages: { id: string; body: string }[]): Promise<void> {
  const ch = await cluster.confirmChannel(node);
  try {
    for (const m of messages) ch.sendToQueue(QUEUE, Buffer.from(m.body), { persistent: true, messageId: m.id, contentType: 'application/json' });
    await ch.waitForConfirms();
  } finally {
    await ch.close().catch(() => undefined);
  }
}

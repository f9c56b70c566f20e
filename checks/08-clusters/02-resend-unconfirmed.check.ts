// Check 8.2: the publisher gets its connections from the checker's connect(), which chooses the node.
// The quorum queue "payments" has its leader on one node (L); the publisher starts on a follower (F).
// The checker publishes 2,100 messages with ids through publish(), in five rounds, and breaks
// something in four of them:
//   A. 400 messages, nothing broken: each publish() resolves once confirmed;
//   B. a length limit makes the broker refuse 100 messages (nacks); they must be sent again until the
//      checker makes room;
//   C. node F hangs (SIGSTOP) while 500 messages are in flight: after confirmTimeoutMs the publisher
//      must leave it, get a new connection (node L) and send them again;
//   D. node L, the queue's leader, is killed the moment 1,000 messages start to go to it, and the next
//      connection breaks before it is ready: they must be sent again, in order, on the one after;
//   E. 100 messages, and close() at once: it must wait for their confirms.
// Then the checker reads the queue: of the messages whose publish() resolved, none may be missing
// (0 lost). Duplicates are counted and shown: sending again what may have arrived makes them, and
// they are the price of losing nothing.
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import { CheckCluster } from '../../runner/check/cluster.js';
import { expectQuorumQueue } from '../../runner/check/topology.js';
import { connectionsSince, onSent, sentBy } from '../../runner/check/frames.js';
import type * as Exercise from '../../exercises/08-clusters/02-resend-unconfirmed.js';
import { breakOnFirstWrite, declareQuorumQueueOn, openLearnerConnections } from './support.js';

const QUEUE = 'payments';
const TIMEOUT_MS = 3000;
const LIMIT = 300;

type Ctx = CheckContext<typeof Exercise>;
type State = { body: string; state: 'pending' | 'resolved' | 'rejected'; at?: number; error?: string };

export default defineCheck<typeof Exercise>(async (t) => {
  const cluster = await CheckCluster.of(t);
  try {
    await check(t, cluster);
  } finally {
    cluster.thawAll();
    await cluster.mgmt().deletePolicy(t.vhost, 'length-limit').catch(() => undefined);
    await cluster.close();
  }
});

async function check(t: Ctx, cluster: CheckCluster): Promise<void> {
  // The queue, declared through node 2 so that its leader is there; the publisher starts on a follower.
  const placed = await declareQuorumQueueOn(t, cluster, QUEUE, 2);
  const L = placed.leader!;
  const F = [2, 3, 1].find((n) => n !== L && n !== 1) ?? [1, 2, 3].find((n) => n !== L)!;
  const O = [1, 2, 3].find((n) => n !== L && n !== F)!;
  t.log(`declared the quorum queue "${QUEUE}": its leader is on node ${L}, its followers on nodes ${F} and ${O}`);

  // The connect() the publisher is given: the checker decides which node each call goes to.
  const connects: { at: number; node: number; broken: boolean }[] = [];
  let plan: () => { node: number; breakIt?: boolean } = () => ({ node: F });
  let ready: Promise<unknown> = Promise.resolve(); // after a kill: the queue has a new leader
  const calls: number[] = []; // when connect() was called
  const connect = async (): Promise<ChannelModel> => {
    calls.push(Date.now());
    await ready;
    const { node, breakIt = false } = plan();
    const conn = await amqp.connect(cluster.node(node).url);
    connects.push({ at: Date.now(), node, broken: breakIt });
    if (breakIt) breakOnFirstWrite(conn);
    t.log(`your publisher called connect(): a connection to node ${node}${breakIt ? ', which the checker breaks (ECONNRESET) as soon as your code uses it' : ''}`);
    return conn;
  };

  const messages = new Map<string, State>();
  const publisher = await startPublisher(t, connect);
  const track = (prefix: string, count: number) => {
    const ids = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);
    for (const id of ids) {
      const entry: State = { body: JSON.stringify({ id, amount: ids.indexOf(id) + 1 }), state: 'pending' };
      messages.set(id, entry);
      Promise.resolve()
        .then(() => publisher.publish(id, entry.body))
        .then(
          () => Object.assign(entry, { state: 'resolved', at: Date.now() }),
          (err: unknown) => Object.assign(entry, { state: 'rejected', at: Date.now(), error: err instanceof Error ? err.message : String(err) }),
        );
    }
    return ids;
  };
  const states = (ids: string[]) => ids.map((id) => messages.get(id)!);
  const allResolved = (ids: string[]) => states(ids).every((m) => m.state === 'resolved');
  const summary = (ids: string[]) => {
    const s = states(ids);
    const n = (k: State['state']) => s.filter((m) => m.state === k).length;
    const firstError = s.find((m) => m.error)?.error;
    return `${n('resolved')} resolved, ${n('rejected')} rejected${firstError ? ` (${firstError})` : ''}, ${n('pending')} still pending`;
  };
  const publishes = () => sentBy(connectionsSince(), 'basic.publish').length;
  const seen: { id?: string; persistent: boolean; body: string }[] = [];

  // 1. The start: a confirm channel, and the quorum queue.
  const first = connectionsSince()[0];
  if (!first?.sent.some((m) => m.name === 'confirm.select')) {
    t.fail({
      summary: 'Your publisher\'s channel is not in confirm mode: the broker will never tell it which messages it has.',
      expected: 'connection.createConfirmChannel() (confirm.select)',
      saw: `the methods your connection sent: ${[...new Set((first?.sent ?? []).map((m) => m.name))].join(', ') || 'none'}`,
      why: 'Without confirms, a message written to the socket is a message you hope arrived. When a node dies, you cannot tell which ones it had taken: some are lost, and nothing says which.',
      fix: 'const channel = await connection.createConfirmChannel(); and sendToQueue(queue, body, options, (err) => …): the callback is the confirm.',
    });
  }
  await expectQuorumQueue(t, QUEUE);
  t.observe(1, `your publisher connected to node ${F} through connect(), opened a confirm channel and declared "${QUEUE}" as a quorum queue`);

  // A. Nothing broken.
  const a = track('a', 400);
  t.provoke(2, 'called publish(id, body) for 400 payments, a-0000 to a-0399, without waiting in between');
  if (!(await t.waitFor(() => allResolved(a), 10_000, 20))) {
    t.fail({
      summary: `Of 400 payments published with nothing broken, ${summary(a)} after 10 s.`,
      expected: 'every publish() resolved once the broker confirmed its message',
      saw: summary(a),
      why: 'publish() resolving is your caller\'s proof that the broker has the message: it must come, and come only from the confirm.',
      fix: 'Resolve the promise publish() returned in the sendToQueue callback, when it is called without an error.',
    });
  }
  const held = (await cluster.counts(QUEUE)).messageCount;
  if (held < 400) {
    t.fail({
      summary: `Every publish() resolved, but "${QUEUE}" holds ${held} message(s), not 400.`,
      expected: '400 messages in the queue',
      saw: `${held}`,
      why: 'publish() resolved before the broker had the message: its promise must wait for the confirm.',
      fix: 'Resolve in the callback of sendToQueue on the confirm channel, not right after sending.',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(2, `every publish() of round A resolved, and "${QUEUE}" holds ${held} messages`);

  // B. The broker refuses (nacks).
  await cluster.mgmt().setPolicy(t.vhost, 'length-limit', { pattern: `^${QUEUE}$`, definition: { 'max-length': LIMIT, overflow: 'reject-publish' } });
  const refusing = await t.waitFor(async () => await probeRefused(cluster, O), 5000, 100);
  if (!refusing) t.skip('the length-limit policy did not take effect within 5 s; run the check again');
  t.provoke(3, `set a length limit of ${LIMIT} on "${QUEUE}" (a policy: max-length, overflow reject-publish): it holds ${held}, so the broker refuses every new message with a nack`);
  const heldBeforeB = (await cluster.counts(QUEUE)).messageCount;
  const before = publishes();
  const b = track('b', 100);
  await t.waitFor(() => publishes() - before >= 200 || states(b).some((m) => m.state === 'rejected') || states(b).filter((m) => m.state === 'resolved').length > 10, 4000, 20);
  const early = states(b).filter((m) => m.state !== 'pending');
  // A quorum queue tells each publishing channel it is full a moment after the fact: a message sent
  // meanwhile goes in, and is rightly confirmed. Only more resolved publish() calls than messages the
  // queue took are nacks taken for confirms.
  const resolvedEarly = early.filter((m) => m.state === 'resolved').length;
  const tookIn = (await cluster.counts(QUEUE)).messageCount - heldBeforeB;
  if (resolvedEarly > tookIn) {
    t.fail({
      summary: `publish() resolved for ${resolvedEarly} of the 100 payments the broker refused (the queue took ${tookIn}): your publisher took a nack for a confirm.`,
      expected: 'publish() pending while the broker refuses, resolved once it takes the message',
      saw: summary(b),
      why: 'The sendToQueue callback is called for both answers: with null when the broker took the message, with an error when it refused it (a nack). A refused message is not in the queue; resolving says it is, and it is lost.',
      fix: 'In the callback: if (err) { send it again 100 ms later; return; } and resolve only when err is null.',
    });
  }
  const rejected = early.filter((m) => m.state === 'rejected');
  if (rejected.length > 0) {
    t.fail({
      summary: `publish() rejected when the broker refused the message: "${rejected[0]!.error}".`,
      expected: 'the message kept, sent again 100 ms later, and publish() resolved once the broker takes it',
      saw: summary(b),
      why: 'A nack says "not now" (the queue is full, the leader is moving). The publisher\'s job is to get the message in: keep it, and try again.',
      fix: 'In the callback: if (err) { setTimeout(() => send(id), 100); return; }',
    });
  }
  const resent = publishes() - before;
  if (resent < 200) {
    t.fail({
      summary: `The broker refused the 100 payments of round B; your publisher sent ${resent - 100} of them again in 4 s.`,
      expected: 'each refused message sent again 100 ms after its nack, until the broker takes it',
      saw: `${resent} basic.publish for 100 messages; ${summary(b)}`,
      why: 'A refused message is still yours: nobody else will send it. Dropped, it is lost; kept but never sent again, publish() never resolves.',
      fix: 'In the sendToQueue callback: if (err) setTimeout(() => send(id), 100).',
    });
  }
  const drained = await take(cluster, O, LIMIT);
  seen.push(...drained);
  t.log(`took ${drained.length} messages off "${QUEUE}": it has room again`);
  if (!(await t.waitFor(() => allResolved(b), 5000, 20))) {
    t.fail({
      summary: `Once "${QUEUE}" had room again, the payments the broker had refused did not all go in: ${summary(b)} after 5 s.`,
      expected: 'every refused message sent again until the broker took it, and its publish() resolved',
      saw: summary(b),
      fix: 'Send a nacked message again 100 ms later, every time it is nacked.',
    });
  }
  t.observe(3, `your publisher sent the 100 refused payments ${resent} times in all, and each publish() resolved once the broker had room`);
  await cluster.mgmt().deletePolicy(t.vhost, 'length-limit');
  if (connects.length > 1) {
    t.fail({
      summary: `Your publisher asked connect() for ${connects.length - 1} new connection(s) although nothing was broken: its confirm time-out fires too early.`,
      expected: `one connection, as long as confirms come within confirmTimeoutMs (${TIMEOUT_MS} ms)`,
      saw: `connect() called at ${connects.map((c) => clock(c.at)).join(', ')}`,
      why: 'confirmTimeoutMs is in milliseconds. A publisher that leaves a healthy connection sends everything again for nothing, and makes duplicates.',
      fix: 'Leave the connection only when a message has waited longer than options.confirmTimeoutMs for its confirm.',
    });
  }

  // C. The node hangs.
  plan = () => ({ node: L });
  const markC = connects.length;
  cluster.freeze(F, 'the node your publisher is connected to');
  const frozenAt = Date.now();
  const c = track('c', 500);
  t.provoke(4, `node ${F} hangs (its Erlang VM stopped): called publish() for 500 payments, which go to it and get no confirm`);
  const moved = await t.waitFor(() => connects[markC], TIMEOUT_MS + 5000, 20);
  if (!moved) {
    const closing = connectionsSince().find((x) => cluster.nodeOf(x) === F)?.sent.some((m) => m.name === 'connection.close');
    cluster.thaw(F, 'the check gives up waiting');
    t.fail({
      summary: closing
        ? `Your publisher asked node ${F}, which hangs, to close the connection, and waited for its answer: it never asked connect() for a new one.`
        : `Node ${F} hung; ${((TIMEOUT_MS + 5000) / 1000).toFixed(1)} s later your publisher still waited for its confirms: it did not give up on the node that hung.`,
      expected: `a new connection from connect() about ${TIMEOUT_MS} ms (confirmTimeoutMs) after the first unconfirmed message, and the 500 sent again on it`,
      saw: `${summary(c)}; connect() was not called again`,
      why: closing
        ? 'A node that hangs answers nothing, not even a close. await connection.close() waits for that answer, for ever (or until a heartbeat gives up, a minute later).'
        : 'A node that hangs (a stuck disk, a VM paused) keeps its TCP connections open and silent: no error, no close event, just no confirms. Only a time-out tells you.',
      fix: closing
        ? 'Call connection.close().catch(() => {}) without await, and get the new connection at once.'
        : 'Watch the unconfirmed messages (a timer, every 100 ms): when one has waited longer than confirmTimeoutMs, leave the connection and send them all again on a new one.',
    });
  }
  const silentFor = moved.at - frozenAt;
  if (!(await t.waitFor(() => allResolved(c), 8000, 20))) {
    cluster.thaw(F, 'the check gives up waiting');
    t.fail({
      summary: `After node ${F} hung, your publisher got a connection to node ${moved.node}, but ${summary(c)} 8 s later.`,
      expected: 'every unconfirmed message sent again on the new connection, and confirmed there',
      saw: summary(c),
      why: 'The messages sent to the node that hung may never arrive: only sending them again on the new connection gets them confirmed.',
      fix: 'Once the new connection is ready, send every message still unconfirmed, oldest first.',
    });
  }
  cluster.thaw(F, `all of round C confirmed through node ${moved.node}`);
  t.observe(4, `${silentFor} ms after node ${F} hung, your publisher got a connection to node ${moved.node} and sent round C again: every publish() resolved`);
  // Node F catches up before the leader dies: a majority must be left.
  if (!(await t.waitFor(async () => ((await cluster.placement(QUEUE))?.online.length === 3 ? true : undefined), 15_000, 200))) {
    throw new Error(`node ${F} did not come back among the queue's online members within 15 s`);
  }

  // D. The leader's node dies while the publisher sends to it.
  const markD = connects.length;
  plan = () => (connects.length === markD ? { node: O, breakIt: true } : { node: O });
  const crash = cluster.crashWhen(L, `your publisher wrote its first payment of round D to node ${L}, the queue's leader`);
  // A channel of the checker's on node O, used before the kill: it follows the queue to its new leader.
  const probe = await cluster.confirmChannel(O);
  await probeOn(probe);
  async function crashWhenReady(): Promise<unknown> {
    await crash.crashed;
    const refusedOrLate = () => Promise.race([probeOn(probe), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 3000))]);
    return t.waitFor(async () => !(await refusedOrLate()), 15_000, 100);
  }
  // connect() hands out a connection once the queue takes messages again (a new leader is elected):
  // a node that is up, and serving.
  ready = crashWhenReady();
  const stopWatching = onSent((conn, m) => {
    if (m.name === 'basic.publish' && cluster.nodeOf(conn) === L) crash.fire();
  });
  // Counted before the kill: the lost connection may be noticed before the check sees that the kill was fired.
  const callsBefore = calls.length;
  const d = track('d', 1000);
  t.provoke(5, `called publish() for 1,000 payments: the checker kills node ${L}, the queue's leader and your connection's node, as soon as the first is written to it`);
  const crashed = await t.waitFor(() => crash.fired(), 3000, 5);
  stopWatching();
  if (!crashed) throw new Error(`your publisher did not publish on node ${L} within 3 s`);
  const crashedAt = Date.now();
  await crash.crashed;
  // The lost connection is noticed at once ('close'), not after the confirm time-out.
  const noticed = await t.waitFor(() => calls[callsBefore], 1500, 10);
  if (!noticed) {
    const later = await t.waitFor(() => calls[callsBefore], TIMEOUT_MS + 3000, 20);
    t.fail({
      summary: later
        ? `Node ${L} died with your publisher's connection, and your publisher asked connect() for a new one only ${later - crashedAt} ms later: it waited for its confirm time-out instead of noticing the lost connection.`
        : `Node ${L} died with your publisher's connection; ${((TIMEOUT_MS + 4500) / 1000).toFixed(1)} s later it had not asked connect() for a new one.`,
      expected: "a new connection at once: the connection's 'close' event comes as soon as the node is gone",
      saw: later ? `connect() called ${later - crashedAt} ms after the kill` : 'no call of connect()',
      why: 'A dead node closes its sockets: your connection emits \'error\' and \'close\' within milliseconds. Waiting for the confirm time-out on top costs seconds of stalled publishing, at every failover.',
      fix: "connection.on('close', () => { if (link === opened) replace('connection lost'); })",
    });
  }
  t.provoke(5, `the next connection connect() handed out (node ${O}) breaks as soon as your code uses it`);
  if (!(await t.waitFor(() => allResolved(d), 20_000, 50))) {
    const after = connects.slice(markD);
    t.fail({
      summary:
        after.length === 0
          ? `Node ${L} died with your publisher's connection; 20 s later it had not asked connect() for a new one: ${summary(d)}.`
          : after.length === 1
            ? `After node ${L} died, the new connection broke before it was ready, and your publisher gave up: ${summary(d)} 20 s later.`
            : `After node ${L} died, your publisher got a new connection, but the messages in flight were never sent again: ${summary(d)} 20 s later.`,
      expected: 'a new connection from connect() (another one when that one breaks), and every unconfirmed message sent again on it',
      saw: `connect() called ${after.length} time(s) after the kill; ${summary(d)}`,
      why:
        after.length === 1
          ? 'A failover rarely goes in one step: the node you reach next may be restarting too. Opening the new connection can fail like any other, and needs the same answer.'
          : 'When a connection is lost, every message sent on it and not yet confirmed may or may not have reached the queue: nobody knows. The only safe answer is to send them all again.',
      fix:
        after.length === 1
          ? 'open().catch(() => replace()): when opening fails, leave it and open another.'
          : "On the connection's 'close' (when you did not close it): get a new connection, and send every unconfirmed message again, oldest first.",
    });
  }
  t.observe(5, `your publisher left node ${L}, got past the broken connection, and every publish() of round D resolved through node ${O}; your process survived the resets`);

  // E. close() while confirms are on their way.
  const e = track('e', 100);
  await Promise.resolve(); // the publish() calls start first
  t.provoke(6, 'called publish() for 100 payments, then close() at once, without waiting for their confirms');
  const mine = connectionsSince().filter((x) => !x.socket.destroyed);
  const callsAtClose = calls.length;
  let atClose = '';
  await t.expectClosedOnReturn('close()', mine, async () => {
    await publisher.close();
    atClose = summary(e);
  }, { timeoutMs: 10_000 });
  if (!atClose.startsWith('100 resolved')) {
    t.fail({
      summary: `close() returned before the broker had confirmed the last payments: ${atClose} at that moment.`,
      expected: 'close() waits for every confirm, then closes',
      saw: atClose,
      why: 'A service that stops (a deploy) closes its publisher with messages still in flight. Closed too early, those are lost without a word.',
      fix: 'close(): await the promises of every unconfirmed message, then close the connection.',
    });
  }
  await t.pause(500);
  if (calls.length > callsAtClose) {
    t.fail({
      summary: 'After close(), your publisher asked connect() for a new connection: it took the close it made itself for a lost connection.',
      expected: 'no new connection after close()',
      saw: `connect() called ${calls.length - callsAtClose} time(s) after close()`,
      why: "A connection's 'close' event also fires when you close it yourself. A publisher that reconnects then never stops, and keeps the process alive.",
      fix: "Forget the link before closing it (link = undefined), and reconnect in 'close' only when the connection is still the current link.",
    });
  }
  if (!(await t.waitFor(() => openLearnerConnections().length === 0, 2000, 20))) {
    t.fail({
      summary: `After close(), your publisher still has ${openLearnerConnections().length} connection(s) open.`,
      expected: 'no connection left open',
      saw: `open connection(s) to ${openLearnerConnections().map((x) => `node ${cluster.nodeOf(x)}`).join(', ')}`,
      fix: 'close(): await connection.close() on the current connection.',
      link: t.ui('connections'),
    });
  }
  t.observe(6, 'close() resolved once all 100 were confirmed, and your connections are closed');

  // The queue, read after the election: nothing confirmed may be missing.
  seen.push(...(await take(cluster, O, 100_000)));
  judgeQueue(t, messages, seen, d);
}

/** Starts the learner's publisher; its first connection must work. */
async function startPublisher(t: Ctx, connect: () => Promise<ChannelModel>) {
  t.provoke(1, `called startPublisher(connect, "${QUEUE}", { confirmTimeoutMs: ${TIMEOUT_MS} }); connect() hands out a connection to a follower of the queue`);
  return t.call(`startPublisher(connect, "${QUEUE}", { confirmTimeoutMs: ${TIMEOUT_MS} })`, () => t.target.startPublisher(connect, QUEUE, { confirmTimeoutMs: TIMEOUT_MS }), { timeoutMs: 8000 });
}

/** Publishes one probe through node `node`: true when the broker refuses it (a nack). */
async function probeRefused(cluster: CheckCluster, node: number): Promise<boolean> {
  const ch = await cluster.confirmChannel(node);
  try {
    return await probeOn(ch);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** Publishes one probe on a confirm channel of the checker's: true when the broker refuses it (a nack). */
function probeOn(ch: ConfirmChannel): Promise<boolean> {
  return new Promise((resolve) => ch.sendToQueue(QUEUE, Buffer.from('checker probe'), { persistent: true, messageId: 'checker-probe' }, (err) => resolve(!!err)));
}

/** Takes up to `max` messages off the queue through node `node`, in order, with what the checker needs of each. */
async function take(cluster: CheckCluster, node: number, max: number): Promise<{ id?: string; persistent: boolean; body: string }[]> {
  const ch = await cluster.channel(node);
  const out: { id?: string; persistent: boolean; body: string }[] = [];
  try {
    while (out.length < max) {
      const m = await ch.get(QUEUE, { noAck: true });
      if (!m) break;
      if (m.properties.messageId === 'checker-probe') continue;
      out.push({ id: m.properties.messageId, persistent: m.properties.deliveryMode === 2, body: m.content.toString() });
    }
  } finally {
    await ch.close().catch(() => undefined);
  }
  return out;
}

function judgeQueue(t: Ctx, messages: Map<string, State>, seen: { id?: string; persistent: boolean; body: string }[], d: string[]): void {
  const noId = seen.filter((m) => !m.id);
  if (noId.length) {
    t.fail({
      summary: `${noId.length} message(s) in "${QUEUE}" have no messageId.`,
      expected: 'every message published with its id: { messageId: id }',
      saw: `a message without messageId, body ${noId[0]!.body.slice(0, 80)}`,
      why: 'Sending again makes duplicates. The id is how a consumer tells a duplicate from a new message (exercise 8.3): without it, a resent payment is paid twice.',
      fix: 'sendToQueue(queue, body, { persistent: true, messageId: id }, callback)',
      link: t.ui('queues', QUEUE),
    });
  }
  const transient = seen.filter((m) => !m.persistent);
  if (transient.length) {
    t.fail({
      summary: `${transient.length} message(s) were not published as persistent.`,
      expected: 'persistent: true (delivery mode 2) on every message',
      saw: `message ${transient[0]!.id} with delivery mode 1`,
      why: 'A quorum queue keeps every message on disk anyway, but a message that says it may be lost may be lost on the way (another queue type, a policy, a shovel): say what you mean.',
      fix: 'sendToQueue(queue, body, { persistent: true, messageId: id }, callback)',
    });
  }
  const copies = new Map<string, number>();
  for (const m of seen) copies.set(m.id!, (copies.get(m.id!) ?? 0) + 1);
  const wrongBody = seen.find((m) => messages.has(m.id!) && messages.get(m.id!)!.body !== m.body);
  if (wrongBody) {
    t.fail({
      summary: `The message with id ${wrongBody.id} does not carry the body publish() was given.`,
      expected: messages.get(wrongBody.id!)!.body,
      saw: wrongBody.body,
      fix: 'Keep the body with the id, and send exactly that again.',
    });
  }
  const confirmed = [...messages].filter(([, m]) => m.state === 'resolved').map(([id]) => id);
  const lost = confirmed.filter((id) => !copies.has(id));
  if (lost.length) {
    t.fail({
      summary: `${lost.length} of the ${confirmed.length} payments whose publish() resolved are not in "${QUEUE}": lost although your publisher said they were confirmed.`,
      expected: '0 lost: every message whose publish() resolved is in the queue',
      saw: `missing: ${lost.slice(0, 8).join(', ')}${lost.length > 8 ? '…' : ''}`,
      why: 'publish() resolving is the promise that the broker has the message. A message that was refused, or sent on a connection that died, is not confirmed: resolving it anyway loses it without a trace.',
      fix: 'Resolve only in the sendToQueue callback without an error; anything else stays unconfirmed and is sent again.',
      link: t.ui('queues', QUEUE),
    });
  }
  // Round D was sent again in one go after the kill: its first copies must be in publish order.
  const firstD = [...new Set(seen.map((m) => m.id!).filter((id) => d.includes(id)))];
  const outOfOrder = firstD.findIndex((id, i) => i > 0 && id < firstD[i - 1]!);
  if (outOfOrder > 0) {
    t.fail({
      summary: `The payments your publisher sent again after the node died reached the queue out of order: ${firstD[outOfOrder]} came after ${firstD[outOfOrder - 1]}.`,
      expected: 'round D in the queue in the order publish() was called',
      saw: `${firstD.slice(Math.max(0, outOfOrder - 2), outOfOrder + 2).join(', ')}…`,
      why: 'Sending again must not reorder: a consumer that reads "created" after "cancelled" for the same order gets it wrong. A Map keeps its keys in the order they were first set: send them again in that order.',
      fix: 'for (const id of unconfirmed.keys()) send(id); with unconfirmed a Map filled by publish().',
      link: t.ui('queues', QUEUE),
    });
  }
  t.observe(5, `round D's messages are in the queue in the order they were published (${firstD.length} of them)`);
  t.observe(2, `read ${seen.length} messages off "${QUEUE}": each persistent, with its messageId and its body`);
  const duplicated = [...copies].filter(([, n]) => n > 1);
  const extra = duplicated.reduce((n, [, k]) => n + k - 1, 0);
  t.note(
    `${confirmed.length} payments confirmed to your publisher, 0 lost, ${extra} duplicate cop${extra === 1 ? 'y' : 'ies'} of ${duplicated.length} payment(s)` +
      `${duplicated.length ? ` (e.g. ${duplicated.slice(0, 3).map(([id, n]) => `${id} ×${n}`).join(', ')})` : ''}. ` +
      'Duplicates are legal here: a message sent again may have arrived the first time too (its confirm was lost, or the node that hung took it when it woke). Your consumers must handle them: exercise 8.3.',
  );
}

function clock(at: number): string {
  return new Date(at).toISOString().slice(11, 23);
}

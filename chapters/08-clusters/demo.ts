// Chapter 8's live demo:
//   1. on the single broker: a quorum queue on one node has one member, and survives nothing;
//   2. on the local three-node cluster (started when it does not run): a quorum queue with
//      three members, its leader, and a publisher on another node that goes on while the
//      leader's node is killed: how long it waited, who became leader, nothing confirmed lost;
//   3. the killed node started again, back among the queue's members.
// Run it with: npm run chapter 8
import amqp, { type ConfirmChannel } from 'amqplib';
import { clusterStatus, killNode, quorumQueueNodes, startCluster, startNode } from '../../runner/broker/cluster.js';
import { ManagementClient } from '../../runner/broker/management.js';
import { locateServer } from '../../runner/broker/private-node.js';

const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };
const VHOST = 'workbook-demo-08';
const QUEUE = 'demo.payments';

export async function demo(url: string, say: (line: string) => void): Promise<void> {
  await oneNode(url, say);
  if (!locateServer()) {
    say('No local rabbitmq-server here, so no three-node cluster: install it (apt-get install rabbitmq-server, brew install rabbitmq) and run npm run chapter 8 again.');
    say('With Docker: docker compose --profile cluster up -d rabbit-1 rabbit-2 rabbit-3, then docker compose kill rabbit-2 while you publish.');
    return;
  }
  await threeNodes(say);
}

// ---- 1. one node -------------------------------------------------------------------

async function oneNode(url: string, say: (line: string) => void): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    const channel = await connection.createChannel();
    await channel.assertQueue('demo.one-node', QUORUM);
    await channel.close();
  } finally {
    await connection.close();
  }
  say('On the single broker: the quorum queue "demo.one-node" has one member, on the one node there is. A quorum queue on one node is a queue on one disk: it survives a restart, not the loss of the machine.');
}

// ---- 2. three nodes, and the leader's node killed --------------------------------------

async function threeNodes(say: (line: string) => void): Promise<void> {
  const before = await clusterStatus();
  if (!before?.nodes.every((n) => n.answers)) say('Starting the local three-node cluster (about 10 s; npm run broker -- cluster stop stops it)…');
  const { info } = await startCluster();
  const node1 = info.nodes[0]!;
  const mgmt = new ManagementClient(node1.managementUrl, info.username, info.password);
  await mgmt.deleteVhost(VHOST);
  await mgmt.createVhost(VHOST, info.username);
  const urlOf = (index: number) => `${info.nodes[index - 1]!.amqpUrl}/${VHOST}`;

  // Declared through node 2: on RabbitMQ 3.x the leader starts on the declaring connection's node.
  const setup = await amqp.connect(urlOf(2));
  setup.on('error', (err) => say(`connection error: ${err.message}`));
  await (await setup.createChannel()).assertQueue(QUEUE, QUORUM);
  await setup.close();
  const placed = await until(async () => {
    const q = await quorumQueueNodes(VHOST, QUEUE);
    return q?.leader && q.online.length === 3 ? q : undefined;
  });
  const leader = placed.leader!;
  const other = [1, 2, 3].find((n) => n !== leader)!;
  say(`On the cluster (vhost "${VHOST}"): "${QUEUE}" has members on nodes ${placed.members.join(', ')}; its leader is on node ${leader}.`);

  // A publisher on another node, one message at a time, each waiting for its confirm.
  const connection = await amqp.connect(urlOf(other));
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => say(`channel error: ${err.message}`));
    const confirmed: { n: number; at: number }[] = [];
    let stop = false;
    const publishing = (async () => {
      for (let n = 1; !stop; n++) {
        // A nack (the leader could not be reached in time) means: not taken, send it again.
        while (!(await publishOne(channel, `payment ${n}`, String(n)))) await sleep(100);
        confirmed.push({ n, at: Date.now() });
      }
    })();
    await sleep(500);
    say(`A publisher on node ${other} publishes one payment at a time, each waiting for its confirm: ${confirmed.length} confirmed in 0.5 s.`);

    // #region kill
    const kill = await killNode(leader); // SIGKILL of the node's Erlang VM: a power cut
    const killedAt = Date.parse(kill.at);
    const firstAfter = await until(async () => confirmed.find((c) => c.at > killedAt));
    // #endregion
    const newLeader = await until(async () => {
      const l = (await quorumQueueNodes(VHOST, QUEUE))?.leader;
      return l !== undefined && l !== leader ? l : undefined;
    });
    say(`Killed node ${leader} (SIGKILL, pid ${kill.pid}). The publisher waited ${firstAfter.at - killedAt} ms for its next confirm; node ${newLeader} is the leader now.`);
    await sleep(300);
    stop = true;
    await publishing;
    const count = (await channel.checkQueue(QUEUE)).messageCount;
    say(`${confirmed.length} payments confirmed in all, and the queue holds ${count}: ${count >= confirmed.length ? 'nothing confirmed was lost' : 'some are missing!'}. The publisher never noticed the kill: its node did not die.`);
    await channel.close();
  } finally {
    await connection.close();
  }

  // ---- 3. the node comes back ----------------------------------------------------------
  const back = await startNode(leader);
  const rejoined = await until(async () => ((await quorumQueueNodes(VHOST, QUEUE))?.online.includes(leader) ? true : undefined));
  if (rejoined) say(`Started node ${leader} again (${(back.ms / 1000).toFixed(1)} s): its member of "${QUEUE}" is back online, a follower now, catching up from the leader.`);
  say(`Look at "${QUEUE}" in node 1's management UI: ${node1.managementUrl}/#/queues/${encodeURIComponent(VHOST)}/${QUEUE} (guest / guest).`);
}

/** Publishes one message and waits for the broker's answer: true for a confirm, false for a nack. */
function publishOne(channel: ConfirmChannel, body: string, messageId: string): Promise<boolean> {
  return new Promise((resolve) => channel.sendToQueue(QUEUE, Buffer.from(body), { persistent: true, messageId }, (err) => resolve(!err)));
}

/** Polls `probe` every 100 ms until it returns something, for up to 30 s. */
async function until<T>(probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('the cluster did not get there within 30 s');
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

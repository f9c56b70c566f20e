// The local three-node cluster of chapter 8, broken on purpose: a quorum queue's leader node
// is killed (SIGKILL of its Erlang VM), a survivor is elected leader and the queue keeps
// working through another node, then the killed node comes back and rejoins.
// Needs a local rabbitmq-server; without one the whole file is skipped, and says why.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locateServer } from '../runner/broker/private-node.js';
import { ManagementClient } from '../runner/broker/management.js';
import { runCli } from './support/run-cli.js';
import { clusterActions, clusterInfo, clusterStatus, killNode, quorumLeader, quorumQueueNodes, startCluster, startNode, stopCluster, type ClusterInfo } from '../runner/broker/cluster.js';

const server = locateServer();
const skipped = 'skipped: no local rabbitmq-server to form the three-node cluster (apt-get install rabbitmq-server, or set RABBITMQ_SERVER_BIN)';
if (!server) console.warn(`tests/cluster.test.ts ${skipped}`);
const title = server ? 'the local three-node cluster' : `the local three-node cluster, ${skipped}`;

/** Polls `probe` every 250 ms until it returns something, or fails after `ms`. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${ms / 1000} s waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(!server)(title, () => {
  let wasRunning = false;
  let info: ClusterInfo;
  const queue = `cluster-test-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    wasRunning = (await clusterStatus())?.nodes.every((n) => n.answers) ?? false;
    info = (await startCluster()).info;
  }, 120_000);

  afterAll(async () => {
    const node = (await clusterStatus())?.nodes.find((n) => n.answers);
    if (node) {
      const conn = await amqp.connect(node.amqpUrl);
      const ch = await conn.createChannel();
      await ch.deleteQueue(queue).catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
    // Leave the machine as it was: a cluster someone else started keeps running.
    if (!wasRunning) await stopCluster();
    // What was done to the cluster, and when: what a check's verdict will list.
    for (const a of clusterActions()) console.log(`${a.at}  ${a.detail}`);
  }, 90_000);

  it('has three running members, on ports and names of its own', async () => {
    const status = await clusterStatus();
    expect(status?.nodes.map((n) => n.answers)).toEqual([true, true, true]);
    expect(status?.members?.filter((m) => m.running).map((m) => m.name).sort()).toEqual(info.nodes.map((n) => n.nodeName).sort());
    // Never the single private node's ports or name.
    expect(info.nodes.map((n) => n.amqpPort)).not.toContain(5672);
    expect(info.nodes.every((n) => /-node\d@/.test(n.nodeName))).toBe(true);
    expect(clusterInfo()).toEqual(info);
  });

  it('keeps a quorum queue usable when the node of its leader is killed, and takes that node back', async () => {
    const [node1] = info.nodes;
    const setup = await amqp.connect(node1!.amqpUrl);
    const ch = await setup.createChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await setup.close();

    const queueNodes = await eventually('the queue on three nodes, with a leader', async () => {
      const q = await quorumQueueNodes('/', queue);
      return q?.leader && q.online.length === 3 ? q : undefined;
    });
    expect(queueNodes.members).toEqual([1, 2, 3]);
    const oldLeader = queueNodes.leader!;

    const kill = await killNode(oldLeader);
    expect(kill).toMatchObject({ action: 'kill node', node: oldLeader });
    expect(kill.pid).toBeGreaterThan(0);

    // A survivor is elected: the management API names a leader that is not the dead node.
    const newLeader = await eventually('a new leader on a surviving node', async () => {
      const leader = await quorumLeader('/', queue);
      return leader !== undefined && leader !== oldLeader ? leader : undefined;
    });
    expect(newLeader).not.toBe(oldLeader);

    // Through a surviving node: publish with confirms, then consume what was published.
    const survivor = info.nodes.find((n) => n.index !== oldLeader)!;
    const conn = await amqp.connect(survivor.amqpUrl);
    try {
      const confirm = await conn.createConfirmChannel();
      for (let i = 0; i < 10; i++) confirm.sendToQueue(queue, Buffer.from(`message ${i}`), { persistent: true });
      await confirm.waitForConfirms();
      const consumer = await conn.createChannel();
      const got: string[] = [];
      for (;;) {
        const msg = await consumer.get(queue);
        if (!msg) break;
        got.push(msg.content.toString());
        consumer.ack(msg);
      }
      expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `message ${i}`));
    } finally {
      await conn.close();
    }

    // The killed node starts again, is a running member, and its replica is back online.
    const back = await startNode(oldLeader);
    expect(back).toMatchObject({ action: 'start node', node: oldLeader });
    const members = (await clusterStatus())?.members;
    expect(members?.every((m) => m.running)).toBe(true);
    await eventually('the restarted node back among the queue\'s online members', async () =>
      (await quorumQueueNodes('/', queue))?.online.includes(oldLeader) ? true : undefined,
    );
  }, 90_000);
  it('takes a class made with classroom -- create --cluster: each learner on a node of their own, checks in their own pool, and destroy leaves nothing', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'wb-cluster-class-'));
    const classDir = path.join(work, 'class');
    const { RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _murl, WORKBOOK_BROKER: _forced, ...inherited } = process.env;
    // The instructor keeps the runner's state folder: the cluster's own files are there.
    const asInstructor = (args: string[]) => runCli(args, inherited);
    // No administrator anywhere in the learner's environment: only the join file.
    const asLearner = (args: string[]) =>
      runCli(args, { ...inherited, WORKBOOK_STATE_DIR: path.join(work, 's02'), RABBITMQ_URL: 'amqp://nobody:nope@localhost:1', RABBITMQ_MANAGEMENT_URL: 'http://nobody:nope@localhost:1' });
    const name = `k${randomBytes(3).toString('hex')}`;
    const admin = new ManagementClient(info.nodes[0]!.managementUrl, info.username, info.password);
    try {
      const made = await asInstructor(['classroom', 'create', '--cluster', '--students', '3', '--name', name, '--out', classDir]);
      expect(made.out).toMatch(/the local cluster/);
      expect(made.code).toBe(0);
      const joinFile = path.join(classDir, 'students', 's02.json');
      const seat = JSON.parse(readFileSync(joinFile, 'utf8')) as { pool: string[] };
      expect((await asLearner(['classroom', 'join', joinFile])).code).toBe(0);

      // s02 starts on the second node, and its check runs in one of its own vhosts.
      const checked = await asLearner(['check', '2.1', '--solutions']);
      expect(checked.out).toContain(`as learner s02 (localhost:${info.nodes[1]!.amqpPort})`);
      expect(checked.code).toBe(0);
      const json = await asLearner(['check', '2.1', '--solutions', '--json']);
      const verdicts = (JSON.parse(json.stdout.slice(json.stdout.indexOf('{'))) as { verdicts: { status: string; vhost: string }[] }).verdicts;
      expect(verdicts.map((v) => v.status)).toEqual(['passed']);
      expect(seat.pool).toContain(verdicts[0]!.vhost);
    } finally {
      if (existsSync(path.join(classDir, 'class.json'))) expect((await asInstructor(['classroom', 'destroy', '--out', classDir])).code).toBe(0);
      rmSync(work, { recursive: true, force: true });
    }
    const left = ((await admin.request<{ name: string }[]>('GET', '/vhosts?columns=name')) ?? []).filter((v) => v.name.startsWith(`cls-${name}`));
    expect(left).toEqual([]);
  }, 120_000);
});

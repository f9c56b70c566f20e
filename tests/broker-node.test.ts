// One broker per workbook, and never two nodes of the same name: the lock around a node's
// start, epmd telling a node that runs (but does not answer yet) from none, and the whole
// story through the CLI with a second state directory of its own.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify, stripVTControlCharacters as plain } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { withStartLock } from '../runner/broker/start-lock.js';
import { localNodeNames } from '../runner/broker/epmd.js';
import { locateServer, nodeNameFor, privateBrokerInfo, rabbitmqctl, type NodeState } from '../runner/broker/private-node.js';
import { dockerDaemonAnswers } from '../runner/broker/docker.js';

const root = path.resolve(import.meta.dirname, '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the start lock', () => {
  const lockIn = () => path.join(mkdtempSync(path.join(tmpdir(), 'wb-lock-')), 'start.lock');

  it('lets one process start at a time, and is gone afterwards', async () => {
    const file = lockIn();
    let inside = 0;
    let most = 0;
    const work = () =>
      withStartLock(file, async () => {
        most = Math.max(most, ++inside);
        await sleep(150);
        inside--;
      });
    await Promise.all([work(), work(), work()]);
    expect(most).toBe(1);
    expect(existsSync(file)).toBe(false);
  });

  it('takes over a lock whose process is gone, or that is older than any start', async () => {
    const file = lockIn();
    writeFileSync(file, JSON.stringify({ pid: 2 ** 22 + 1, at: Date.now() })); // beyond pid_max: no such process
    expect(await withStartLock(file, async () => 'dead holder')).toBe('dead holder');
    writeFileSync(file, JSON.stringify({ pid: process.pid, at: Date.now() - 10_000 }));
    expect(await withStartLock(file, async () => 'old lock', { staleMs: 5_000 })).toBe('old lock');
  });

  it('waits while a live process holds it', async () => {
    const file = lockIn();
    writeFileSync(file, JSON.stringify({ pid: process.pid, at: Date.now() }));
    let waited = 0;
    setTimeout(() => rmSync(file), 300);
    await withStartLock(file, async () => undefined, { onWait: (ms) => (waited = ms) });
    expect(waited).toBeGreaterThan(100);
  });
});

describe('epmd', () => {
  it('lists the node names it knows, and none when it does not run', async () => {
    // A stand-in for epmd: its port (4 bytes), then one line per node, then it closes.
    const server = net.createServer((socket) => {
      socket.once('data', () => socket.end(Buffer.concat([Buffer.from([0, 0, 0x11, 0x11]), Buffer.from('name workbook-1a2b3c at port 25672\nname rabbit at port 25673\n')])));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const saved = process.env.ERL_EPMD_PORT;
    try {
      process.env.ERL_EPMD_PORT = String((server.address() as net.AddressInfo).port);
      expect(await localNodeNames()).toEqual(['workbook-1a2b3c', 'rabbit']);
      await new Promise((r) => server.close(r));
      expect(await localNodeNames()).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.ERL_EPMD_PORT;
      else process.env.ERL_EPMD_PORT = saved;
    }
  });
});

describe.skipIf(!locateServer())('a second workbook state directory', () => {
  const state = mkdtempSync(path.join(tmpdir(), 'wb-second-'));
  const brokerDir = path.join(state, 'broker');
  // A work directory of its own, to see that no erl_crash.dump lands where the command runs.
  const cwd = mkdtempSync(path.join(tmpdir(), 'wb-cwd-'));
  const { WORKBOOK_BROKER: _forced, RABBITMQ_URL: _url, RABBITMQ_MANAGEMENT_URL: _mgmt, ...inherited } = process.env;

  async function cli(...args: string[]) {
    // WORKBOOK_STATE_DIR alone, as the README promises (a Docker daemon would be preferred to a private node: not this test's subject).
    const env = { ...inherited, WORKBOOK_STATE_DIR: state, ...((await dockerDaemonAnswers()) ? { WORKBOOK_BROKER: 'private' } : {}) };
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(root, 'runner/start.mjs'), ...args], { cwd, env });
      return { code: 0, out: plain(stdout + stderr) };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, out: plain(e.stdout + e.stderr) };
    }
  }
  const nodeState = () => JSON.parse(readFileSync(path.join(brokerDir, 'node.json'), 'utf8')) as NodeState;

  afterAll(async () => {
    await cli('broker', 'stop');
    rmSync(state, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
  });

  it('without a node, status says so and how to start one', async () => {
    const { code, out } = await cli('broker', 'status');
    expect(code).toBe(2);
    expect(out).toMatch(/No RabbitMQ broker is running for this workbook/);
    expect(out).toMatch(/npm run broker -- start/);
  });

  it('two commands at once start one node of its own', async () => {
    const [a, b] = await Promise.all([cli('broker', 'start'), cli('broker', 'start')]);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    const node = nodeState();
    expect(node.nodeName).toBe(nodeNameFor(brokerDir));
    for (const out of [a.out, b.out]) expect(out).toContain(`this workbook's private node ${node.nodeName}`);
    expect(readFileSync(path.join(brokerDir, 'server.log'), 'utf8').match(/Starting broker/g)).toHaveLength(1);
    expect((await localNodeNames()).filter((n) => n === node.nodeName.split('@')[0])).toHaveLength(1);
  });

  it('waits for a node that runs but does not answer (restarting), and never starts a second one', async () => {
    const before = nodeState();
    const handle = privateBrokerInfo(before, 'any', brokerDir).restart;
    if (handle?.kind !== 'private') throw new Error('a private node has a restart handle');
    expect(handle.env.ERL_CRASH_DUMP).toBe(path.join(brokerDir, 'erl_crash.dump'));
    await rabbitmqctl(handle, ['stop_app']);
    const status = await cli('broker', 'status');
    expect(status.code).toBe(2);
    expect(status.out).toMatch(/runs but does not answer yet/);
    const [started] = await Promise.all([cli('broker', 'start'), sleep(3000).then(() => rabbitmqctl(handle, ['start_app']))]);
    expect(started.code, started.out).toBe(0);
    expect(nodeState()).toEqual(before);
    expect(readFileSync(path.join(brokerDir, 'server.log'), 'utf8')).not.toMatch(/duplicate_node_name/);
    expect(existsSync(path.join(cwd, 'erl_crash.dump'))).toBe(false);
    expect(existsSync(path.join(brokerDir, 'erl_crash.dump'))).toBe(false);
  });
});

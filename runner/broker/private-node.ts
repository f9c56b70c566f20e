// A private RabbitMQ node started from a local `rabbitmq-server` installation
// (Debian/Ubuntu package, Homebrew), living entirely under .workbook/broker/.
// It keeps running between commands until `npm run broker -- stop`.
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync, readSync, closeSync, statSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { paths } from '../paths.js';
import { ManagementClient } from './management.js';
import { isListening, pickPort } from './ports.js';
import type { BrokerInfo } from './types.js';

const execFileP = promisify(execFile);

/** Where rabbitmq-server usually lives. The Debian /usr/sbin wrapper is last: it switches to user rabbitmq. */
const SERVER_CANDIDATES = [
  '/usr/lib/rabbitmq/bin/rabbitmq-server',
  '/opt/homebrew/opt/rabbitmq/sbin/rabbitmq-server',
  '/usr/local/opt/rabbitmq/sbin/rabbitmq-server',
  '/opt/homebrew/sbin/rabbitmq-server',
  '/usr/local/sbin/rabbitmq-server',
  '/usr/sbin/rabbitmq-server',
];

export interface NodeState {
  nodeName: string;
  amqpPort: number;
  managementPort: number;
  distPort: number;
  server: string;
  pid?: number;
}

const dir = paths.broker;
const stateFile = path.join(dir, 'node.json');
const logFile = path.join(dir, 'server.log');

/** The rabbitmq-server script to run, or undefined when none is installed. */
export function locateServer(): string | undefined {
  const fromEnv = process.env.RABBITMQ_SERVER_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  return SERVER_CANDIDATES.find((p) => existsSync(p));
}

export function readNodeState(): NodeState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as NodeState;
  } catch {
    return undefined;
  }
}

/**
 * Environment that points rabbitmq-server and rabbitmqctl at our private directories.
 * `brokerDir`: another state directory's node (the bench runs one of its own).
 */
function nodeEnv(state: NodeState, brokerDir = dir): Record<string, string> {
  return {
    HOME: path.join(brokerDir, 'home'), // holds .erlang.cookie, shared by server and CLI
    RABBITMQ_NODENAME: state.nodeName,
    RABBITMQ_NODE_PORT: String(state.amqpPort),
    RABBITMQ_DIST_PORT: String(state.distPort),
    RABBITMQ_MNESIA_BASE: path.join(brokerDir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(brokerDir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(brokerDir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(brokerDir, 'rabbitmq.conf'),
    RABBITMQ_PID_FILE: path.join(brokerDir, 'node.pid'),
  };
}

function ctlPath(server: string): string {
  return path.join(path.dirname(server), 'rabbitmqctl');
}

export function privateBrokerInfo(state: NodeState, version: string, brokerDir = dir): BrokerInfo {
  return {
    source: 'private',
    description: `private node ${state.nodeName} started by the workbook from ${state.server}`,
    amqpUrl: `amqp://guest:guest@localhost:${state.amqpPort}`,
    managementUrl: `http://localhost:${state.managementPort}`,
    username: 'guest',
    password: 'guest',
    version,
    restart: { kind: 'private', nodeName: state.nodeName, ctl: ctlPath(state.server), env: nodeEnv(state, brokerDir) },
  };
}

/** The version of the running private node, or undefined when it does not answer. */
export async function probePrivateNode(state = readNodeState()): Promise<string | undefined> {
  if (!state) return undefined;
  if (!(await isListening(state.managementPort))) return undefined;
  const mgmt = new ManagementClient(`http://localhost:${state.managementPort}`, 'guest', 'guest');
  const overview = await mgmt.overview().catch(() => undefined);
  // Another broker may have taken the port since: only accept our own node.
  if (!overview || overview.node !== state.nodeName) return undefined;
  return overview.rabbitmq_version;
}

export interface StartOptions {
  /** Called every ~100 ms while the node boots, with the elapsed time. */
  onWait?: (elapsedMs: number) => void;
  timeoutMs?: number;
}

/** Starts the private node (or finds it already running) and waits until AMQP and the management API answer. */
export async function startPrivateNode(opts: StartOptions = {}): Promise<BrokerInfo> {
  const server = locateServer();
  if (!server) throw new Error('rabbitmq-server is not installed');
  const running = await probePrivateNode();
  const previous = readNodeState();
  if (running && previous) return privateBrokerInfo(previous, running);

  mkdirSync(path.join(dir, 'home'), { recursive: true });
  mkdirSync(path.join(dir, 'log'), { recursive: true });
  mkdirSync(path.join(dir, 'mnesia'), { recursive: true });
  const cookie = path.join(dir, 'home', '.erlang.cookie');
  if (!existsSync(cookie)) writeFileSync(cookie, randomBytes(20).toString('hex'), { mode: 0o600 });

  // Default ports when free, otherwise free ones; the node name is unique per state directory (per clone).
  const amqpPort = await pickPort(previous?.amqpPort ?? 5672);
  const managementPort = await pickPort(previous?.managementPort ?? 15672, [amqpPort]);
  // RabbitMQ's convention is AMQP port + 20000; a free high AMQP port leaves no room for that.
  const distPort = await pickPort(amqpPort + 20000 <= 65535 ? amqpPort + 20000 : 25672, [amqpPort, managementPort]);
  const nodeName = previous?.nodeName ?? `workbook-${createHash('sha1').update(dir).digest('hex').slice(0, 6)}@localhost`;
  const state: NodeState = { nodeName, amqpPort, managementPort, distPort, server };

  writeFileSync(path.join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
  writeFileSync(
    path.join(dir, 'rabbitmq.conf'),
    [
      `listeners.tcp.default = ${amqpPort}`,
      `management.tcp.port = ${managementPort}`,
      // Fresher numbers in the management UI while learning (default is 5 s).
      'collect_statistics_interval = 1000',
      '',
    ].join('\n'),
  );

  const logStart = existsSync(logFile) ? statSync(logFile).size : 0;
  const out = openSync(logFile, 'a');
  const child = spawn(server, [], {
    env: { ...process.env, ...nodeEnv(state) },
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  state.pid = child.pid;
  writeFileSync(stateFile, JSON.stringify(state, null, 2));

  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 90_000;
  for (;;) {
    const elapsed = Date.now() - started;
    opts.onWait?.(elapsed);
    if (exited !== undefined) {
      throw new Error(`rabbitmq-server exited (code ${exited}) while starting. Its log says:\n${tail(logFile, logStart)}`);
    }
    if (elapsed > timeoutMs) {
      throw new Error(`rabbitmq-server did not answer within ${timeoutMs / 1000} s. Its log says:\n${tail(logFile, logStart)}`);
    }
    const version = (await isListening(amqpPort)) ? await probePrivateNode(state) : undefined;
    if (version) return privateBrokerInfo(state, version);
    await sleep(100);
  }
}

/** Stops the private node. Resolves false when it was not running. */
export async function stopPrivateNode(): Promise<boolean> {
  const state = readNodeState();
  if (!state || !(await probePrivateNode(state))) return false;
  const env = { ...process.env, ...nodeEnv(state) };
  try {
    await execFileP(ctlPath(state.server), ['-n', state.nodeName, 'stop'], { env, timeout: 60_000 });
  } catch {
    if (state.pid) {
      try {
        process.kill(state.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  }
  return true;
}

/** Runs rabbitmqctl against the private node (used for stop_app/start_app restarts). */
export async function rabbitmqctl(handle: { ctl: string; nodeName: string; env: Record<string, string> }, args: string[]) {
  await execFileP(handle.ctl, ['-n', handle.nodeName, ...args], { env: { ...process.env, ...handle.env }, timeout: 60_000 });
}

export const privateNodeLog = logFile;

function tail(file: string, from: number): string {
  try {
    const fd = openSync(file, 'r');
    const size = statSync(file).size;
    const start = Math.max(from, size - 3000);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    closeSync(fd);
    return buf.toString('utf8').trim() || '(empty)';
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

// A private RabbitMQ node started from a local `rabbitmq-server` installation
// (Debian/Ubuntu package, Homebrew), living entirely under .workbook/broker/ (its crash
// dumps included). It keeps running between commands until `npm run broker -- stop`.
// One node per state directory: its name is derived from the directory, a lock file makes
// concurrent commands wait for one start, and a node whose Erlang VM runs but does not
// answer yet (booting, or restarted by a check) is waited for, never started twice.
import { logTail } from './cluster-node.js';
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync, readSync, closeSync, statSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { paths } from '../paths.js';
import { ManagementClient } from './management.js';
import { isListening, pickPort } from './ports.js';
import { nodeIsRegistered } from './epmd.js';
import { withStartLock } from './start-lock.js';
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
const lockFile = path.join(dir, 'start.lock');

/** The node name of a state directory's node: the same directory, the same name. */
export function nodeNameFor(brokerDir = dir): string {
  return `workbook-${createHash('sha1').update(brokerDir).digest('hex').slice(0, 6)}@localhost`;
}

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
    // Erlang writes erl_crash.dump into the working directory by default: the project's root.
    ERL_CRASH_DUMP: path.join(brokerDir, 'erl_crash.dump'),
  };
}

function ctlPath(server: string): string {
  return path.join(path.dirname(server), 'rabbitmqctl');
}

export function privateBrokerInfo(state: NodeState, version: string, brokerDir = dir): BrokerInfo {
  return {
    source: 'private',
    description: `this workbook's private node ${state.nodeName} (${brokerDir})`,
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
  /** Called every ~100 ms while waiting, with the elapsed time and what it waits for. */
  onWait?: (elapsedMs: number, activity: string) => void;
  timeoutMs?: number;
}

/**
 * Starts the private node (or finds it already running) and waits until AMQP and the
 * management API answer. Never starts a second node: the start runs under a lock file, and
 * a node that runs but does not answer yet is waited for.
 */
export async function startPrivateNode(opts: StartOptions = {}): Promise<BrokerInfo> {
  const server = locateServer();
  if (!server) throw new Error('rabbitmq-server is not installed');
  const answering = await answeringPrivateNode();
  if (answering) return answering;

  const began = Date.now();
  const onWait = (activity: string) => () => opts.onWait?.(Date.now() - began, activity);
  return withStartLock(
    lockFile,
    async () => {
      // Whoever held the lock before us has probably just started it.
      const now = await answeringPrivateNode();
      if (now) return now;
      const previous = readNodeState();
      const nodeName = previous?.nodeName ?? nodeNameFor();
      if (await nodeIsRegistered(nodeName)) {
        if (!previous) throw new Error(`A node named ${nodeName} runs, but ${stateFile} is missing. Stop it with: HOME=${path.join(dir, 'home')} ${ctlPath(server)} -n ${nodeName} stop`);
        // Its Erlang VM runs, its application does not answer: it is booting, or a check
        // restarts it (exercise 2.4). Starting another would fail on the name and leave a crash dump.
        return waitUntilUp(previous, opts, onWait(`This workbook's node ${nodeName} is starting or restarting; waiting for it`), async () =>
          (await nodeIsRegistered(nodeName)) ? undefined : `The private node ${nodeName} stopped while this command waited for it. Run the command again.`,
        );
      }
      return bootNode(server, previous, nodeName, opts, onWait('Starting a private RabbitMQ node from your local rabbitmq-server'));
    },
    { onWait: onWait('Another command is starting this workbook\'s RabbitMQ node; waiting for it') },
  );
}

/** This workbook's node, when it answers. */
export async function answeringPrivateNode(): Promise<BrokerInfo | undefined> {
  const state = readNodeState();
  const version = await probePrivateNode(state);
  return state && version ? privateBrokerInfo(state, version) : undefined;
}

/** True when this workbook's node runs, whether or not it answers yet (booting, restarting). */
export async function privateNodeRuns(state = readNodeState()): Promise<boolean> {
  return nodeIsRegistered(state?.nodeName ?? nodeNameFor());
}

async function bootNode(server: string, previous: NodeState | undefined, nodeName: string, opts: StartOptions, tick: () => void): Promise<BrokerInfo> {
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

  const logStart = logSize();
  const out = openSync(logFile, 'a');
  const child = spawn(server, [], {
    cwd: dir,
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

  const failed = async () =>
    exited === undefined ? undefined : `rabbitmq-server exited (code ${exited}) while starting. Its log says:\n${logTail(logFile, logStart)}`;
  return waitUntilUp(state, opts, tick, failed, logStart);
}

/** Polls until the node answers; `failed` says why to stop waiting (the server exited). */
async function waitUntilUp(state: NodeState, opts: StartOptions, tick: () => void, failed: () => Promise<string | undefined>, logStart = logSize()): Promise<BrokerInfo> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 90_000;
  for (;;) {
    tick();
    const why = await failed();
    if (why) throw new Error(why);
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `The private node ${state.nodeName} runs but did not answer within ${timeoutMs / 1000} s (its RabbitMQ application is stopped or stuck). ` +
          `Stop it with \`npm run broker -- stop\`, then try again. Its logs are in ${path.join(dir, 'log')}; the server's output since then:\n${logTail(logFile, logStart)}`,
      );
    }
    const version = (await isListening(state.amqpPort)) ? await probePrivateNode(state) : undefined;
    if (version) return privateBrokerInfo(state, version);
    await sleep(100);
  }
}

/** Stops the private node. Resolves false when it was not running. */
export async function stopPrivateNode(): Promise<boolean> {
  const state = readNodeState();
  // Also a node that does not answer (stopped with stop_app, or stuck booting): its VM runs.
  if (!state || !(await privateNodeRuns(state))) return false;
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

function logSize(): number {
  return existsSync(logFile) ? statSync(logFile).size : 0;
}


function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

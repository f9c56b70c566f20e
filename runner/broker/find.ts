// Finds a broker to use, in this order, and says which one it chose:
//   0. a classroom joined with `npm run classroom -- join FILE` (the learner's own account, no administrator);
//   1. RABBITMQ_URL (and RABBITMQ_MANAGEMENT_URL) from the environment;
//   2. the workbook's private node from an earlier run, or any broker on localhost 5672/15672
//      that is not another workbook's private node (one broker per workbook: another clone,
//      or another WORKBOOK_STATE_DIR, starts a node of its own);
//   3. Docker, when a daemon answers (rabbitmq:4-management through testcontainers, reused);
//   4. a local rabbitmq-server installation, started as a private node under .workbook/broker/;
//   5. otherwise NoBrokerError, listing the ways to get one.
// Whichever it finds, it proves usable (runner/broker/probe.ts) before anything is created
// on it; a broker that fails a probe ends in UnusableBrokerError, with the cause and the fix.
import pc from 'picocolors';
import path from 'node:path';
import { isListening } from './ports.js';
import { answeringPrivateNode, locateServer, nodeNameFor, privateNodeLog, privateNodeRuns, readNodeState, startPrivateNode } from './private-node.js';
import { ManagementClient } from './management.js';
import { dockerDaemonAnswers, startDockerBroker } from './docker.js';
import { describeProblems, probeBroker, type ProbeReport, type ProbeTarget } from './probe.js';
import { amqpPort, NoBrokerError, type BrokerInfo } from './types.js';

/** A broker that was found but failed a probe: the environment, never the learner's code. */
export class UnusableBrokerError extends NoBrokerError {
  constructor(readonly report: ProbeReport, readonly target: ProbeTarget) {
    super(describeProblems(report.problems, target.description));
  }
}

export interface FindOptions {
  /** Start a broker (Docker or private node) when none is running. Default true. */
  start?: boolean;
  /** Print a spinner while a broker starts (only ever on a terminal). Default true. */
  spinner?: boolean;
  /** Ignore a joined classroom (the instructor's `classroom -- create` wants the administrator's broker). */
  ignoreClassroom?: boolean;
}

export const NO_BROKER_HELP = [
  'No RabbitMQ broker is reachable, and the workbook could not start one. Pick one of these:',
  '  1. Docker:        docker compose up -d        (rabbitmq:4-management on 5672/15672)',
  '  2. Local install: sudo apt-get install rabbitmq-server   (or: brew install rabbitmq)',
  '                    then run the command again: the workbook starts a private node by itself',
  '  3. Your own:      export RABBITMQ_URL=amqp://user:pass@host:5672',
  '                    export RABBITMQ_MANAGEMENT_URL=http://user:pass@host:15672',
  'Then `npm run doctor` tells you whether everything is in place.',
].join('\n');

/** WORKBOOK_BROKER=private|docker skips the other sources (e.g. a second node of your own beside a running broker). */
type Forced = 'private' | 'docker' | undefined;

/** Finds (or starts) a broker, and proves it usable. */
export async function findBroker(opts: FindOptions = {}): Promise<BrokerInfo> {
  const found = await locateBroker(opts);
  if (!found) throw new NoBrokerError(opts.start === false ? await notRunningHelp() : NO_BROKER_HELP);
  return proveBroker(found);
}

/** Runs the probes on a broker that was found; its version is the one the broker reports. */
export async function proveBroker(target: ProbeTarget): Promise<BrokerInfo> {
  const report = await probeBroker(target);
  if (report.problems.length) throw new UnusableBrokerError(report, target);
  // No problem means /api/overview answered, and it carries the version.
  return { ...target, version: report.version ?? target.version ?? 'unknown' };
}

/**
 * Finds a broker without proving it (npm run doctor proves it line by line). Undefined when
 * none runs and `start` is false.
 */
export async function locateBroker(opts: FindOptions = {}): Promise<ProbeTarget | undefined> {
  const forced = process.env.WORKBOOK_BROKER as Forced;
  if (forced && forced !== 'private' && forced !== 'docker') {
    throw new NoBrokerError(`WORKBOOK_BROKER must be "private" or "docker", not "${forced}".`);
  }
  // A joined classroom wins: the learner chose it, and its account is the only one they have.
  if (!opts.ignoreClassroom) {
    const seat = await classroomBroker();
    if (seat) return seat;
  }
  if (!forced) {
    const fromEnv = brokerFromEnv();
    if (fromEnv) return fromEnv;
  }
  if (forced !== 'docker') {
    const own = await answeringPrivateNode();
    if (own) return own;
  }
  // Our node runs but does not answer yet (booting, or restarted by a check): wait for it and
  // use nothing else, not even its own AMQP port, which opens before its management API.
  const ownNodeRuns = forced !== 'docker' && locateServer() !== undefined && (await privateNodeRuns());
  if (!forced && !ownNodeRuns) {
    const running = await brokerOnDefaultPort();
    if (running) return running;
  }

  if (opts.start === false) return undefined;

  // Frames only on a terminal: in a pipe or a file they would pile up on one line. Loaded here:
  // ora costs 50-100 ms of start-up, and only a broker start needs it.
  const { default: ora } = await import('ora');
  const spinner = ora({ isEnabled: (opts.spinner ?? true) && process.stderr.isTTY === true, stream: process.stderr });
  // ora's own symbols are coloured whatever the stream is; these follow picocolors (no codes in files).
  const done = (symbol: string, text: string) => spinner.stopAndPersist({ symbol, text });
  if (forced !== 'private' && !ownNodeRuns && (await dockerDaemonAnswers())) {
    spinner.start('Starting RabbitMQ in Docker (rabbitmq:4-management)…');
    const started = Date.now();
    try {
      const broker = await startDockerBroker();
      done(pc.green('✔'), `RabbitMQ ${broker.version} is up in Docker (${secs(Date.now() - started)})`);
      return broker;
    } catch (err) {
      done(pc.yellow('⚠'), `Docker answered but the container did not start: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  if (forced !== 'docker' && locateServer()) {
    spinner.start(ownNodeRuns ? "This workbook's node is starting or restarting; waiting for it…" : 'Starting a private RabbitMQ node from your local rabbitmq-server…');
    try {
      const broker = await startPrivateNode({ onWait: (ms, activity) => (spinner.text = `${activity}… ${secs(ms)}`) });
      done(pc.green('✔'), `RabbitMQ ${broker.version} is up: ${broker.amqpUrl.replace(/\/\/[^@]*@/, '//')} (management UI ${broker.managementUrl})`);
      return broker;
    } catch (err) {
      done(pc.red('✖'), 'The private RabbitMQ node did not start.');
      throw new NoBrokerError(
        `${(err as Error).message}\n\nIts log: ${privateNodeLog}. Other ways to get a broker: docker compose up -d, or set RABBITMQ_URL (npm run doctor checks it).`,
      );
    }
  }
  throw new NoBrokerError(NO_BROKER_HELP);
}

/** Step 0: the classroom joined with `npm run classroom -- join FILE` (runner/classroom/files.ts). */
async function classroomBroker(): Promise<ProbeTarget | undefined> {
  const { readSeat, seatFile } = await import('../classroom/files.js');
  const { answeringNode, seatTarget } = await import('../classroom/seat.js');
  let join;
  try {
    join = readSeat();
  } catch (err) {
    throw new NoBrokerError(`${(err as Error).message}\nThe classroom configuration ${seatFile()} is unreadable: npm run classroom -- leave, then join again.`);
  }
  // On a cluster, the learner's own node, or the next one that answers when it is down.
  return join && seatTarget(join, await answeringNode(join));
}

/** Step 1: RABBITMQ_URL. The management URL defaults to the same host on 15672 with the same credentials. */
function brokerFromEnv(): ProbeTarget | undefined {
  const raw = process.env.RABBITMQ_URL;
  if (!raw) return undefined;
  const amqp = parseUrl('RABBITMQ_URL', raw);
  const username = decodeURIComponent(amqp.username || 'guest');
  const password = decodeURIComponent(amqp.password || 'guest');
  const mgmtUrl = parseUrl('RABBITMQ_MANAGEMENT_URL', process.env.RABBITMQ_MANAGEMENT_URL ?? `http://${amqp.hostname}:15672`);
  const mUser = decodeURIComponent(mgmtUrl.username) || username;
  const mPass = decodeURIComponent(mgmtUrl.password) || password;
  mgmtUrl.username = '';
  mgmtUrl.password = '';
  const port = amqpPort(amqp);
  return {
    source: 'env',
    description: `RABBITMQ_URL (${amqp.hostname}:${port})`,
    amqpUrl: `${amqp.protocol}//${encodeURIComponent(username)}:${encodeURIComponent(password)}@${amqp.hostname}:${port}`,
    managementUrl: mgmtUrl.toString().replace(/\/+$/, ''),
    username: mUser,
    password: mPass,
  };
}

function parseUrl(name: string, raw: string): URL {
  try {
    return new URL(raw);
  } catch {
    throw new NoBrokerError(`${name} is not a valid URL: ${raw.replace(/:[^:@/]*@/, ':***@')}`);
  }
}

/**
 * Step 2 (after our own node): a broker on localhost:5672, with its management API on 15672
 * (guest/guest), unless it is another workbook's private node: every workbook uses a broker
 * of its own, so that two clones (or two WORKBOOK_STATE_DIRs) never share, restart or clean
 * up each other's broker.
 */
async function brokerOnDefaultPort(): Promise<ProbeTarget | undefined> {
  const found = await defaultPortBroker();
  if (!found) return undefined;
  if (found.otherWorkbook) {
    process.stderr.write(
      `note: localhost:5672 is another workbook's private node (${found.node}${found.stateDir ? `, state in ${found.stateDir}` : ''}). ` +
        `This workbook uses a broker of its own. To share that one instead, set RABBITMQ_URL=amqp://guest:guest@localhost:5672\n`,
    );
    return undefined;
  }
  // Whatever listens there is probed like any broker: a management API that does not answer, other credentials… each has its message.
  return {
    source: 'localhost',
    description: `the broker already running on localhost:5672 (${found.node ? `node ${found.node}, ` : ''}not started by this workbook, e.g. docker compose up -d)`,
    amqpUrl: 'amqp://guest:guest@localhost:5672',
    managementUrl: 'http://localhost:15672',
    username: 'guest',
    password: 'guest',
  };
}

export interface DefaultPortBroker {
  /** Its node name, when its management API on 15672 answers guest/guest. */
  node?: string;
  /** Another workbook's private node: named workbook-<hash of its state directory>, and not ours. */
  otherWorkbook: boolean;
  /** That workbook's state directory, from the config file its node was started with (…/.workbook/broker/rabbitmq.conf). */
  stateDir?: string;
}

/** What answers on localhost:5672, or undefined when nothing does. */
export async function defaultPortBroker(): Promise<DefaultPortBroker | undefined> {
  if (!(await isListening(5672))) return undefined;
  const mgmt = new ManagementClient('http://localhost:15672', 'guest', 'guest');
  const node = (await mgmt.overview().catch(() => undefined))?.node;
  const otherWorkbook = !!node && /^workbook-[0-9a-f]{6}@/.test(node) && node !== (readNodeState()?.nodeName ?? nodeNameFor());
  if (!otherWorkbook) return { node, otherWorkbook };
  const info = await mgmt.request<{ config_files?: string[] }>('GET', `/nodes/${encodeURIComponent(node!)}?memory=false`).catch(() => undefined);
  const conf = info?.config_files?.[0];
  return { node, otherWorkbook, stateDir: conf ? path.dirname(path.dirname(conf)) : undefined };
}

/** What to do when no broker runs, for commands that never start one (`npm run broker -- status`). */
async function notRunningHelp(): Promise<string> {
  const forced = process.env.WORKBOOK_BROKER as Forced;
  const server = forced === 'docker' ? undefined : locateServer();
  if (server && (await privateNodeRuns())) {
    return [
      `This workbook's private node runs but does not answer yet: it is starting, or a check is restarting it.`,
      'Ask again in a few seconds. If it stays so: npm run broker -- stop, then npm run broker -- start.',
      `Its log: ${privateNodeLog}`,
    ].join('\n');
  }
  const docker = forced !== 'private' && (await dockerDaemonAnswers());
  if (!server && !docker) return NO_BROKER_HELP;
  return [
    'No RabbitMQ broker is running for this workbook.',
    `Start one with: npm run broker -- start   (${docker ? 'RabbitMQ in Docker' : `a private node from ${server}, about 10 s`})`,
    'Any chapter or check command also starts it when it needs it.',
  ].join('\n');
}

function secs(ms: number) {
  return `${(ms / 1000).toFixed(1)} s`;
}

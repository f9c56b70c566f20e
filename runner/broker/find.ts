// Finds a broker to use, in this order, and says which one it chose:
//   1. RABBITMQ_URL (and RABBITMQ_MANAGEMENT_URL) from the environment;
//   2. the workbook's private node from an earlier run, or any broker on localhost 5672/15672;
//   3. Docker, when a daemon answers (rabbitmq:4-management through testcontainers, reused);
//   4. a local rabbitmq-server installation, started as a private node under .workbook/broker/;
//   5. otherwise NoBrokerError, listing the ways to get one.
import ora from 'ora';
import { ManagementClient, ManagementError } from './management.js';
import { isListening } from './ports.js';
import { probePrivateNode, readNodeState, privateBrokerInfo, locateServer, startPrivateNode } from './private-node.js';
import { dockerDaemonAnswers, startDockerBroker } from './docker.js';
import { NoBrokerError, type BrokerInfo } from './types.js';

export interface FindOptions {
  /** Start a broker (Docker or private node) when none is running. Default true. */
  start?: boolean;
  /** Print a spinner while a broker starts. Default: when stderr is a terminal. */
  spinner?: boolean;
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

export async function findBroker(opts: FindOptions = {}): Promise<BrokerInfo> {
  const forced = process.env.WORKBOOK_BROKER as Forced;
  if (forced && forced !== 'private' && forced !== 'docker') {
    throw new NoBrokerError(`WORKBOOK_BROKER must be "private" or "docker", not "${forced}".`);
  }
  if (!forced) {
    const fromEnv = await brokerFromEnv();
    if (fromEnv) return fromEnv;
    const running = await runningLocalBroker();
    if (running) return running;
  } else if (forced === 'private') {
    const state = readNodeState();
    const version = await probePrivateNode(state);
    if (state && version) return privateBrokerInfo(state, version);
  }

  if (opts.start === false) throw new NoBrokerError(NO_BROKER_HELP);

  const spinner = ora({ isEnabled: opts.spinner ?? process.stderr.isTTY, stream: process.stderr });
  if (forced !== 'private' && (await dockerDaemonAnswers())) {
    spinner.start('Starting RabbitMQ in Docker (rabbitmq:4-management)…');
    const started = Date.now();
    try {
      const broker = await startDockerBroker();
      spinner.succeed(`RabbitMQ ${broker.version} is up in Docker (${secs(Date.now() - started)})`);
      return broker;
    } catch (err) {
      spinner.warn(`Docker answered but the container did not start: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  if (forced !== 'docker' && locateServer()) {
    spinner.start('Starting a private RabbitMQ node from your local rabbitmq-server…');
    try {
      const broker = await startPrivateNode({
        onWait: (ms) => (spinner.text = `Starting a private RabbitMQ node from your local rabbitmq-server… ${secs(ms)}`),
      });
      spinner.succeed(`RabbitMQ ${broker.version} is up: ${broker.amqpUrl.replace(/\/\/[^@]*@/, '//')} (management UI ${broker.managementUrl})`);
      return broker;
    } catch (err) {
      spinner.fail('The private RabbitMQ node did not start.');
      throw new NoBrokerError(`${(err as Error).message}\n\n${NO_BROKER_HELP}`);
    }
  }
  throw new NoBrokerError(NO_BROKER_HELP);
}

/** Step 1: RABBITMQ_URL. The management URL defaults to the same host on 15672 with the same credentials. */
async function brokerFromEnv(): Promise<BrokerInfo | undefined> {
  const raw = process.env.RABBITMQ_URL;
  if (!raw) return undefined;
  let amqp: URL;
  try {
    amqp = new URL(raw);
  } catch {
    throw new NoBrokerError(`RABBITMQ_URL is not a valid URL: ${raw}`);
  }
  const username = decodeURIComponent(amqp.username || 'guest');
  const password = decodeURIComponent(amqp.password || 'guest');
  const mgmtRaw = process.env.RABBITMQ_MANAGEMENT_URL ?? `http://${amqp.hostname}:15672`;
  const mgmtUrl = new URL(mgmtRaw);
  const mUser = decodeURIComponent(mgmtUrl.username) || username;
  const mPass = decodeURIComponent(mgmtUrl.password) || password;
  mgmtUrl.username = '';
  mgmtUrl.password = '';
  const managementUrl = mgmtUrl.toString().replace(/\/+$/, '');
  const version = await versionAt(managementUrl, mUser, mPass);
  if (!version.ok) {
    throw new NoBrokerError(
      `RABBITMQ_URL is set, but the management API at ${managementUrl} does not answer: ${version.reason}.\n` +
        'The workbook needs the management plugin (rabbitmq-plugins enable rabbitmq_management).\n' +
        'Set RABBITMQ_MANAGEMENT_URL if it listens elsewhere, or unset RABBITMQ_URL to let the workbook find a broker.',
    );
  }
  const port = amqp.port || '5672';
  return {
    source: 'env',
    description: `RABBITMQ_URL (${amqp.hostname}:${port})`,
    amqpUrl: `${amqp.protocol}//${encodeURIComponent(username)}:${encodeURIComponent(password)}@${amqp.hostname}:${port}`,
    managementUrl,
    username: mUser,
    password: mPass,
    version: version.version,
  };
}

/** Step 2: our private node from an earlier run, then anything on localhost 5672/15672. */
async function runningLocalBroker(): Promise<BrokerInfo | undefined> {
  const state = readNodeState();
  const privateVersion = await probePrivateNode(state);
  if (state && privateVersion) return privateBrokerInfo(state, privateVersion);

  if (!(await isListening(5672))) return undefined;
  const version = await versionAt('http://localhost:15672', 'guest', 'guest');
  if (!version.ok) {
    throw new NoBrokerError(
      `Something listens on localhost:5672, but the management API on localhost:15672 does not answer (${version.reason}).\n` +
        'If it is RabbitMQ, enable the management plugin: rabbitmq-plugins enable rabbitmq_management\n' +
        'If it uses other credentials than guest/guest, set RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL.',
    );
  }
  return {
    source: 'localhost',
    description: 'the broker already running on localhost:5672 (e.g. docker compose up -d)',
    amqpUrl: 'amqp://guest:guest@localhost:5672',
    managementUrl: 'http://localhost:15672',
    username: 'guest',
    password: 'guest',
    version: version.version,
  };
}

async function versionAt(url: string, user: string, pass: string): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  try {
    const overview = await new ManagementClient(url, user, pass).overview();
    return overview ? { ok: true, version: overview.rabbitmq_version } : { ok: false, reason: 'no /api/overview' };
  } catch (err) {
    return { ok: false, reason: err instanceof ManagementError ? err.message : String(err) };
  }
}

function secs(ms: number) {
  return `${(ms / 1000).toFixed(1)} s`;
}

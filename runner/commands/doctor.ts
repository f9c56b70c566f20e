// npm run doctor: one table of everything the workbook needs; every failing line says how to fix it.
import pc from 'picocolors';
import { terminalTable } from '../table.js';
import { findBroker } from '../broker/find.js';
import { locateServer, readNodeState } from '../broker/private-node.js';
import { dockerDaemonAnswers } from '../broker/docker.js';
import { isListening } from '../broker/ports.js';
import { managementFor } from '../broker/management.js';
import { compareVersions, type BrokerInfo } from '../broker/types.js';
import { EXIT } from '../exit-codes.js';

type Level = 'ok' | 'warn' | 'fail' | 'info';
interface Row {
  what: string;
  level: Level;
  detail: string;
  fix?: string;
}

const MARK: Record<Level, string> = { ok: pc.green('✓'), warn: pc.yellow('!'), fail: pc.red('✗'), info: pc.dim('·') };

export async function doctorCommand(): Promise<number> {
  const rows: Row[] = [];
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  rows.push(
    nodeMajor >= 20
      ? { what: 'Node.js', level: 'ok', detail: process.version }
      : { what: 'Node.js', level: 'fail', detail: process.version, fix: 'Install Node.js 20 or newer (https://nodejs.org, or nvm install 20).' },
  );

  const server = locateServer();
  const docker = await dockerDaemonAnswers();
  let broker: BrokerInfo | undefined;
  let brokerError = '';
  try {
    broker = await findBroker({ start: false });
  } catch (err) {
    brokerError = (err as Error).message.split('\n')[0]!;
  }

  if (broker) {
    rows.push({ what: 'Broker', level: 'ok', detail: `RabbitMQ ${broker.version}, ${broker.description}` });
    const mgmt = await managementFor(broker).overview().then(
      () => ({ level: 'ok' as const, detail: broker!.managementUrl }),
      (e: Error) => ({ level: 'fail' as const, detail: e.message }),
    );
    rows.push({ what: 'Management API', ...mgmt, fix: mgmt.level === 'fail' ? 'rabbitmq-plugins enable rabbitmq_management' : undefined });
    rows.push(
      compareVersions(broker.version, '4.0') >= 0
        ? { what: 'Broker version', level: 'ok', detail: `${broker.version}: every exercise runs` }
        : { what: 'Broker version', level: 'warn', detail: `${broker.version}: the few exercises that need RabbitMQ 4.x are skipped`, fix: 'For 4.x: docker compose up -d (then npm run broker -- stop for the private node)' },
    );
  } else if (server || docker) {
    rows.push({ what: 'Broker', level: 'warn', detail: 'none running yet', fix: 'npm run broker -- start (any chapter or check command starts one too)' });
  } else {
    rows.push({ what: 'Broker', level: 'fail', detail: brokerError || 'none reachable, none startable', fix: 'docker compose up -d, or install rabbitmq-server, or set RABBITMQ_URL' });
  }

  rows.push(
    docker
      ? { what: 'Docker', level: 'ok', detail: 'a daemon answers: the workbook can run rabbitmq:4-management' }
      : { what: 'Docker', level: 'info', detail: 'no daemon (optional)', fix: server ? undefined : 'Start Docker Desktop / dockerd, or install rabbitmq-server' },
  );
  rows.push(
    server
      ? { what: 'Local rabbitmq-server', level: 'ok', detail: server }
      : { what: 'Local rabbitmq-server', level: 'info', detail: 'not installed (optional)', fix: docker ? undefined : 'sudo apt-get install rabbitmq-server, or brew install rabbitmq' },
  );

  const node = readNodeState();
  for (const [port, name] of [[node?.amqpPort ?? 5672, 'AMQP'], [node?.managementPort ?? 15672, 'management']] as const) {
    const busy = await isListening(port);
    const ours = broker && (broker.amqpUrl.endsWith(`:${port}`) || broker.managementUrl.endsWith(`:${port}`));
    rows.push({
      what: `Port ${port} (${name})`,
      level: busy && !ours && !broker ? 'warn' : 'ok',
      detail: busy ? (ours ? 'used by the broker above' : 'in use') : 'free',
      fix: busy && !ours && !broker ? `Something that is not a usable broker holds port ${port}; stop it, or the private node will pick another port.` : undefined,
    });
  }

  const table = terminalTable({ head: ['', 'check', 'status', 'how to fix'], colWidths: [3, 24, 52, 50], wordWrap: true });
  for (const r of rows) table.push([MARK[r.level], r.what, r.detail, r.fix ?? '']);
  console.log(table.toString());
  const failing = rows.filter((r) => r.level === 'fail');
  console.log(failing.length ? pc.red(`${failing.length} problem(s) to fix first.`) : pc.green('Ready to go: npm run chapter 1'));
  return failing.length ? EXIT.ENVIRONMENT : EXIT.OK;
}

// npm run doctor: one table of everything the workbook needs; every failing line says how to fix it.
// The broker's lines are the probes every command runs before it uses the broker: a broken
// set-up is never green here.
import pc from 'picocolors';
import { terminalTable } from '../table.js';
import { defaultPortBroker, locateBroker } from '../broker/find.js';
import { probeBroker, type ProbeTarget } from '../broker/probe.js';
import { locateServer, readNodeState } from '../broker/private-node.js';
import { dockerDaemonAnswers } from '../broker/docker.js';
import { isListening } from '../broker/ports.js';
import { compareVersions } from '../broker/types.js';
import { EXIT } from '../exit-codes.js';
import { rel } from '../paths.js';

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
  // The same probes every command runs before it creates anything on the broker (runner/broker/probe.ts).
  let broker: ProbeTarget | undefined;
  let brokerError = '';
  try {
    broker = await locateBroker({ start: false });
  } catch (err) {
    brokerError = (err as Error).message.split('\n')[0]!;
  }

  if (broker) {
    const report = await probeBroker(broker);
    const version = report.version ?? broker.version;
    const usable = report.problems.length === 0;
    rows.push({ what: 'Broker', level: usable ? 'ok' : 'info', detail: `${version ? `RabbitMQ ${version}, ` : ''}${broker.description}` });
    for (const line of report.lines) rows.push({ what: line.what, level: line.ok ? 'ok' : 'fail', detail: line.detail, fix: line.fix });
    if (usable && version) {
      rows.push(
        compareVersions(version, '4.0') >= 0
          ? { what: 'Broker version', level: 'ok', detail: `${version}: every exercise runs` }
          : { what: 'Broker version', level: 'warn', detail: `${version}: the few exercises that need RabbitMQ 4.x are skipped`, fix: 'For 4.x: docker compose up -d (then npm run broker -- stop for the private node)' },
      );
    }
  } else if (brokerError) {
    rows.push({ what: 'Broker', level: 'fail', detail: brokerError, fix: 'Correct RABBITMQ_URL / RABBITMQ_MANAGEMENT_URL, or unset them to let the workbook find a broker' });
  } else if (server || docker) {
    rows.push({ what: 'Broker', level: 'warn', detail: 'none running yet', fix: 'npm run broker -- start (any chapter or check command starts one too)' });
  } else {
    rows.push({ what: 'Broker', level: 'fail', detail: 'none reachable, none startable', fix: 'docker compose up -d, or install rabbitmq-server, or set RABBITMQ_URL' });
  }

  rows.push(await modeRow(broker));

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
  // Another workbook's private node on the default ports is fine: this workbook's node takes others.
  const other = node ? undefined : await defaultPortBroker();
  for (const [port, name] of [[node?.amqpPort ?? 5672, 'AMQP'], [node?.managementPort ?? 15672, 'management']] as const) {
    const busy = await isListening(port);
    const ours = broker && (broker.amqpUrl.endsWith(`:${port}`) || broker.managementUrl.endsWith(`:${port}`));
    if (busy && !ours && other?.otherWorkbook) {
      rows.push({ what: `Port ${port} (${name})`, level: 'info', detail: `used by another workbook's private node (${other.stateDir ?? other.node}); this workbook's node will take another port` });
      continue;
    }
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
  if (!failing.length) console.log(pc.green('Ready to go: npm run chapter 1'));
  else {
    // Once more in full below the table: its cells wrap commands that are meant to be copied.
    console.log(pc.red(`${failing.length} problem(s) to fix first:`));
    for (const r of failing) console.log(`${MARK.fail} ${r.what}: ${r.detail}${r.fix ? `\n  Fix: ${r.fix}` : ''}`);
  }
  return failing.length ? EXIT.ENVIRONMENT : EXIT.OK;
}

/** Which way checks get their vhosts: created per check (an administrator), or borrowed from a classroom learner's pool. */
async function modeRow(broker: ProbeTarget | undefined): Promise<Row> {
  const seat = broker?.classroom;
  if (!seat) {
    return { what: 'Mode', level: 'info', detail: 'single user: each check runs in a vhost created for it and deleted afterwards (the user needs the administrator tag)' };
  }
  const [{ needsAdministrator }, { loadManifest }, { seatFile }] = await Promise.all([import('../classroom/admin-only.js'), import('../manifest/load.js'), import('../classroom/files.js')]);
  const skipped = (() => {
    try {
      return loadManifest().exercises.filter((e) => needsAdministrator(e)).map((e) => e.id);
    } catch {
      return [];
    }
  })();
  return {
    what: 'Mode',
    level: 'info',
    detail: `classroom "${seat.className}", learner ${seat.student} (${rel(seatFile())}): checks borrow one of your ${seat.pool.length} sandbox vhosts, emptied before and after; demos run in ${seat.demoVhost}. Skipped, as they need administrator rights: ${skipped.join(', ') || 'none'}`,
    fix: 'npm run classroom -- leave to use a broker of your own',
  };
}

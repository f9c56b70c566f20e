// npm run broker -- start | stop | status
// npm run broker -- cluster start | stop | status   (the local three-node cluster of chapter 8)
import pc from 'picocolors';
import { broker } from '../session.js';
import { findBroker } from '../broker/find.js';
import { stopPrivateNode, privateNodeLog, readNodeState } from '../broker/private-node.js';
import { stopDockerBroker } from '../broker/docker.js';
import type { BrokerInfo } from '../broker/types.js';
import { EXIT, UserError } from '../exit-codes.js';
import { paths, rel } from '../paths.js';

export async function brokerCommand(action: string, clusterAction?: string): Promise<number> {
  if (action === 'cluster') return clusterCommand(clusterAction);
  if (clusterAction !== undefined) throw new UserError(`"${clusterAction}" only follows "cluster". Use: npm run broker -- start | stop | status | cluster start|stop|status`, EXIT.USAGE);
  switch (action) {
    case 'start': {
      printStatus(await broker());
      return EXIT.OK;
    }
    case 'status': {
      // Never starts one: with none running, it says so and how to start one (exit 2).
      printStatus(await broker({ start: false }));
      return EXIT.OK;
    }
    case 'stop': {
      const stoppedNode = await stopPrivateNode();
      const stoppedDocker = await stopDockerBroker().catch(() => false);
      if (stoppedNode) console.log(`${pc.green('✓')} Stopped the workbook's private RabbitMQ node (its data stays in ${rel(paths.broker)}).`);
      if (stoppedDocker) console.log(`${pc.green('✓')} Stopped and removed the workbook's RabbitMQ container.`);
      if (!stoppedNode && !stoppedDocker) {
        const other = await findBroker({ start: false }).catch(() => undefined);
        console.log(
          other
            ? `The workbook did not start the broker it uses (${other.description}); stop it where it was started.`
            : 'No broker started by the workbook is running.',
        );
      }
      return EXIT.OK;
    }
    default:
      throw new UserError(`Unknown broker action "${action}". Use: npm run broker -- start | stop | status | cluster start|stop|status`, EXIT.USAGE);
  }
}

function printStatus(b: BrokerInfo) {
  const amqp = b.amqpUrl.replace(/\/\/[^@]*@/, '//');
  console.log(`${pc.green('●')} RabbitMQ ${pc.bold(b.version)}: ${b.description}`);
  console.log(`  AMQP:          ${amqp}`);
  console.log(`  Management UI: ${pc.cyan(b.managementUrl)}  (${b.username} / ${b.password})`);
  if (b.source === 'private') {
    console.log(`  Server:        ${readNodeState()?.server ?? 'rabbitmq-server'}`);
    console.log(`  Log:           ${rel(privateNodeLog)}`);
  }
  if (!amqp.endsWith(':5672')) console.log(pc.dim(`  Not on the default port: run exercises on their own with RABBITMQ_URL=${b.amqpUrl} npx tsx …`));
}

/** The local three-node cluster: start, stop, status. Never touches the single private node. */
async function clusterCommand(action: string | undefined): Promise<number> {
  // Loaded here: the other broker actions need none of it.
  const cluster = await import('../broker/cluster.js');
  switch (action) {
    case 'start': {
      const { default: ora } = await import('ora');
      const spinner = ora({ isEnabled: process.stderr.isTTY === true, stream: process.stderr });
      spinner.start('Starting a three-node RabbitMQ cluster from your local rabbitmq-server…');
      try {
        const { started, ms } = await cluster.startCluster({ onWait: (waited, activity) => (spinner.text = `${activity}… ${(waited / 1000).toFixed(1)} s`) });
        spinner.stopAndPersist({
          symbol: pc.green('✔'),
          text:
            started.length === 0
              ? 'The cluster was already running.'
              : started.length === 3
                ? `The cluster is formed: three running members after ${(ms / 1000).toFixed(1)} s.`
                : `Started node ${started.join(' and ')} again: three running members after ${(ms / 1000).toFixed(1)} s.`,
        });
      } catch (err) {
        spinner.stopAndPersist({ symbol: pc.red('✖'), text: 'The cluster did not form.' });
        throw new UserError(`${(err as Error).message}\n\nEach node's logs are in ${rel(cluster.clusterDir)}/node-N/log/ (its first output in node-N/server.log).`, EXIT.ENVIRONMENT);
      }
      return printClusterStatus(await cluster.clusterStatus());
    }
    case 'status':
      return printClusterStatus(await cluster.clusterStatus());
    case 'stop': {
      const stopped = await cluster.stopCluster();
      console.log(
        stopped.length
          ? `${pc.green('✓')} Stopped node${stopped.length > 1 ? 's' : ''} ${stopped.join(', ')} of the cluster (the data stays in ${rel(cluster.clusterDir)}).`
          : 'The local cluster is not running.',
      );
      return EXIT.OK;
    }
    default:
      throw new UserError(`${action ? `Unknown cluster action "${action}". ` : ''}Use: npm run broker -- cluster start | stop | status`, EXIT.USAGE);
  }
}

/** Each node with its ports and whether it runs, then the membership the broker reports. Exit 2 when no node runs. */
function printClusterStatus(status: import('../broker/cluster.js').ClusterStatus | undefined): number {
  if (!status || !status.nodes.some((n) => n.runs)) {
    console.log('The local three-node cluster is not running.');
    console.log('Start it with: npm run broker -- cluster start   (three nodes from your local rabbitmq-server, about 10 s)');
    return EXIT.ENVIRONMENT;
  }
  const version = status.nodes.find((n) => n.version)?.version;
  console.log(`${pc.bold('RabbitMQ cluster')}${version ? ` ${version}` : ''}, three local nodes under ${rel(status.dir)} (management UI user guest / guest)`);
  for (const n of status.nodes) {
    const state = n.answers ? pc.green('● running') : n.runs ? pc.yellow('◌ starting') : pc.red('○ not running');
    const pid = n.pid ? `, pid ${n.pid}` : '';
    console.log(`  node ${n.index}  ${n.nodeName}  ${state}`);
    console.log(pc.dim(`          AMQP amqp://localhost:${n.amqpPort}   management ${n.managementUrl}   distribution port ${n.distPort}${pid}`));
  }
  if (status.members) {
    console.log(`  Members, as node ${status.nodes.find((n) => n.nodeName === status.reportedBy)?.index} reports them:`);
    for (const m of status.members) console.log(`    ${m.name}  ${m.running ? pc.green('running') : pc.red('not running')}`);
  } else {
    console.log(pc.dim('  No node answers yet, so none can say who the members are.'));
  }
  return EXIT.OK;
}

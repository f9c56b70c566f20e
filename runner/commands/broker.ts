// npm run broker -- start | stop | status
import pc from 'picocolors';
import { broker } from '../session.js';
import { findBroker } from '../broker/find.js';
import { stopPrivateNode, privateNodeLog, readNodeState } from '../broker/private-node.js';
import { stopDockerBroker } from '../broker/docker.js';
import type { BrokerInfo } from '../broker/types.js';
import { EXIT, UserError } from '../exit-codes.js';
import { paths, rel } from '../paths.js';

export async function brokerCommand(action: string): Promise<number> {
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
      throw new UserError(`Unknown broker action "${action}". Use: npm run broker -- start | stop | status`, EXIT.USAGE);
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

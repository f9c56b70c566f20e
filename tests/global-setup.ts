// Provisions the broker for the whole test run with the same code the runner uses
// (RABBITMQ_URL, a running broker, Docker, or a private node from rabbitmq-server),
// and stops it afterwards only if this run started it.
import type { TestProject } from 'vitest/node';
import { findBroker } from '../runner/broker/find.js';
import { probePrivateNode, stopPrivateNode } from '../runner/broker/private-node.js';
import type { BrokerInfo } from '../runner/broker/types.js';
import { sharedClusterRunning, stopSharedCluster } from '../capstone/pg.js';

declare module 'vitest' {
  export interface ProvidedContext {
    broker: BrokerInfo;
  }
}

export default async function setup(project: TestProject) {
  const wasRunning = await probePrivateNode();
  const postgresWasRunning = await sharedClusterRunning();
  const broker = await findBroker({ spinner: false });
  console.log(`tests use RabbitMQ ${broker.version}: ${broker.description}`);
  project.provide('broker', broker);
  // Leave the machine as it was: stop what this run started (the capstone's checks start Postgres).
  return async () => {
    if (process.env.WORKBOOK_KEEP_SERVICES) return;
    if (broker.source === 'private' && !wasRunning) await stopPrivateNode();
    if (!postgresWasRunning) await stopSharedCluster();
  };
}

// A broker in Docker (rabbitmq:4-management) through testcontainers, reused between runs.
// Used only when a Docker daemon answers; testcontainers is imported lazily because
// it is heavy and, without a daemon, not needed at all.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { BrokerInfo } from './types.js';

export const DOCKER_IMAGE = 'rabbitmq:4-management';

/** True when a Docker daemon answers /_ping on its socket (or DOCKER_HOST is set). Takes milliseconds. */
export function dockerDaemonAnswers(timeoutMs = 500): Promise<boolean> {
  if (process.env.DOCKER_HOST) return Promise.resolve(true);
  const socketPath = ['/var/run/docker.sock', `${process.env.HOME}/.docker/run/docker.sock`].find((p) => existsSync(p));
  if (!socketPath) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export async function startDockerBroker(): Promise<BrokerInfo> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const container = await new GenericContainer(DOCKER_IMAGE)
    .withExposedPorts(5672, 15672)
    .withLabels({ 'org.rabbitmq-workbook': 'broker' })
    .withWaitStrategy(Wait.forHttp('/api/overview', 15672).withBasicCredentials('guest', 'guest'))
    .withStartupTimeout(120_000)
    .withReuse()
    .start();
  const host = container.getHost();
  const amqpPort = container.getMappedPort(5672);
  const managementPort = container.getMappedPort(15672);
  const managementUrl = `http://${host}:${managementPort}`;
  const { ManagementClient } = await import('./management.js');
  const overview = await new ManagementClient(managementUrl, 'guest', 'guest').overview();
  return {
    source: 'docker',
    description: `Docker container ${container.getId().slice(0, 12)} (${DOCKER_IMAGE}, started by the workbook through testcontainers)`,
    amqpUrl: `amqp://guest:guest@${host}:${amqpPort}`,
    managementUrl,
    username: 'guest',
    password: 'guest',
    version: overview?.rabbitmq_version ?? 'unknown',
    restart: { kind: 'docker', containerId: container.getId() },
  };
}

/** Runs a command inside the workbook's container (stop_app/start_app restarts). */
export async function dockerExec(containerId: string, cmd: string[]): Promise<void> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  const client = await getContainerRuntimeClient();
  const container = client.container.getById(containerId);
  const result = await client.container.exec(container, cmd);
  if (result.exitCode !== 0) throw new Error(`${cmd.join(' ')} failed in container: ${result.output}`);
}

/** Stops and removes the workbook's reused container. */
export async function stopDockerBroker(): Promise<boolean> {
  if (!(await dockerDaemonAnswers())) return false;
  const { getContainerRuntimeClient } = await import('testcontainers');
  const client = await getContainerRuntimeClient();
  const list = await client.container.list();
  const ours = list.filter((c) => c.Labels?.['org.rabbitmq-workbook'] === 'broker');
  for (const info of ours) {
    const c = client.container.getById(info.Id);
    await client.container.stop(c);
    await client.container.remove(c);
  }
  return ours.length > 0;
}

// The child process of spawnApp() (runner/check/http-app.ts): imports the module under check,
// calls its factory with the deps it was given, serves the app on a free port of 127.0.0.1, and
// tells its parent the port over IPC. On { type: 'stop' } it stops the app as the in-process
// harness does (shutDown) and exits. When the parent goes away (its worker thread ended), the
// IPC channel closes and this process exits too: nothing is left running or listening.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { servedParts, shutDown, type HostCommand, type HostMessage } from './http-app.js';

interface HostConfig {
  modulePath: string;
  exportName: string;
  deps: unknown;
  gracefulSigterm: boolean;
}

/** Sends a message to the parent; resolves once it is written (exit only after that, or it is lost). */
const send = (m: HostMessage) =>
  new Promise<void>((resolve) => {
    if (!process.connected) return resolve();
    process.send!(m, undefined, {}, () => resolve());
  });
process.on('disconnect', () => process.exit(1));

function describeError(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

// Like a real service without handlers: an unhandled error ends the process (and the parent hears why).
process.on('uncaughtException', (err) => {
  console.error(describeError(err));
  void send({ type: 'crashed', message: err instanceof Error ? err.message : String(err) }).then(() => process.exit(1));
});
process.on('unhandledRejection', (err) => {
  console.error(describeError(err));
  void send({ type: 'crashed', message: err instanceof Error ? err.message : String(err) }).then(() => process.exit(1));
});

const config = JSON.parse(process.env.WORKBOOK_HTTP_APP ?? '{}') as HostConfig;
try {
  const mod = (await import(pathToFileURL(config.modulePath).href)) as Record<string, unknown>;
  const factory = mod[config.exportName];
  if (typeof factory !== 'function') throw new Error(`the module exports no function named ${config.exportName}`);
  const parts = servedParts(await factory(config.deps));
  if (!parts) throw new Error(`${config.exportName}() did not return an Express app, nor { app, close }`);
  const server = http.createServer(parts.handler as http.RequestListener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  let stopping = false;
  const stop = async (cmd: Omit<HostCommand, 'type'> = {}) => {
    if (stopping) return;
    stopping = true;
    const report = await shutDown(server, parts.close, cmd);
    await send({ type: 'stopped', report });
    process.exit(0);
  };
  process.on('message', (cmd: HostCommand) => {
    if (cmd.type === 'stop') void stop(cmd);
  });
  if (config.gracefulSigterm) process.on('SIGTERM', () => void stop());
  await send({ type: 'listening', port: (server.address() as AddressInfo).port });
} catch (err) {
  console.error(describeError(err));
  await send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

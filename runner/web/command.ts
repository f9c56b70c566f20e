// npm run web [-- --port P] [--vhost NAME]: the web reader, until Ctrl-C.
import pc from 'picocolors';
import { broker } from '../session.js';
import { EXIT, UserError } from '../exit-codes.js';
import type { BrokerInfo } from '../broker/types.js';
import { startWebServer } from './server.js';

export interface WebCommandOptions {
  port?: string;
  vhost?: string[];
}

export const DEFAULT_PORT = 4173;

export async function webCommand(opts: WebCommandOptions): Promise<number> {
  const port = opts.port === undefined ? DEFAULT_PORT : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port must be a port number (0 for any free one), not "${opts.port}".`, EXIT.USAGE);
  // Without a broker the chapters still read well; only the diagram needs one.
  let found: BrokerInfo | undefined;
  let problem: string | undefined;
  try {
    found = await broker();
  } catch (err) {
    problem = `No broker for the live topology: ${(err as Error).message.split('\n')[0]} (npm run doctor says more).`;
    console.error(pc.yellow(problem));
  }
  let server;
  try {
    server = await startWebServer({ port, broker: found, brokerProblem: problem, extraVhosts: opts.vhost ?? [] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UserError(`Port ${port} is taken: npm run web -- --port ${port + 1} (or --port 0 for any free one).`, EXIT.ENVIRONMENT);
    throw err;
  }
  console.log(`The workbook's web reader: ${pc.cyan(server.url)}  (only this machine can open it; Ctrl-C stops it)`);
  // Runs until Ctrl-C: the CLI's SIGINT handler ends the process.
  await new Promise<never>(() => undefined);
  return EXIT.OK;
}

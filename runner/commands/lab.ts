// npm run lab confirms: chapter 4's publisher-confirms lab on the learner's broker.
// npm run lab failover: chapter 8's leader kills on the local cluster (runner/lab/failover-command.ts).
// npm run lab shop: chapter 10's five services under orders with faults (runner/lab/shop-command.ts).
import path from 'node:path';
import { importModule } from '../import-module.js';
import { existsSync } from 'node:fs';
import { broker } from '../session.js';
import { vhostUrl } from '../broker/types.js';
import { managementFor } from '../broker/management.js';
import { paths } from '../paths.js';
import { EXIT, UserError } from '../exit-codes.js';

interface ConfirmsLab {
  runConfirmsLab(url: string, opts: { messages: number; say?: (line: string) => void }): Promise<unknown[]>;
  renderBars(results: unknown[]): string;
}

export interface LabOptions {
  messages: string;
  cycles?: string;
  record?: boolean;
  measureStart?: string;
  blank?: boolean;
  /** shop: how many orders, and how many per second. */
  orders?: string;
  rate?: string;
}

export async function labCommand(name: string, opts: LabOptions): Promise<number> {
  if (name === 'failover') return (await import('../lab/failover-command.js')).failoverCommand(opts);
  if (name === 'shop') return (await import('../lab/shop-command.js')).shopCommand(opts);
  if (name !== 'confirms') throw new UserError(`Unknown lab "${name}". Labs: confirms, failover, shop`, EXIT.USAGE);
  const messages = Number(opts.messages);
  if (!Number.isInteger(messages) || messages <= 0) throw new UserError('--messages must be a positive whole number', EXIT.USAGE);
  const file = path.join(paths.chapters, '04-producers', 'confirms-lab.ts');
  if (!existsSync(file)) throw new UserError('The confirms lab (chapter 4) is not in this workbook yet.', EXIT.USAGE);
  const lab = await importModule<ConfirmsLab>(file);
  const b = await broker();
  // Its own vhost, so the lab's queue never meets the learner's.
  const vhost = 'workbook-lab-confirms';
  const mgmt = managementFor(b);
  await mgmt.createVhost(vhost, b.username);
  try {
    console.log(`Publishing ${messages.toLocaleString('en')} messages three ways on RabbitMQ ${b.version} (${b.description})…`);
    const results = await lab.runConfirmsLab(vhostUrl(b, vhost), { messages, say: (line) => console.log(`  ${line}`) });
    console.log(lab.renderBars(results));
  } finally {
    await mgmt.deleteVhost(vhost);
  }
  return EXIT.OK;
}

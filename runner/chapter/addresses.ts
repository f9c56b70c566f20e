// The chapters are written for a broker on the default ports (AMQP localhost:5672, management
// UI http://localhost:15672) and the default state folder (.workbook/). When the workbook's
// broker or state folder is elsewhere, the text a learner reads says where they really are.
import path from 'node:path';
import { readNodeState } from '../broker/private-node.js';
import { amqpPort } from '../broker/types.js';
import { ROOT, STATE_DIR, rel } from '../paths.js';

export interface Addresses {
  /** host:port of AMQP */
  amqp: string;
  /** scheme://host:port of the management API and UI */
  management: string;
}

/**
 * Where the broker the workbook would use listens, from what is known without asking the
 * network: RABBITMQ_URL (and RABBITMQ_MANAGEMENT_URL), else the private node's state file.
 * Undefined when neither says (the defaults then hold).
 */
export function knownAddresses(env = process.env): Addresses | undefined {
  if (env.RABBITMQ_URL) {
    try {
      const amqp = new URL(env.RABBITMQ_URL);
      const management = new URL(env.RABBITMQ_MANAGEMENT_URL ?? `http://${amqp.hostname}:15672`);
      return { amqp: `${amqp.hostname}:${amqpPort(amqp)}`, management: management.origin };
    } catch {
      return undefined; // an invalid URL is reported when the broker is looked for
    }
  }
  const node = readNodeState();
  return node ? { amqp: `localhost:${node.amqpPort}`, management: `http://localhost:${node.managementPort}` } : undefined;
}

/** `markdown` with the default broker addresses and state folder replaced by the real ones. */
export function localize(markdown: string, addresses: Addresses | undefined, stateDir = STATE_DIR): string {
  let text = markdown;
  if (addresses) {
    text = text
      .replaceAll('http://localhost:15672', addresses.management)
      .replaceAll('localhost:15672', addresses.management.replace(/^https?:\/\//, ''))
      .replaceAll('localhost:5672', addresses.amqp)
      .replace(/amqp:\/\/localhost(?![:\w])/g, `amqp://${addresses.amqp}`);
  }
  if (path.resolve(stateDir) !== path.join(ROOT, '.workbook')) text = text.replace(/(?<![\w/])\.workbook\//g, `${rel(stateDir)}/`);
  return text;
}

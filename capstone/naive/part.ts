// One part of the original project's design as a process of its own, as that project runs
// listen.py and receiver.py: NAIVE_PART=listen|receiver, settings from DATABASE_URL, RABBITMQ_URL and
// ODOO_URL, ODOO_DB, ODOO_USER, ODOO_API_KEY. The benchmark runs both designs this way,
// so neither gets a shortcut the other lacks.
import { createLogger } from '../log.js';
import { startNaiveListener } from './listen.js';
import { startNaiveReceiver } from './receiver.js';

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const part = process.env.NAIVE_PART;
const log = createLogger(`naive ${part}`);
if (part === 'listen') {
  await startNaiveListener({ databaseUrl: env('DATABASE_URL'), amqpUrl: env('RABBITMQ_URL'), log });
} else if (part === 'receiver') {
  await startNaiveReceiver({
    amqpUrl: env('RABBITMQ_URL'),
    odoo: { url: env('ODOO_URL'), db: env('ODOO_DB'), user: env('ODOO_USER'), apiKey: env('ODOO_API_KEY') },
    log,
  });
} else {
  throw new Error(`NAIVE_PART must be listen or receiver, not ${part}`);
}

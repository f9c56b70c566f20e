// npm run lab confirms [-- --messages N]: times the three ways of waiting for publisher
// confirms against your broker (RABBITMQ_URL, or amqp://localhost) and draws the result.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { renderBars, runConfirmsLab } from './confirms-lab.js';

export async function main(args: string[] = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({ args, options: { messages: { type: 'string', default: '50000' } } });
  const messages = Number(values.messages);
  if (!Number.isInteger(messages) || messages < 1) throw new Error(`--messages wants a positive whole number, not "${values.messages}"`);
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  const results = await runConfirmsLab(url, { messages, say: (line) => console.log(`• ${line}`) });
  console.log(`\n${renderBars(results)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main();
  } catch (err) {
    console.error(`The confirms lab stopped: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}

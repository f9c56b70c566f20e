// The confirms lab: the three ways of waiting for publisher confirms, timed against
// the same durable quorum queue with the same persistent messages.
//
//   individual  publish one message, wait for its confirm, repeat
//   batch       publish 100 messages, wait for all their confirms, repeat
//   async       keep publishing; per-message callbacks count the confirms that are
//               still outstanding (at most WINDOW at a time), and 'drain' is respected
//
// Run it: npm run lab confirms -- --messages 50000
import amqp, { type ConfirmChannel } from 'amqplib';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';

export type Strategy = 'individual' | 'batch' | 'async';

export interface LabResult {
  strategy: Strategy;
  ms: number;
  messages: number;
}

/** A queue of its own, deleted at the end, so the lab never mixes with your exercises. */
const QUEUE = 'confirms-lab';
const BATCH_SIZE = 100;
/** The async strategy never has more than this many messages waiting for their confirm. */
const WINDOW = 1000;

// The official Java tutorial (tutorial seven), "local" figures for 50,000 messages.
const JAVA_TUTORIAL: Record<Strategy, number> = { individual: 5549, batch: 2331, async: 4054 };
const JAVA_MESSAGES = 50_000;

// #region individual
async function publishIndividually(channel: ConfirmChannel, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    channel.sendToQueue(QUEUE, Buffer.from(String(i)), { persistent: true });
    await channel.waitForConfirms(); // one round trip (and one disk write) per message
  }
}
// #endregion

// #region batch
async function publishInBatches(channel: ConfirmChannel, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    channel.sendToQueue(QUEUE, Buffer.from(String(i)), { persistent: true });
    if ((i + 1) % BATCH_SIZE === 0) await channel.waitForConfirms();
  }
  await channel.waitForConfirms(); // the last, incomplete batch
}
// #endregion

// #region async
async function publishAsynchronously(channel: ConfirmChannel, count: number): Promise<void> {
  let outstanding = 0; // published, not confirmed yet
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const waitForAConfirm = () => new Promise<void>((resolve) => (wake = resolve));

  // amqplib calls this exactly once per message: for an answer with multiple: true, once
  // for each message it covers, in publishing order; for an answer to a single message,
  // at once, even when earlier messages are still waiting. Count; never assume an order.
  const onConfirm = (err: unknown) => {
    outstanding--;
    if (err && !failure) failure = err instanceof Error ? err : new Error(String(err));
    wake?.();
  };

  for (let i = 0; i < count; i++) {
    while (outstanding >= WINDOW) await waitForAConfirm(); // bounded in-flight window
    outstanding++;
    const hasRoom = channel.sendToQueue(QUEUE, Buffer.from(String(i)), { persistent: true }, onConfirm);
    if (!hasRoom) await once(channel, 'drain'); // the message is buffered: wait, do not resend it
  }
  while (outstanding > 0) await waitForAConfirm();
  if (failure) throw new Error(`the broker refused at least one message: ${failure.message}`);
}
// #endregion

const STRATEGIES: [Strategy, (channel: ConfirmChannel, count: number) => Promise<void>][] = [
  ['individual', publishIndividually],
  ['batch', publishInBatches],
  ['async', publishAsynchronously],
];

export async function runConfirmsLab(
  url: string,
  opts: { messages: number; say?: (line: string) => void },
): Promise<LabResult[]> {
  const say = opts.say ?? (() => undefined);
  const count = opts.messages;
  const connection = await amqp.connect(url, { clientProperties: { connection_name: 'confirms lab' } });
  connection.on('error', (err) => say(`connection error: ${err.message}`));
  try {
    const channel = await connection.createConfirmChannel();
    channel.on('error', (err) => say(`channel error: ${err.message}`));
    await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const results: LabResult[] = [];
    try {
      for (const [strategy, publish] of STRATEGIES) {
        await channel.purgeQueue(QUEUE); // every strategy starts from an empty queue
        say(`${strategy}: publishing ${count.toLocaleString('en-US')} persistent messages to the quorum queue "${QUEUE}"…`);
        const started = performance.now();
        await publish(channel, count);
        const ms = Math.round(performance.now() - started);
        const inQueue = (await channel.checkQueue(QUEUE)).messageCount;
        say(`${strategy}: ${ms.toLocaleString('en-US')} ms, ${inQueue.toLocaleString('en-US')} messages in the queue`);
        results.push({ strategy, ms, messages: count });
      }
    } finally {
      await channel.deleteQueue(QUEUE).catch(() => undefined);
    }
    return results;
  } finally {
    await connection.close();
  }
}

// ---- the chart ---------------------------------------------------------------

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
const WIDTH = 40;

function bar(value: number, max: number): string {
  const eighths = Math.max(1, max > 0 ? Math.round((value / max) * WIDTH * 8) : 0); // never invisible
  return ('█'.repeat(Math.floor(eighths / 8)) + EIGHTHS[eighths % 8]).padEnd(WIDTH);
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');
const rate = (messages: number, ms: number) => (ms > 0 ? (messages * 1000) / ms : 0);

/** A bar chart of the lab's results for the terminal, with the Java tutorial's figures to compare. */
export function renderBars(results: LabResult[]): string {
  if (results.length === 0) return '(no results)';
  const messages = results[0]!.messages;
  const max = Math.max(...results.map((r) => r.ms));
  const lines = [`Publisher confirms: ${n(messages)} persistent messages to a durable quorum queue (shorter is faster)`, ''];
  for (const r of results) {
    lines.push(`  ${r.strategy.padEnd(10)} ${bar(r.ms, max)} ${n(r.ms).padStart(8)} ms ${n(rate(r.messages, r.ms)).padStart(9)} msg/s`);
  }
  const reference = (Object.keys(JAVA_TUTORIAL) as Strategy[])
    .map((s) => `${s} ${n(JAVA_TUTORIAL[s])} ms (${n(rate(JAVA_MESSAGES, JAVA_TUTORIAL[s]))} msg/s)`)
    .join(' · ');
  lines.push('', `  Java tutorial, local broker, ${n(JAVA_MESSAGES)} messages: ${reference}`);
  if (messages !== JAVA_MESSAGES) lines.push(`  (you ran ${n(messages)} messages: compare the msg/s, or run --messages ${JAVA_MESSAGES})`);
  return lines.join('\n');
}

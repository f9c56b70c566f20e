// Exercise 5.6: agree on a heartbeat with the broker
// Text: chapters/05-consumers/README.md   Check: npm run check 5.6   Hint: npm run hint 5.6
//
// connectWithHeartbeat(url, seconds?) must:
//   1. open a connection to `url` that asks the broker for a heartbeat of `seconds` (whole seconds),
//   2. when `seconds` is undefined, state no preference, so that the broker's proposal applies,
//   3. listen for 'error' on the connection (a lost connection arrives as one: a missed heartbeat,
//      a reset), and return the connection, open: the caller closes it.
import amqp, { type ChannelModel } from 'amqplib';
import { pathToFileURL } from 'node:url';

export async function connectWithHeartbeat(url: string, seconds?: number): Promise<ChannelModel> {
  const target = new URL(url);
  // amqplib takes the heartbeat from the URL (?heartbeat=30) or from a URL object, in seconds.
  // Not from the second argument of connect(): those are socket options, and it ignores the key there.
  // Leaving it out means "no preference". 0 would switch heartbeats off (amqplib 2.x).
  if (seconds !== undefined) target.searchParams.set('heartbeat', String(seconds));
  const connection = await amqp.connect(target.href);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`)); // e.g. "Heartbeat timeout"
  return connection;
}

// On its own: npx tsx solutions/05-consumers/06-heartbeat.ts 15
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  const connection = await connectWithHeartbeat(process.env.RABBITMQ_URL ?? 'amqp://localhost', seconds);
  try {
    // What was agreed is on the connection (and in the management UI, Connections, column "Heartbeat").
    const agreed = (connection.connection as unknown as { heartbeat: number }).heartbeat;
    console.log(`Asked for ${seconds ?? 'no preference'}, agreed on a heartbeat of ${agreed} s.`);
  } finally {
    await connection.close();
  }
}

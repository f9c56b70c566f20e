// Known-wrong 5.6: heartbeat 0 for "no preference", which amqplib 2.x reads as "heartbeats off".
import amqp, { type ChannelModel } from 'amqplib';

export async function connectWithHeartbeat(url: string, seconds?: number): Promise<ChannelModel> {
  const target = new URL(url);
  // amqplib takes the heartbeat from the URL (?heartbeat=30) or from a URL object, in seconds.
  // Not from the second argument of connect(): those are socket options, and it ignores the key there.
  // Leaving it out means "no preference". 0 would switch heartbeats off (amqplib 2.x).
  target.searchParams.set('heartbeat', String(seconds ?? 0)); // 0 = let the broker decide (amqplib 0.x/1.x)
  const connection = await amqp.connect(target.href);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`)); // e.g. "Heartbeat timeout"
  return connection;
}

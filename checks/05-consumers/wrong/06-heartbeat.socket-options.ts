// Known-wrong 5.6: the heartbeat passed in connect()'s second argument, the socket options, where amqplib ignores it.
import amqp, { type ChannelModel } from 'amqplib';

export async function connectWithHeartbeat(url: string, seconds?: number): Promise<ChannelModel> {
  const options = { heartbeat: seconds, noDelay: true }; // read as socket options: heartbeat is ignored
  const connection = await amqp.connect(url, options);
  connection.on('error', (err) => console.error(`connection error: ${err.message}`)); // e.g. "Heartbeat timeout"
  return connection;
}

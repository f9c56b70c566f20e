// Known-wrong 4.2: waits for a 'return' event, which never comes when the message was routed.
import amqp from 'amqplib';
import { once } from 'node:events';

export type Outcome = 'routed' | 'returned';

export async function publishOrReport(url: string, exchange: string, routingKey: string, text: string): Promise<Outcome> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const returned = once(channel, 'return');
    channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, mandatory: true, contentType: 'text/plain' });
    await returned;
    return 'returned';
  } finally {
    await connection.close();
  }
}

// Known-wrong 4.2: takes publish()'s return value for the routing result (it only says whether the write buffer has room).
import amqp from 'amqplib';

export type Outcome = 'routed' | 'returned';

export async function publishOrReport(url: string, exchange: string, routingKey: string, text: string): Promise<Outcome> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const ok = channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, mandatory: true, contentType: 'text/plain' });
    await channel.waitForConfirms();
    return ok ? 'routed' : 'returned';
  } finally {
    await connection.close();
  }
}

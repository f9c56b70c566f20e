// Known-wrong 4.2: no mandatory flag: the broker drops an unroutable message silently, and still acks it.
import amqp from 'amqplib';

export type Outcome = 'routed' | 'returned';

export async function publishOrReport(url: string, exchange: string, routingKey: string, text: string): Promise<Outcome> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    let returned = false;
    channel.on('return', () => {
      returned = true;
    });
    channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, contentType: 'text/plain' });
    await channel.waitForConfirms();
    return returned ? 'returned' : 'routed';
  } finally {
    await connection.close();
  }
}

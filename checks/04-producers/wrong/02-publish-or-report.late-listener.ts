// Known-wrong 4.2: starts listening for 'return' only after the confirm, when the return has already gone by.
import amqp from 'amqplib';

export type Outcome = 'routed' | 'returned';

export async function publishOrReport(url: string, exchange: string, routingKey: string, text: string): Promise<Outcome> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    channel.publish(exchange, routingKey, Buffer.from(text), { persistent: true, mandatory: true, contentType: 'text/plain' });
    await channel.waitForConfirms();
    let returned = false;
    channel.on('return', () => {
      returned = true;
    });
    return returned ? 'returned' : 'routed';
  } finally {
    await connection.close();
  }
}

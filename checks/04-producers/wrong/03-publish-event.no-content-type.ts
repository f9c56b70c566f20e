// Known-wrong 4.3: no contentType and no contentEncoding: consumers must guess what the bytes are.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';

export interface DomainEvent {
  type: string; // e.g. "order.created": also the routing key
  schemaVersion: number;
  data: Record<string, unknown>;
}

export const APP_ID = 'order-service';

export async function publishEvent(url: string, exchange: string, event: DomainEvent): Promise<string> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    const messageId = randomUUID(); // lets consumers recognise a message they have already handled
    channel.publish(exchange, event.type, Buffer.from(JSON.stringify(event.data), 'utf8'), {
      persistent: true,
      messageId,
      timestamp: Math.floor(Date.now() / 1000), // AMQP timestamps are seconds, Date.now() is milliseconds
      type: event.type,
      appId: APP_ID,
      headers: { 'schema-version': event.schemaVersion },
    });
    await channel.waitForConfirms();
    return messageId;
  } finally {
    await connection.close();
  }
}

// Known-wrong 2.3: publishes JSON without a content type.
import amqp from 'amqplib';

export async function sendJson(url: string, queue: string, value: unknown): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // JSON.stringify, then UTF-8 bytes: "São Paulo" arrives as "São Paulo".
    const body = Buffer.from(JSON.stringify(value), 'utf8');
    channel.sendToQueue(queue, body, { persistent: true });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

export interface ReceivedMessage {
  content: Buffer;
  properties: { contentType?: string };
}

export function readJson(message: ReceivedMessage): unknown {
  const type = message.properties.contentType;
  if (type !== 'application/json') {
    throw new Error(`expected content type application/json, got ${type ?? 'none'}`);
  }
  try {
    return JSON.parse(message.content.toString('utf8'));
  } catch (err) {
    throw new Error(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

// Exercise 4.3: a JSON event that says what it is
// Text: chapters/04-producers/README.md   Check: npm run check 4.3   Hint: npm run hint 4.3
//
// publishEvent(url, exchange, event) must:
//   1. publish the JSON of `event.data` to `exchange`, with `event.type` as the routing key,
//      encoded as UTF-8 (names like "São Paulo" must arrive intact),
//   2. set contentType 'application/json' and contentEncoding 'utf-8',
//   3. set messageId to a fresh UUID for every message, and resolve with it,
//   4. set timestamp to the time of publishing in SECONDS since 1970 (the AMQP timestamp is in seconds),
//   5. set type to event.type and appId to 'order-service',
//   6. send event.schemaVersion, as a number, in a header named 'schema-version',
//   7. publish it as persistent on a confirm channel, resolve once the broker has confirmed
//      it, and reject when the broker refuses it (a nack),
//   8. not declare `exchange`, which already exists: when it does not, reject,
//   9. close the connection it opened, also when something failed, without crashing on the
//      channel's 'error' event.
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

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
    // Publishing to an exchange that does not exist closes the channel: the wait for the
    // confirm rejects ("channel closed"), and the channel emits 'error', which crashes the
    // process when nobody listens to it.
    channel.on('error', () => {});
    // TODO 1: const messageId = randomUUID()
    // TODO 2: channel.publish(exchange, event.type, <the JSON of event.data as a UTF-8 Buffer>, { … }) with
    //         persistent, contentType, contentEncoding, messageId, timestamp (in seconds!), type, appId
    //         and headers: { 'schema-version': event.schemaVersion }
    // TODO 3: await channel.waitForConfirms(), then return messageId
    throw new Error('TODO: publish the event in exercises/04-producers/03-publish-event.ts');
  } finally {
    await connection.close();
  }
}

// On its own: npx tsx exercises/04-producers/03-publish-event.ts
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.RABBITMQ_URL ?? 'amqp://localhost';
  // The exercise's setup: a topic exchange "events" and a queue "audit" that receives everything.
  const setup = await amqp.connect(url);
  const ch = await setup.createChannel();
  await ch.assertExchange('events', 'topic', { durable: true });
  await ch.assertQueue('audit', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue('audit', 'events', '#');
  await setup.close();
  const id = await publishEvent(url, 'events', { type: 'order.created', schemaVersion: 1, data: { orderId: 'A-1042', city: 'São Paulo' } });
  console.log(`Published order.created as message ${id}: see it in the queue "audit" (management UI, Get messages).`);
}

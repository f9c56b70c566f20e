// Check 4.3: publishEvent() sends UTF-8 JSON with the properties a consumer needs to
// read it without guessing: contentType, contentEncoding, a unique messageId, a
// timestamp in seconds, type, appId, a schema-version header, persistent.
import { isDeepStrictEqual } from 'node:util';
import type { GetMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/03-publish-event.js';

export default defineCheck<typeof Exercise>(async (t) => {
  const exchange = 'events';
  const queue = 'audit';
  const ch = await t.channel();
  await ch.assertExchange(exchange, 'topic', { durable: true });
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue(queue, exchange, '#');
  await ch.close();
  t.log(`declared the topic exchange "${exchange}" and the queue "${queue}" bound with "#" (it sees every event)`);

  // Names outside ASCII catch encoding mistakes.
  const events: Exercise.DomainEvent[] = [
    { type: 'order.created', schemaVersion: 2, data: { orderId: 'A-1042', customer: 'Ana Conceição', city: 'São Paulo', total: 129.9, items: [{ sku: 'TEA-01', name: 'Chá verde', qty: 2 }] } },
    { type: 'order.shipped', schemaVersion: 2, data: { orderId: 'A-1042', warehouse: 'Zürich', carrier: 'Post CH' } },
  ];
  const ids: string[] = [];
  for (const event of events) {
    const nowSeconds = Date.now() / 1000;
    const id = await t.call(`publishEvent(url, "${exchange}", { type: "${event.type}", … })`, () => t.target.publishEvent(t.url, exchange, event));
    await t.expectConnectionsClosed('publishEvent()');
    const [m] = await t.takeMessages(queue, 1);
    if (!m) {
      t.fail({
        summary: `publishEvent() returned, but no message reached the queue "${queue}" (bound to "${exchange}" with "#").`,
        expected: '1 message',
        saw: 'an empty queue',
        fix: `channel.publish('${exchange}', event.type, body, { … }) on a confirm channel, then await channel.waitForConfirms() before closing.`,
        link: t.ui('queues', queue),
      });
    }
    judge(m, event, id, nowSeconds);
    ids.push(String(id));
  }
  if (ids[0] === ids[1]) {
    t.fail({
      summary: `Both events were published with the same messageId (${ids[0]}).`,
      expected: 'a fresh UUID for every message',
      saw: `${ids[0]} twice`,
      why: 'A consumer that remembers the ids it has handled (to skip a redelivered duplicate) would throw the second event away as a duplicate.',
      fix: 'Call randomUUID() inside publishEvent(), once per message, not once when the module loads.',
    });
  }

  function judge(m: GetMessage, event: Exercise.DomainEvent, returned: unknown, nowSeconds: number): void {
    const p = m.properties;
    const text = m.content.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      t.fail({
        summary: `The body of the "${event.type}" message is not JSON: ${JSON.stringify(text.slice(0, 60))}.`,
        expected: JSON.stringify(event.data).slice(0, 80) + '…',
        saw: JSON.stringify(text.slice(0, 80)),
        why: text.startsWith('[object') ? 'String(object) gives "[object Object]": the data itself never left your program.' : 'A consumer will JSON.parse the body, and fail.',
        fix: "Buffer.from(JSON.stringify(event.data), 'utf8')",
      });
    }
    if (!isDeepStrictEqual(parsed, event.data)) {
      const mangled = text.includes('\uFFFD');
      t.fail({
        summary: mangled
          ? `The body of the "${event.type}" message is not UTF-8: non-ASCII letters ("São Paulo", "Zürich") arrive broken.`
          : `The body of the "${event.type}" message is not the JSON of event.data.`,
        expected: JSON.stringify(event.data),
        saw: text,
        why: mangled ? 'The message says contentEncoding utf-8, but the bytes were written in another encoding. Every consumer decoding UTF-8 sees garbage in names and addresses.' : 'The consumer gets different data from what was published.',
        fix: "Buffer.from(JSON.stringify(event.data), 'utf8') (Buffer.from(string) without an encoding is UTF-8 too).",
      });
    }
    if (p.contentType !== 'application/json' || !/^utf-?8$/i.test(String(p.contentEncoding ?? ''))) {
      t.fail({
        summary: `The "${event.type}" message does not say what its body is: contentType ${JSON.stringify(p.contentType)}, contentEncoding ${JSON.stringify(p.contentEncoding)}.`,
        expected: "contentType 'application/json', contentEncoding 'utf-8'",
        saw: `contentType ${JSON.stringify(p.contentType)}, contentEncoding ${JSON.stringify(p.contentEncoding)}`,
        why: 'Bytes are just bytes. Consumers (and the management UI) rely on these two properties to decode the body instead of guessing.',
        fix: "Pass { contentType: 'application/json', contentEncoding: 'utf-8' } to publish().",
      });
    }
    if (typeof p.messageId !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(p.messageId)) {
      t.fail({
        summary: `The "${event.type}" message has no UUID as its messageId (${JSON.stringify(p.messageId)}).`,
        expected: 'messageId: randomUUID()',
        saw: JSON.stringify(p.messageId),
        why: 'The messageId is how a consumer recognises a message it has already processed, when the broker delivers it again.',
        fix: "import { randomUUID } from 'node:crypto'; and pass { messageId: randomUUID() }.",
      });
    }
    if (returned !== p.messageId) {
      t.fail({
        summary: `publishEvent() resolved with ${JSON.stringify(returned)}, but the message's messageId is ${JSON.stringify(p.messageId)}.`,
        expected: 'the messageId of the published message',
        saw: JSON.stringify(returned),
        fix: 'Make the UUID once, put it in the message, and return that same value.',
      });
    }
    const ts = Number(p.timestamp);
    if (!Number.isFinite(ts) || Math.abs(ts - nowSeconds) > 600) {
      const inMs = Number.isFinite(ts) && Math.abs(ts / 1000 - nowSeconds) < 600;
      t.fail({
        summary: inMs
          ? `The timestamp of the "${event.type}" message is in milliseconds (${ts}); AMQP timestamps are seconds.`
          : `The timestamp of the "${event.type}" message is not the time of publishing (${JSON.stringify(p.timestamp)}).`,
        expected: `about ${Math.floor(nowSeconds)} (seconds since 1970)`,
        saw: String(p.timestamp),
        why: inMs
          ? `Every other client (Java, Python, the management UI) reads it as seconds: ${ts} seconds is in the year ${Math.floor(1970 + ts / 31_557_600).toLocaleString('en-US')}.`
          : 'Consumers use the timestamp to see how old an event is.',
        fix: 'timestamp: Math.floor(Date.now() / 1000)',
      });
    }
    if (p.type !== event.type || p.appId !== 'order-service') {
      t.fail({
        summary: `The "${event.type}" message has type ${JSON.stringify(p.type)} and appId ${JSON.stringify(p.appId)}.`,
        expected: `type "${event.type}", appId "order-service"`,
        saw: `type ${JSON.stringify(p.type)}, appId ${JSON.stringify(p.appId)}`,
        why: 'type tells a consumer what kind of event this is without parsing the body; appId tells an operator who sent it.',
        fix: "Pass { type: event.type, appId: APP_ID } to publish().",
      });
    }
    const version = (p.headers ?? {})['schema-version'];
    if (version !== event.schemaVersion) {
      t.fail({
        summary: `The "${event.type}" message's header "schema-version" is ${JSON.stringify(version)}, not ${event.schemaVersion}.`,
        expected: `headers: { 'schema-version': ${event.schemaVersion} }`,
        saw: `headers: ${JSON.stringify(p.headers ?? {})}`,
        why: 'When the shape of the data changes, consumers read the version from a header to know how to parse the body.',
        fix: "headers: { 'schema-version': event.schemaVersion }",
      });
    }
    if (m.fields.routingKey !== event.type) {
      t.fail({ summary: `The "${event.type}" message was published with the routing key "${m.fields.routingKey}".`, expected: event.type, saw: m.fields.routingKey, fix: 'Use event.type as the routing key.' });
    }
    if (p.deliveryMode !== 2) {
      t.fail({ summary: `The "${event.type}" message was not published as persistent.`, expected: 'persistent: true', saw: `deliveryMode ${p.deliveryMode ?? 'not set'}`, fix: 'Add persistent: true to the options.' });
    }
  }
});

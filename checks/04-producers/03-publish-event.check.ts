// Check 4.3: publishEvent() sends UTF-8 JSON with the properties a consumer needs to
// read it without guessing: contentType, contentEncoding, a unique messageId (also its
// result), a timestamp in seconds, type, appId, a numeric schema-version header, persistent,
// through the exchange with the event's type as key. It waits for the confirm, rejects when
// the broker refuses the event (a nack) and when the exchange does not exist, without
// declaring it, and closes its connection every time. Its module is loaded with the clock
// 3 hours back (as if the service had been running that long): a timestamp taken at load
// time, instead of when publishing, shows.
import { isDeepStrictEqual } from 'node:util';
import type { GetMessage } from 'amqplib';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/04-producers/03-publish-event.js';
import { confirmWindows, expectClosed, expectClosedAfter, expectMissingExchangeHandled, refuseNewMessages, settle, type ConfirmReport } from './support.js';

// The worker imports this check, then the code under check: until the check starts, the
// clock reads 3 hours earlier (Date.now() and new Date(); nothing else is changed).
const RealDate = Date;
const LOADED_EARLIER_MS = 3 * 3600 * 1000;
globalThis.Date = new Proxy(RealDate, {
  construct: (target, args, newTarget) => Reflect.construct(target, args.length === 0 ? [RealDate.now() - LOADED_EARLIER_MS] : args, newTarget),
  get: (target, prop, receiver) => (prop === 'now' ? () => RealDate.now() - LOADED_EARLIER_MS : Reflect.get(target, prop, receiver)),
});

export default defineCheck<typeof Exercise>(async (t) => {
  // Only while the module under check loaded.
  globalThis.Date = RealDate;
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
  t.log('loaded your module with the clock set 3 hours back, as if your service had started 3 hours before it publishes (contract line 4)');
  t.provoke([1, 2, 3, 4, 5, 6, 7, 9], `called publishEvent() for ${events.length} events whose data holds names that are not ASCII`);
  for (const event of events) {
    const before = Date.now() / 1000;
    confirmWindows.reset();
    const id = await t.call(`publishEvent(url, "${exchange}", { type: "${event.type}", … })`, () => t.target.publishEvent(t.url, exchange, event));
    const window = confirmWindows.report();
    const after = Date.now() / 1000;
    await expectClosed(t, 'publishEvent()');
    expectConfirmed(window);
    const held = await t.takeMessages(queue, 3);
    const m = held[0];
    if (held.length > 1) {
      t.fail({
        summary: `publishEvent() was called once, but ${held.length} messages reached the queue "${queue}".`,
        expected: '1 message per event',
        saw: `${held.length} messages`,
        fix: 'Publish exactly once per call.',
        link: t.ui('queues', queue),
      });
    }
    if (!m) {
      t.fail({
        summary: `publishEvent() returned, but no message reached the queue "${queue}" (bound to "${exchange}" with "#").`,
        expected: '1 message',
        saw: 'an empty queue',
        fix: `channel.publish('${exchange}', event.type, body, { … }) on a confirm channel, then await channel.waitForConfirms() before closing.`,
        link: t.ui('queues', queue),
      });
    }
    judge(m, event, id, before, after);
    ids.push(String(id));
  }
  t.observe([1, 2, 3, 4, 5, 6], 'took each event from "audit": its body, routing key, properties and headers');
  t.observe(7, "read each message's delivery mode, and amqplib's confirm bookkeeping: confirmed before publishEvent() resolved");
  if (ids[0] === ids[1]) {
    t.fail({
      summary: `Both events were published with the same messageId (${ids[0]}).`,
      expected: 'a fresh UUID for every message',
      saw: `${ids[0]} twice`,
      why: 'A consumer that remembers the ids it has handled (to skip a redelivered duplicate) would throw the second event away as a duplicate.',
      fix: 'Call randomUUID() inside publishEvent(), once per message, not once when the module loads.',
    });
  }

  t.observe(3, 'compared the two messageIds');
  t.observe(9, 'saw no connection left open after each call');

  // The broker refuses the next event.
  // Over its limit, a quorum queue refuses every new message.
  if (!(await refuseNewMessages(t, queue, 'over'))) throw new Error(`the broker kept accepting messages on "${queue}" despite the max-length policy; the check cannot judge`);
  const before = await t.messageCount(queue);
  t.provoke([7, 9], `filled "${queue}" past a policy of max-length 0 with overflow reject-publish: the broker will refuse (nack) the next event routed to it`);
  const refused = await settle(t, `publishEvent(url, "${exchange}", { type: "order.cancelled", … }) while "${queue}" is full`, () =>
    t.target.publishEvent(t.url, exchange, { type: 'order.cancelled', schemaVersion: 2, data: { orderId: 'A-1042' } }),
  2500);
  if ((await t.messageCount(queue)) > before) throw new Error('the broker accepted the event despite the max-length policy; the check cannot judge');
  if (!refused.rejected) {
    t.fail({
      summary: `The broker refused the event (it sent a nack: "${queue}" is full), but publishEvent() resolved with ${JSON.stringify(refused.value)}.`,
      expected: 'publishEvent() rejects',
      saw: `publishEvent() resolved with ${JSON.stringify(refused.value)}`,
      why: 'A nack means the broker did not take the event: no consumer will ever see it. A caller that gets a messageId back believes it was published.',
      fix: 'await channel.waitForConfirms(), which rejects on a nack, and let the rejection reach the caller.',
      link: t.ui('queues', queue),
    });
  }
  await expectClosedAfter(t, 'publishEvent()', 'when the broker refused the event');
  t.observe([7, 9], 'saw publishEvent() reject on the nack and leave no connection open');

  // The exchange does not exist.
  await expectMissingExchangeHandled(t, {
    declareLine: 8,
    closeLine: 9,
    name: 'publishEvent()',
    exchange: 'domain-events',
    call: () => t.target.publishEvent(t.url, 'domain-events', { type: 'order.created', schemaVersion: 2, data: { orderId: 'A-1043' } }),
  });

  /** Line 7: on a confirm channel, confirmed before the function resolved. */
  function expectConfirmed(window: ConfirmReport): void {
    if (!window.seen) {
      t.note("The checker could not see amqplib's confirm bookkeeping (another client library, or its internals changed): the confirm channel was not checked.");
      return;
    }
    if (window.confirmChannels === 0) {
      t.fail({
        summary: 'publishEvent() published on a plain channel, not on a confirm channel.',
        expected: 'connection.createConfirmChannel()',
        saw: `${window.channels} channel(s) opened with createChannel()`,
        why: 'On a plain channel the broker never says whether it took the event: a refused or lost event looks exactly like a published one, and its messageId is returned all the same.',
        fix: 'const channel = await connection.createConfirmChannel(); … await channel.waitForConfirms();',
      });
    }
    if (window.unconfirmed > 0) {
      t.fail({
        summary: 'publishEvent() resolved while its event was still waiting for its confirm.',
        expected: 'the confirm before publishEvent() resolves',
        saw: 'the connection closed before the broker answered',
        why: 'Until the broker confirms the event it may still refuse it, or lose it with the connection.',
        fix: 'await channel.waitForConfirms() before returning the messageId.',
      });
    }
  }

  function judge(m: GetMessage, event: Exercise.DomainEvent, returned: unknown, before: number, after: number): void {
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
    // Rounded either way, and a second of slack for a clock read a moment before or after.
    if (!Number.isFinite(ts) || ts < Math.floor(before) - 1 || ts > Math.ceil(after) + 1) {
      const nowSeconds = (before + after) / 2;
      const inMs = Number.isFinite(ts) && Math.abs(ts / 1000 - nowSeconds) < 600;
      // Within a minute of the clock the module was loaded with (3 hours back): taken at load time.
      const atLoad = Number.isFinite(ts) && Math.abs(ts - (nowSeconds - LOADED_EARLIER_MS / 1000)) < 60;
      t.fail({
        summary: inMs
          ? `The timestamp of the "${event.type}" message is in milliseconds (${ts}); AMQP timestamps are seconds.`
          : atLoad
            ? `The timestamp of the "${event.type}" message is the time your module was loaded, 3 hours before it was published (${ts}).`
            : `The timestamp of the "${event.type}" message is not the time of publishing (${JSON.stringify(p.timestamp)}).`,
        expected: `${Math.floor(before)} to ${Math.ceil(after)} (seconds since 1970, when publishEvent() ran)`,
        saw: atLoad ? `${ts}: the clock when your module was loaded (the checker loaded it with its clock 3 hours back)` : String(p.timestamp),
        why: inMs
          ? `Every other client (Java, Python, the management UI) reads it as seconds: ${ts} seconds is in the year ${Math.floor(1970 + ts / 31_557_600).toLocaleString('en-US')}.`
          : atLoad
            ? 'A value computed at the top of the file (a constant, a default options object) is computed once, when the service starts, and never again: in a service that runs for days, every event says it was published at start-up. Consumers use the timestamp to see how old an event is.'
            : Number.isFinite(ts)
              ? `That is ${Math.round(ts - nowSeconds).toLocaleString('en-US')} s away from the moment it was published. Consumers use the timestamp to see how old an event is.`
              : 'Consumers use the timestamp to see how old an event is.',
        fix: atLoad ? 'Read the clock inside publishEvent(), for every message: timestamp: Math.floor(Date.now() / 1000)' : 'timestamp: Math.floor(Date.now() / 1000)',
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
    if (typeof version === 'string' && version === String(event.schemaVersion)) {
      t.fail({
        summary: `The "${event.type}" message's header "schema-version" is the string ${JSON.stringify(version)}, not the number ${event.schemaVersion}.`,
        expected: `headers: { 'schema-version': ${event.schemaVersion} } (a number)`,
        saw: `headers: ${shownHeaders(p.headers)}`,
        why: `AMQP headers keep their type. A consumer that compares the version with a number (version === ${event.schemaVersion}, or version >= 2) never matches a string, and a headers exchange binding on 'schema-version': ${event.schemaVersion} does not route it.`,
        fix: "headers: { 'schema-version': event.schemaVersion }, without String() or a template literal",
      });
    }
    if (version !== event.schemaVersion) {
      t.fail({
        summary: `The "${event.type}" message's header "schema-version" is ${JSON.stringify(version)}, not ${event.schemaVersion}.`,
        expected: `headers: { 'schema-version': ${event.schemaVersion} }`,
        saw: `headers: ${shownHeaders(p.headers)}`,
        why: 'When the shape of the data changes, consumers read the version from a header to know how to parse the body.',
        fix: "headers: { 'schema-version': event.schemaVersion }",
      });
    }
    if (m.fields.exchange !== exchange || m.fields.routingKey !== event.type) {
      t.fail({
        summary: `The "${event.type}" message was published to ${m.fields.exchange ? `"${m.fields.exchange}"` : 'the default exchange'} with the routing key "${m.fields.routingKey}".`,
        expected: `exchange "${exchange}", routing key "${event.type}"`,
        saw: `exchange "${m.fields.exchange}", routing key "${m.fields.routingKey}"`,
        why: 'Consumers bind their queues to the exchange with patterns on the event type: another exchange, or another key, and they never see the event.',
        fix: "channel.publish(exchange, event.type, body, { … })",
      });
    }
    if (p.deliveryMode !== 2) {
      t.fail({ summary: `The "${event.type}" message was not published as persistent.`, expected: 'persistent: true', saw: `deliveryMode ${p.deliveryMode ?? 'not set'}`, fix: 'Add persistent: true to the options.' });
    }
  }
});

/** The headers the publisher set: without the ones the broker adds (x-delivery-count on a quorum queue). */
function shownHeaders(headers: Record<string, unknown> | undefined): string {
  return JSON.stringify(Object.fromEntries(Object.entries(headers ?? {}).filter(([k]) => k !== 'x-delivery-count')));
}

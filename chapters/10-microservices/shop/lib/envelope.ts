// The shop's event envelope: what every service publishes and how it reads what it consumes.
// The body is the event's data as JSON; everything about the event travels in AMQP properties,
// where the broker, the management UI and every client library can see it without parsing.
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage, GetMessage, Options } from 'amqplib';

/** The topic exchange every event goes through; the routing key is the event's type. */
export const SHOP_EXCHANGE = 'shop';

export interface ShopEvent<T = Record<string, unknown>> {
  /** What happened, e.g. 'order.placed'; also the routing key. */
  type: string;
  data: T;
  /** A new uuid per event: what consumers de-duplicate on. */
  messageId: string;
  /** The order id: every event of one order shares it. */
  correlationId: string;
  /** The messageId of the event that caused this one (absent on the first event of an order). */
  causationId?: string;
  /** The service that emitted it (AMQP appId). */
  producer: string;
  at?: Date;
}

/** An event that cannot be handled: not JSON, or without the ids every event carries. */
export class MalformedEvent extends Error {
  override name = 'MalformedEvent';
}

// #region new-event
/** A new event of `producer`, in the order (correlation) and caused by the message `cause` names. */
export function newEvent<T>(producer: string, type: string, data: T, cause: { correlationId: string; causationId?: string }): ShopEvent<T> {
  return { type, data, messageId: randomUUID(), correlationId: cause.correlationId, causationId: cause.causationId, producer, at: new Date() };
}

/** What channel.publish(SHOP_EXCHANGE, …) needs for one event. */
export function publishArgs(ev: ShopEvent<unknown>): { routingKey: string; content: Buffer; options: Options.Publish } {
  return {
    routingKey: ev.type,
    content: Buffer.from(JSON.stringify(ev.data)),
    options: {
      persistent: true,
      contentType: 'application/json',
      messageId: ev.messageId,
      correlationId: ev.correlationId,
      type: ev.type,
      appId: ev.producer,
      timestamp: Math.floor((ev.at ?? new Date()).getTime() / 1000),
      headers: ev.causationId ? { 'causation-id': ev.causationId } : {},
    },
  };
}
// #endregion

/** The event a message carries; throws MalformedEvent when it is not one. */
export function readEvent(msg: ConsumeMessage | GetMessage): ShopEvent {
  const p = msg.properties;
  if (typeof p.messageId !== 'string' || p.messageId === '') throw new MalformedEvent('no messageId');
  if (typeof p.correlationId !== 'string' || p.correlationId === '') throw new MalformedEvent(`${p.messageId}: no correlationId`);
  let data: unknown;
  try {
    data = JSON.parse(msg.content.toString('utf8'));
  } catch {
    throw new MalformedEvent(`${p.messageId}: the body is not JSON`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new MalformedEvent(`${p.messageId}: the body is not a JSON object`);
  const causation = p.headers?.['causation-id'];
  return {
    type: typeof p.type === 'string' && p.type !== '' ? p.type : msg.fields.routingKey,
    data: data as Record<string, unknown>,
    messageId: p.messageId,
    correlationId: p.correlationId,
    causationId: typeof causation === 'string' ? causation : undefined,
    producer: typeof p.appId === 'string' ? p.appId : 'unknown',
    at: typeof p.timestamp === 'number' ? new Date(p.timestamp * 1000) : undefined,
  };
}

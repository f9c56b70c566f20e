// Check 10.4's world: the participants the orchestrator commands (inventory, payments, shipping),
// played by the checker. Each keeps what it did per order, the way the real services keep rows,
// and is idempotent: a command repeated (a time-out's retry) does nothing twice and answers the
// same again. A script per order decides what goes wrong: out of stock, a declined card, a
// service that is down, replies lost, duplicated, or held back until the checker lets them go.
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { SHOP_EXCHANGE, newEvent, publishArgs, readEvent, type ShopEvent } from '../../chapters/10-microservices/shop/lib/envelope.js';

export const COMMAND_TYPES = ['inventory.reserve', 'inventory.release', 'payment.charge', 'payment.refund', 'shipping.schedule'] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];

/** The participants' own queue: bound to the command keys only. */
export const PARTICIPANTS_QUEUE = 'checker.participants';

export interface Order {
  /** A letter, for the verdicts: "order E". */
  label: string;
  /** What the checker does to this order, in words. */
  story: string;
  orderId: string;
  customerId: string;
  items: { sku: string; qty: number }[];
  amountCents: number;
  card: string;
  outOfStock?: boolean;
  /** The first N replies to this command are lost (the work is done, the reply never arrives); 'all': every one. */
  lose?: Partial<Record<CommandType, number | 'all'>>;
  /** The service is down for this order's command: no work, no reply. */
  down?: CommandType;
  /** The reply to this command waits until release() (the checker restarts the orchestrator meanwhile). */
  hold?: CommandType;
  /** Every reply goes out three times: once more as the same message, once more republished (a new messageId). */
  duplicate?: boolean;
  /** Before answering the shipping command, a copy of the old 'stock.reserved' arrives (late, out of order). */
  stale?: boolean;
}

export const DECLINED_CARD = '4000000000000002';

export function order(label: string, story: string, extra: Partial<Order> = {}): Order {
  return {
    label,
    story,
    orderId: randomUUID(),
    customerId: `customer-${label.toLowerCase()}`,
    items: [{ sku: `sku-${label.toLowerCase()}`, qty: 2 }],
    amountCents: 1000 + label.charCodeAt(0),
    card: '4242424242424242',
    ...extra,
  };
}

/** A command as the participants received it. */
export interface Received {
  type: string;
  orderId: string;
  ev: ShopEvent;
  /** When it arrived (ms since the epoch). */
  at: number;
  /** What is wrong with it, if anything (a missing field, a correlationId that is not the order's). */
  problem?: string;
}

/** What the participants hold for one order: their "databases". */
export interface Holdings {
  reservation?: 'held' | 'released';
  payment?: 'captured' | 'declined' | 'refunded';
  shipment?: boolean;
}

export class Participants {
  readonly received: Received[] = [];
  readonly holdings = new Map<string, Holdings>();
  /** Replies the participants sent (their messageIds), per order. */
  readonly replies: ShopEvent[] = [];
  private readonly orders = new Map<string, Order>();
  private readonly lost = new Map<string, number>();
  private readonly held = new Map<string, ShopEvent[]>();
  private readonly released = new Set<string>();
  private readonly staleSent = new Set<string>();

  constructor(private readonly pub: ConfirmChannel) {}

  add(o: Order): void {
    this.orders.set(o.orderId, o);
    this.holdings.set(o.orderId, {});
  }

  /** Starts consuming the commands (the queue is the checker's, bound before the orchestrator starts). */
  async listen(ch: Channel): Promise<void> {
    await ch.consume(PARTICIPANTS_QUEUE, (msg) => {
      if (!msg) return;
      void this.onCommand(msg).finally(() => ch.ack(msg));
    });
  }

  commands(o: Order, type?: CommandType): Received[] {
    return this.received.filter((r) => r.orderId === o.orderId && (type === undefined || r.type === type));
  }

  /** The reply held back for `o` goes out now. */
  async release(o: Order): Promise<number> {
    this.released.add(o.orderId);
    const held = this.held.get(o.orderId) ?? [];
    this.held.delete(o.orderId);
    for (const ev of held) await this.send(ev);
    return held.length;
  }

  /** Publishes a reply (or any event) to the shop exchange and waits for the broker's confirm. */
  async send(ev: ShopEvent): Promise<void> {
    const { routingKey, content, options } = publishArgs(ev);
    this.pub.publish(SHOP_EXCHANGE, routingKey, content, options);
    await this.pub.waitForConfirms();
  }

  /** A reply as a participant sends it: the order's correlationId, caused by the command. */
  reply(producer: string, type: string, data: Record<string, unknown>, cause: { correlationId: string; causationId?: string }): ShopEvent {
    return newEvent(producer, type, data, cause);
  }

  private async onCommand(msg: ConsumeMessage): Promise<void> {
    let ev: ShopEvent;
    try {
      ev = readEvent(msg);
    } catch (err) {
      this.received.push({ type: msg.fields.routingKey, orderId: '?', ev: undefined as unknown as ShopEvent, at: Date.now(), problem: (err as Error).message });
      return;
    }
    const type = msg.fields.routingKey;
    const data = ev.data as Record<string, unknown>;
    const orderId = typeof data.orderId === 'string' ? data.orderId : ev.correlationId;
    const o = this.orders.get(orderId);
    const got: Received = { type, orderId, ev, at: Date.now() };
    got.problem = o ? problemOf(type, ev, o) : `a command for an order nobody placed (${orderId})`;
    this.received.push(got);
    if (!o || got.problem) return;
    if (o.down === type) return; // the service is down: nothing done, nothing answered

    const h = this.holdings.get(orderId)!;
    const cause = { correlationId: orderId, causationId: ev.messageId };
    let answer: ShopEvent;
    switch (type as CommandType) {
      case 'inventory.reserve':
        if (o.outOfStock || h.reservation === 'released') {
          answer = this.reply('inventory', 'stock.rejected', { orderId, sku: o.items[0]!.sku }, cause);
        } else {
          h.reservation = 'held';
          answer = this.reply('inventory', 'stock.reserved', { orderId, items: o.items }, cause);
        }
        break;
      case 'inventory.release':
        h.reservation = 'released'; // also when nothing was held: a late reserve then reserves nothing
        answer = this.reply('inventory', 'stock.released', { orderId }, cause);
        break;
      case 'payment.charge':
        h.payment ??= o.card === DECLINED_CARD ? 'declined' : 'captured';
        answer =
          h.payment === 'captured'
            ? this.reply('payments', 'payment.captured', { orderId, paymentId: `pay-${orderId}`, amountCents: o.amountCents }, cause)
            : this.reply('payments', 'payment.declined', { orderId, reason: h.payment === 'declined' ? 'card declined' : 'refunded already' }, cause);
        break;
      case 'payment.refund':
        h.payment = h.payment === 'declined' ? 'declined' : 'refunded'; // nothing captured: a late charge then charges nothing
        answer = this.reply('payments', 'payment.refunded', { orderId }, cause);
        break;
      case 'shipping.schedule': {
        const old = this.replies.find((r) => r.correlationId === orderId && r.type === 'stock.reserved');
        if (o.stale && old && !this.staleSent.has(orderId)) {
          this.staleSent.add(orderId);
          await this.send({ ...old, messageId: randomUUID() }); // a copy that took the long way
        }
        h.shipment = true;
        answer = this.reply('shipping', 'shipment.scheduled', { orderId, shipmentId: `ship-${orderId}` }, cause);
        break;
      }
    }
    const key = `${orderId} ${type}`;
    const lose = o.lose?.[type as CommandType];
    const lostSoFar = this.lost.get(key) ?? 0;
    if (lose === 'all' || (lose !== undefined && lostSoFar < lose)) {
      this.lost.set(key, lostSoFar + 1);
      return; // the work is done; the reply is lost on its way
    }
    if (o.hold === type && !this.released.has(orderId)) {
      this.held.set(orderId, [...(this.held.get(orderId) ?? []), answer]);
      return;
    }
    this.replies.push(answer);
    await this.send(answer);
    if (o.duplicate) {
      await this.send(answer); // the same message twice: the inbox drops it
      await this.send({ ...answer, messageId: randomUUID() }); // republished: a new messageId, the same reply
    }
  }
}

/** What a participant needs in each command, and the ids every event of the order carries. */
function problemOf(type: string, ev: ShopEvent, o: Order): string | undefined {
  const data = ev.data as Record<string, unknown>;
  if (ev.correlationId !== o.orderId) return `its correlationId is ${JSON.stringify(ev.correlationId)}, not the order id`;
  if (ev.type !== type) return `its type property is ${JSON.stringify(ev.type)}, not "${type}"`;
  if (ev.producer !== 'orchestrator') return `its appId is ${JSON.stringify(ev.producer)}, not "orchestrator" (the service that sent it)`;
  if (data.orderId !== o.orderId) return `its data.orderId is ${JSON.stringify(data.orderId)}, not the order id`;
  if ((type === 'inventory.reserve' || type === 'shipping.schedule') && !isDeepStrictEqual(data.items, o.items)) return `its data.items is ${JSON.stringify(data.items)}, not the order's items`;
  if ((type === 'payment.charge' || type === 'payment.refund') && data.amountCents !== o.amountCents) return `its data.amountCents is ${JSON.stringify(data.amountCents)}, not ${o.amountCents}`;
  if (type === 'payment.charge' && data.card !== o.card) return `its data.card is ${JSON.stringify(data.card)}, not the order's card`;
  return undefined;
}

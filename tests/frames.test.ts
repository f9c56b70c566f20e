// The frame reader checks use to see what the code under check told the broker: fed by a real
// socket to a local server, with frames written the way amqplib writes them.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionMark, connectionsSince, consumes, nackedInsteadOfRejected, onSent, sentBy, startReadingFrames, type SentMethod } from '../runner/check/frames.js';

const shortstr = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
function method(channel: number, classId: number, methodId: number, ...args: Buffer[]): Buffer {
  const payload = Buffer.concat([u16(classId), u16(methodId), ...args]);
  return Buffer.concat([Buffer.from([1]), u16(channel), u32(payload.length), payload, Buffer.from([0xce])]);
}
const startOk = (name: string, locale: string) => {
  const props = Buffer.concat([shortstr('connection_name'), Buffer.from('S'), u32(name.length), Buffer.from(name)]);
  return method(0, 10, 11, u32(props.length), props, shortstr('PLAIN'), u32(12), Buffer.from('\0guest\0guest'), shortstr(locale));
};

let server: net.Server;
let port = 0;
beforeAll(async () => {
  startReadingFrames();
  server = net.createServer((s) => s.resume());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function client(...writes: Buffer[]): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.from('AMQP\0\0\x09\x01', 'latin1'));
  for (const w of writes) socket.write(w);
  return socket;
}

describe('the frame reader', () => {
  it('reads declarations, prefetch, consume, answers and the locale, across split writes', async () => {
    const mark = connectionMark();
    const consume = method(1, 60, 20, u16(0), shortstr('jobs'), shortstr('tag-1'), Buffer.from([2]), u32(0));
    const nack = method(1, 60, 120, u64(3), Buffer.from([2]));
    const socket = await client(
      startOk('my service', 'en_US?heartbeat=5'),
      method(1, 50, 10, u16(0), shortstr('jobs'), Buffer.from([2]), u32(0)),
      method(1, 60, 10, u32(0), u16(7), Buffer.from([0])),
      consume.subarray(0, 9), // a frame split across two writes
      Buffer.concat([consume.subarray(9), method(1, 60, 80, u64(1), Buffer.from([0])), method(1, 60, 90, u64(2), Buffer.from([1])), nack]),
      method(1, 60, 120, u64(4), Buffer.from([1])),
    );
    const [c] = connectionsSince(mark);
    expect(c?.locale).toBe('en_US?heartbeat=5');
    expect(c?.sent.map((m) => m.name)).toEqual(['queue.declare', 'basic.qos', 'basic.consume', 'basic.ack', 'basic.reject', 'basic.nack', 'basic.nack']);
    expect(consumes([c!])).toMatchObject([{ consume: { queue: 'jobs', noAck: true }, prefetch: 7, declared: true }]);
    expect(sentBy([c!], 'basic.nack')).toMatchObject([
      { deliveryTag: 3, multiple: false, requeue: true },
      { deliveryTag: 4, multiple: true, requeue: false },
    ]);
    socket.destroy();
  });

  it('reads an exchange declaration, a binding and confirm mode (chapter 8: made again on every connection)', async () => {
    const mark = connectionMark();
    const socket = await client(
      startOk('my service', 'en_US'),
      method(1, 40, 10, u16(0), shortstr('orders'), shortstr('topic'), Buffer.from([2]), u32(0)),
      method(1, 50, 20, u16(0), shortstr('billing'), shortstr('orders'), shortstr('order.created'), Buffer.from([0]), u32(0)),
      method(2, 85, 10, Buffer.from([0])),
    );
    const [c] = connectionsSince(mark);
    expect(c?.sent).toMatchObject([
      { name: 'exchange.declare', exchange: 'orders', exchangeType: 'topic' },
      { name: 'queue.bind', queue: 'billing', exchange: 'orders', routingKey: 'order.created' },
      { name: 'confirm.select', channel: 2 },
    ]);
    socket.destroy();
  });

  it("leaves out the checker's own connection, and tells listeners of each method once written", async () => {
    const mark = connectionMark();
    const seen: string[] = [];
    const stop = onSent((_, m) => seen.push(m.name));
    const checker = await client(startOk('workbook checker', 'en_US'), method(1, 60, 80, u64(1), Buffer.from([0])));
    const learner = await client(startOk('mine', 'en_US'), method(1, 60, 40, u16(0), shortstr(''), shortstr('q'), Buffer.from([0])));
    stop();
    expect(connectionsSince(mark)).toHaveLength(1);
    expect(seen).toEqual(['basic.publish']);
    checker.destroy();
    learner.destroy();
  });
});

describe('the retry rule', () => {
  const m = (name: SentMethod['name'], bits: Partial<SentMethod>): SentMethod => ({ at: 0, channel: 1, name, deliveryTag: 1, ...bits });
  it('names a nack with requeue, and one without, where the rule is a reject', () => {
    expect(nackedInsteadOfRejected([m('basic.reject', { requeue: true }), m('basic.nack', { multiple: true, requeue: false })], 'When it failed')).toBeUndefined();
    const retried = nackedInsteadOfRejected([m('basic.nack', { multiple: false, requeue: true })], 'When it failed');
    expect(retried?.summary).toMatch(/^When it failed, your code answered with channel\.nack\(msg\) instead of channel\.reject\(msg, true\)/);
    expect(retried?.why).toMatch(/4\.3/);
    const dropped = nackedInsteadOfRejected([m('basic.nack', { multiple: false, requeue: false })], { retried: 'When it failed', dropped: 'When it was bad' });
    expect(dropped?.summary).toMatch(/^When it was bad, .*instead of channel\.reject\(msg, false\)/);
  });
});

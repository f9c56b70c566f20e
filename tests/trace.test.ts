// The message-flow trace of a failed check: frames decoded into events (capped), two flows
// compared, the sequence diagram escaped; then a known-wrong variant of 2.1 through the
// runner, the reference solution beside it, and the web reader's page for the two.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { capFlow, decodeChunks, MAX_EVENTS, stepsAsNotes, type FlowEvent } from '../runner/check/flow.js';
import { collapse, firstDifference, renderSequence } from '../runner/web/sequence.js';
import { tracePage } from '../runner/web/trace-page.js';
import { loadManifest } from '../runner/manifest/load.js';
import { jobFor, runCheck } from '../runner/check/run.js';
import { runReference, traceFailedCheck } from '../runner/check/trace.js';
import { startWebServer } from '../runner/web/server.js';

const shortstr = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
const frame = (type: number, channel: number, payload: Buffer) => {
  const head = Buffer.alloc(7);
  head[0] = type;
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([0xce])]);
};
const method = (cls: number, id: number, args: Buffer) => frame(1, 1, Buffer.concat([u16(cls), u16(id), args]));
const publish = (key: string) => method(60, 40, Buffer.concat([u16(0), shortstr(''), shortstr(key), Buffer.from([0])]));
/** A content header with only properties.messageId set, then the body. */
const content = (body: string, messageId: string) => {
  const header = Buffer.concat([u16(60), u16(0), u64(Buffer.byteLength(body)), u16(1 << 7), shortstr(messageId)]);
  return Buffer.concat([frame(2, 1, header), frame(3, 1, Buffer.from(body))]);
};
const deliver = (tag: number, key: string) => method(60, 60, Buffer.concat([shortstr('ctag'), u64(tag), Buffer.from([0]), shortstr(''), shortstr(key)]));
const ev = (dir: 'out' | 'in', m: string, fields?: FlowEvent['fields']): FlowEvent => ({ t: 0, conn: 1, channel: 1, dir, method: m, fields });

describe('recording a flow', () => {
  it('decodes frames split across chunks, with the message id and the start of the body', () => {
    const out = Buffer.concat([Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'), publish('orders'), content('x'.repeat(100), 'm-1')]);
    const events = decodeChunks(
      [
        { at: 1010, dir: 'out', data: out.subarray(0, 20) },
        { at: 1020, dir: 'out', data: out.subarray(20) },
        { at: 1030, dir: 'in', data: Buffer.concat([deliver(7, 'orders'), content('{"id":1}', 'm-1')]) },
      ],
      2,
      1000,
    );
    expect(events).toEqual([
      { t: 20, conn: 2, channel: 1, dir: 'out', method: 'basic.publish', fields: { exchange: '', routingKey: 'orders' }, messageId: 'm-1', body: `${'x'.repeat(60)}…` },
      { t: 30, conn: 2, channel: 1, dir: 'in', method: 'basic.deliver', fields: { tag: 7, exchange: '', routingKey: 'orders' }, messageId: 'm-1', body: '{"id":1}' },
    ]);
  });

  it(`keeps at most ${MAX_EVENTS} events, and says how many it left out`, () => {
    const data = Buffer.concat(Array.from({ length: 2500 }, () => publish('loop')));
    const flow = capFlow(decodeChunks([{ at: 0, dir: 'out', data }], 1, 0));
    expect(flow.events).toHaveLength(MAX_EVENTS);
    expect(flow.truncated).toBe(500);
    expect(capFlow([], MAX_EVENTS, true).truncated).toBe(true); // the byte budget ran out
  });
});

describe("the checker's steps", () => {
  it("puts the checker's steps on the flow's time scale", () => {
    const since = Date.parse('2026-01-02T23:59:59.000Z');
    expect(stepsAsNotes(['23:59:59.250 published 3 messages', '00:00:00.500 closed your connection', 'no time'], since)).toEqual([
      { t: 250, text: 'published 3 messages' },
      { t: 1500, text: 'closed your connection' },
    ]);
  });
});

describe('comparing two flows', () => {
  const reference = [ev('out', 'confirm.select'), ev('out', 'queue.declare', { queue: 'hello' }), ev('out', 'basic.publish', { exchange: '', routingKey: 'hello' }), ev('in', 'basic.ack', { tag: 1 })];

  it('finds where the methods part, ignoring delivery tags and times', () => {
    const learner = [reference[0]!, reference[2]!, reference[3]!, reference[1]!];
    expect(firstDifference(learner, reference)).toEqual({ learner: 1, reference: 1, kind: 'methods' });
    const sameButTags = reference.map((e) => ({ ...e, t: e.t + 500, fields: e.fields?.tag ? { tag: 9 } : e.fields }));
    expect(firstDifference(sameButTags, reference)).toBeUndefined();
    expect(firstDifference(reference.slice(0, 3), reference)).toEqual({ learner: 3, reference: 3, kind: 'methods' });
  });

  it('falls back to the arguments when the methods are the same', () => {
    const learner = reference.map((e) => (e.method === 'basic.publish' ? { ...e, fields: { exchange: '', routingKey: 'helo' } } : e));
    expect(firstDifference(learner, reference)).toEqual({ learner: 2, reference: 2, kind: 'arguments' });
  });

  it('collapses repeats in a row into one arrow with the tags it spans', () => {
    const rows = collapse(Array.from({ length: 120 }, (_, i) => ev('in', 'basic.deliver', { tag: i + 1 })));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ count: 120, tags: [1, 120] });
    // Not merged: the same method with other arguments.
    expect(collapse(['email', 'sms'].map((queue) => ev('out', 'queue.declare', { queue })))).toHaveLength(2);
    expect(renderSequence({ events: rows.map((r) => r.event) }, 't')).toContain('basic.deliver');
    expect(renderSequence({ events: Array.from({ length: 120 }, (_, i) => ev('in', 'basic.deliver', { tag: i + 1 })) }, 't')).toContain('basic.deliver ×120 · tags 1–120');
  });
});

describe('the sequence diagram', () => {
  it('escapes every text from the code under check or the broker, control characters included', () => {
    const hostile = '<script>alert("x")</script>&';
    const svg = renderSequence(
      {
        events: [{ ...ev('out', 'basic.publish', { exchange: hostile, routingKey: "'><img src=x onerror=alert(1)>" }), messageId: hostile, body: `a\u0000b\u001b[31m${hostile}` }, { ...ev('in', 'channel.close', { code: 404, text: hostile }), conn: 2 }],
        notes: [{ t: 0, text: `published ${hostile}` }],
      },
      hostile,
    );
    expect(svg).not.toMatch(/<script|<img|\u0000|\u001b/);
    expect(svg).toContain('&lt;script&gt;');
    expect(svg).toContain('\\u0000');
    // Only the diagram's own elements.
    expect(new Set(svg.match(/<[a-z]+/g))).toEqual(new Set(['<svg', '<defs', '<marker', '<path', '<line', '<text', '<g', '<title']));
    expect(svg).toContain('class="arrow in failed"');
  });
});

describe('the trace of a failed check, through the runner and the web reader', () => {
  const broker = inject('broker');
  const dir = mkdtempSync(path.join(tmpdir(), 'workbook-traces-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('records the flow of a known-wrong variant of 2.1 and of the reference solution, and draws both', { timeout: 90_000 }, async () => {
    const exercise = loadManifest().exercise('2.1')!;
    const verdict = await runCheck(jobFor(exercise, 'wrong', 'publish-before-declare'), broker, { recordFlow: 'failed' });
    expect(verdict.status).toBe('failed');
    const trace = await traceFailedCheck(exercise, verdict, broker, (e) => runReference(e, broker), dir);
    expect(verdict.flow).toBeUndefined(); // taken off the verdict, not for the terminal nor --json
    const methods = (events: FlowEvent[] = []) => events.filter((e) => e.conn === 1).map((e) => `${e.dir} ${e.method}`);
    // The mistake, as the flows show it: the publish goes out before the queue is declared.
    expect(methods(trace!.learner.flow?.events)).toEqual(['out confirm.select', 'out basic.publish', 'in basic.ack', 'out queue.declare', 'out connection.close']);
    expect(trace!.reference).toMatchObject({ state: 'done', status: 'passed' });
    const reference = trace!.reference.state === 'done' ? trace!.reference.flow! : { events: [] };
    expect(methods(reference.events).indexOf('out queue.declare')).toBeLessThan(methods(reference.events).indexOf('out basic.publish'));

    // A passing check returns no flow: the recording costs it nothing but the copies.
    const passed = await runCheck(jobFor(exercise, 'solution'), broker, { recordFlow: 'failed' });
    expect(passed.status).toBe('passed');
    expect(passed.flow).toBeUndefined();

    const web = await startWebServer({ port: 0, broker, tracesDir: dir });
    try {
      const page = await fetch(`${web.url}/trace/2.1`);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html.match(/<svg[^>]*class="sequence"/g)).toHaveLength(2);
      expect(html).toContain('First difference');
      expect(html.match(/class="difference"/g)).toHaveLength(2);
      const chapter = await (await fetch(`${web.url}/chapters/2`)).text();
      expect(chapter).toContain('href="/trace/2.1"');
      expect((await fetch(`${web.url}/trace/..%2F..%2Fetc`)).status).toBe(404);
    } finally {
      await web.close();
    }
    // A page for an exercise without a trace says how one comes.
    expect(tracePage(loadManifest().exercise('2.3')!, undefined)).toContain('No trace yet');
  });
});

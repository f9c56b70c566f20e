// The web reader's parts without a browser or a broker: the graph read from management API
// data, the SVG (escaped), the live poll that stops when nobody listens, the chapter links.
import { describe, expect, it } from 'vitest';
import type { BindingInfo, ExchangeInfo, QueueInfo } from '../runner/broker/management.js';
import { chapterLink, slug } from '../runner/web/chapter-html.js';
import { renderDiagram } from '../runner/web/diagram.js';
import { LiveTopology } from '../runner/web/live.js';
import { resolveExercise } from '../runner/web/sources.js';
import { buildTopology, policyFor, type PolicyInfo, type RawTopology } from '../runner/web/topology.js';

const exchange = (name: string, type = 'direct', args: Record<string, unknown> = {}): ExchangeInfo => ({ name, type, durable: true, auto_delete: false, internal: false, arguments: args });
const queue = (name: string, extra: Partial<QueueInfo> = {}): QueueInfo => ({ name, vhost: 'v', durable: true, auto_delete: false, exclusive: false, arguments: {}, ...extra });
const binding = (source: string, destination: string, key: string, type: 'queue' | 'exchange' = 'queue', args: Record<string, unknown> = {}): BindingInfo => ({ source, destination, destination_type: type, routing_key: key, arguments: args, vhost: 'v' });
const raw = (r: Partial<RawTopology>): RawTopology => ({ vhost: 'v', exchanges: [], queues: [], bindings: [], policies: [], ...r });
const edgesOf = (r: RawTopology) => buildTopology(r).edges.map((e) => `${e.kind} ${e.from} -> ${e.to}: ${e.label}`);

describe('the topology of a vhost', () => {
  it('draws bindings with their keys, and leaves out the default exchange and unused amq.* exchanges', () => {
    const t = buildTopology(raw({
      exchanges: [exchange(''), exchange('amq.direct'), exchange('amq.topic', 'topic'), exchange('logs'), exchange('forms', 'headers')],
      queues: [queue('errors', { messages_ready: 4, messages_unacknowledged: 1, consumers: 2, type: 'quorum' })],
      bindings: [binding('', 'errors', 'errors'), binding('logs', 'errors', 'error'), binding('amq.topic', 'errors', '#'), binding('forms', 'errors', '', 'queue', { 'x-match': 'all', format: 'pdf' })],
    }));
    expect(t.nodes.map((n) => n.id).sort()).toEqual(['q:errors', 'x:amq.topic', 'x:forms', 'x:logs']);
    expect(t.edges.map((e) => e.label)).toEqual(['"error"', '"#"', 'x-match=all, format=pdf']);
    expect(t.nodes.find((n) => n.id === 'q:errors')!.detail).toEqual(['quorum · ready 4 · unacked 1', 'consumers 2']);
    expect(t.queues).toEqual([{ name: 'errors', type: 'quorum', ready: 4, unacked: 1, consumers: 2 }]);
  });

  it('takes dead-lettering from a policy (effective_policy_definition), and a queue argument over the policy, key by key', () => {
    const policy = { 'dead-letter-exchange': 'from-policy', 'dead-letter-routing-key': 'policy-key' };
    const r = raw({
      exchanges: [exchange('from-policy'), exchange('from-arg')],
      queues: [
        queue('by-policy', { policy: 'dlx', effective_policy_definition: policy }),
        queue('by-argument', { policy: 'dlx', effective_policy_definition: policy, arguments: { 'x-dead-letter-exchange': 'from-arg' } }),
        queue('to-default', { arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'parking' } }),
        queue('parking'),
        queue('to-nowhere', { arguments: { 'x-dead-letter-exchange': 'never-declared' } }),
      ],
    });
    expect(edgesOf(r)).toEqual([
      'dead-letter q:by-policy -> x:from-policy: dead letters (policy dlx) key "policy-key"',
      'dead-letter q:by-argument -> x:from-arg: dead letters (argument) key "policy-key"',
      'dead-letter q:to-default -> q:parking: dead letters (argument) via the default exchange key "parking"',
      'dead-letter q:to-nowhere -> x:never-declared: dead letters (argument)',
    ]);
    expect(buildTopology(r).nodes.find((n) => n.id === 'x:never-declared')).toMatchObject({ kind: 'missing', detail: ['does not exist', 'dead letters are dropped'] });
  });

  it('draws alternate exchanges (argument or policy) and exchange-to-exchange bindings', () => {
    const policies: PolicyInfo[] = [
      { name: 'ae-low', pattern: '^shop', 'apply-to': 'exchanges', priority: 0, definition: { 'alternate-exchange': 'low' } },
      { name: 'ae-high', pattern: '^shop$', 'apply-to': 'all', priority: 5, definition: { 'alternate-exchange': 'lost' } },
      { name: 'queues-only', pattern: '.*', 'apply-to': 'queues', priority: 9, definition: { 'alternate-exchange': 'wrong' } },
    ];
    const r = raw({
      exchanges: [exchange('shop', 'topic'), exchange('lost', 'fanout'), exchange('payments', 'topic', { 'alternate-exchange': 'lost' }), exchange('billing', 'fanout')],
      bindings: [binding('shop', 'billing', 'order.#', 'exchange'), binding('billing', 'amq.fanout', '', 'exchange')],
      policies,
    });
    expect(policyFor(policies, 'shop', 'exchanges')).toEqual({ 'alternate-exchange': 'lost' });
    expect(edgesOf(r)).toEqual([
      'binding x:shop -> x:billing: "order.#"',
      'binding x:billing -> x:amq.fanout: ',
      'alternate x:shop -> x:lost: unroutable (policy)',
      'alternate x:payments -> x:lost: unroutable (argument)',
    ]);
  });

  it('escapes names and keys from the broker in the SVG', () => {
    const hostile = '<script>alert(1)</script>';
    const svg = renderDiagram(buildTopology(raw({ exchanges: [exchange(`x"${hostile}`)], queues: [queue(hostile)], bindings: [binding(`x"${hostile}`, hostile, `'&${hostile}`)] })));
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(svg).toContain('data-id="x:x&quot;&lt;script&gt;');
    expect(svg).toContain('&quot;&#39;&amp;&lt;script&gt;');
  });

  it('says so when a vhost holds nothing of its own', () => {
    expect(renderDiagram(buildTopology(raw({ exchanges: [exchange(''), exchange('amq.direct')] })))).toContain('holds no exchanges or queues of its own');
  });
});

describe('following an exercise', () => {
  it("shows a running check's sandbox first, then the one a failed check kept", () => {
    const kept = { '3.5': 'wb-ab12-100-1-3.5-exercise' };
    const vhosts = ['/', 'wb-ab12-100-1-3.5-exercise', 'wb-ab12-200-3-3.5-solution', 'wb-ab12-200-4-3.51-exercise'];
    expect(resolveExercise('3.5', vhosts, kept)).toEqual({ vhost: 'wb-ab12-100-1-3.5-exercise', note: 'kept by your last failed check of 3.5' });
    expect(resolveExercise('3.5', [...vhosts, 'wb-ab12-300-1-3.5-exercise'], kept)).toEqual({ vhost: 'wb-ab12-300-1-3.5-exercise', note: 'a check of 3.5 is running' });
    expect(resolveExercise('3.5', ['/'], kept).vhost).toBeUndefined();
    expect(resolveExercise('3.51', vhosts, {}).vhost).toBe('wb-ab12-200-4-3.51-exercise');
  });
});

describe('the live poll', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('polls only while a page listens, and sends a snapshot only when it changed', async () => {
    let reads = 0;
    let value = 'a';
    const live = new LiveTopology(async () => {
      reads++;
      return value;
    }, 20);
    const first: string[] = [];
    const second: string[] = [];
    const stopFirst = live.subscribe('v', (s) => first.push(s));
    // Waits for reads, never for a fixed time: a busy machine may be slow, never wrong.
    await expect.poll(() => reads).toBeGreaterThan(2);
    expect(first).toEqual(['a']); // polled several times, sent once
    const stopSecond = live.subscribe('v', (s) => second.push(s));
    expect(second).toEqual(['a']); // a new page gets the current snapshot at once
    value = 'b';
    await expect.poll(() => first).toEqual(['a', 'b']);
    expect(second).toEqual(['a', 'b']);
    stopFirst();
    expect(live.polling()).toEqual(['v']);
    stopSecond();
    expect(live.polling()).toEqual([]);
    const after = reads;
    await sleep(100);
    expect(reads).toBeLessThanOrEqual(after + 1); // at most the read already under way
  });
});

describe('chapter pages', () => {
  it('links chapters to the reader and anchors headings as GitHub does', () => {
    expect(chapterLink('../02-hello-world/README.md#troubleshooting')).toBe('/chapters/2#troubleshooting');
    expect(chapterLink('chapters/13-capstone/README.md')).toBe('/chapters/13');
    expect(chapterLink('https://www.rabbitmq.com/docs/dlx')).toBe('https://www.rabbitmq.com/docs/dlx');
    expect(slug('Exercise 3.1: Route log lines by severity')).toBe('exercise-31-route-log-lines-by-severity');
  });
});

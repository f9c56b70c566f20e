// Helpers for chapter 3's checks: the broker's topology as the management API shows it
// (immediate), and a routing matrix that proves what the exchanges really do: it publishes
// one tagged message per case through the checker's confirm channel, then reads every
// queue of the sandbox vhost and compares where each message went with where it belongs.
// Generic enough for the runner: routeMatrix, topicMatches, headersMatch.
import type { CheckContext } from '../../runner/check/context.js';
import type { GetMessage } from 'amqplib';
import type { BindingInfo } from '../../runner/broker/management.js';

type Ctx = CheckContext<unknown>;

// ---- topology (expectExchange and expectQuorumQueue live in runner/check/topology.ts) ----

/** Bindings whose source is `exchange` (to queues and to exchanges). */
export async function bindingsFrom(t: Ctx, exchange: string): Promise<BindingInfo[]> {
  return (await t.mgmt.bindings(t.vhost)).filter((b) => b.source === exchange);
}

// ---- how each exchange type matches, as RabbitMQ does it ----------------------------

/**
 * Topic matching: words are separated by dots, `*` is exactly one word, `#` is zero or
 * more words. The empty key has no words (so `#` matches it and `*` does not).
 */
export function topicMatches(pattern: string, key: string): boolean {
  const p = pattern === '' ? [] : pattern.split('.');
  const k = key === '' ? [] : key.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') return match(i + 1, j) || (j < k.length && match(i, j + 1));
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

/** Headers matching: x-match all (the default) or any; keys starting with x- are ignored unless *-with-x. */
export function headersMatch(args: Record<string, unknown>, headers: Record<string, unknown> = {}): boolean {
  const mode = String(args['x-match'] ?? 'all');
  const withX = mode.endsWith('-with-x');
  const conditions = Object.entries(args).filter(([k]) => k !== 'x-match' && (withX || !k.startsWith('x-')));
  const hit = ([k, v]: [string, unknown]) => k in headers && JSON.stringify(headers[k]) === JSON.stringify(v);
  return mode.startsWith('any') ? conditions.some(hit) : conditions.every(hit);
}

/** Whether `binding` (from an exchange of `type`) matches a message with this key and these headers. */
export function bindingMatches(type: string, binding: BindingInfo, key: string, headers?: Record<string, unknown>): boolean {
  switch (type) {
    case 'fanout':
      return true;
    case 'direct':
      return binding.routing_key === key;
    case 'topic':
      return topicMatches(binding.routing_key, key);
    case 'headers':
      return headersMatch(binding.arguments, headers);
    default:
      return false;
  }
}

/** A binding as a beginner reads it: the key for direct/topic, the arguments for headers. */
export function describeBinding(type: string, b: BindingInfo): string {
  if (type === 'headers') {
    const conditions = Object.keys(b.arguments).filter((k) => k !== 'x-match');
    if (conditions.length === 0) return 'a binding with no header conditions, which matches every message';
    const defaulted = b.arguments['x-match'] === undefined ? ' (no x-match, so RabbitMQ uses all)' : '';
    return `the binding with arguments ${jsLiteral(b.arguments)}${defaulted}`;
  }
  if (type === 'fanout') return `the binding to "${b.destination}" (a fanout exchange ignores its key)`;
  return `the binding "${b.routing_key}"`;
}

/** { 'x-match': 'any', format: 'pdf' }: an object the way it is written in the learner's code. */
export function jsLiteral(o: Record<string, unknown>): string {
  const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `'${k}'`);
  const value = (v: unknown) => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));
  const entries = Object.entries(o);
  return entries.length ? `{ ${entries.map(([k, v]) => `${key(k)}: ${value(v)}`).join(', ')} }` : '{}';
}

// ---- the routing matrix ---------------------------------------------------------------

export interface RouteCase {
  /** Routing key to publish with. */
  key: string;
  /** Message headers (for headers exchanges). */
  headers?: Record<string, unknown>;
  /** The queues this message must reach, and no other. */
  expect: string[];
  /** Why it belongs there (or nowhere), for the verdict, e.g. "two words; eu-orders wants exactly three". */
  because?: string;
}

export interface Mismatch {
  case: RouteCase;
  queue: string;
  kind: 'extra' | 'missing' | 'duplicate';
}

export interface MatrixResult {
  /** Where each case's message ended up, in case order. */
  arrived: string[][];
  /** The copies themselves, in case order (to look at their routing key, exchange, headers...). */
  received: { queue: string; message: GetMessage }[][];
  mismatches: Mismatch[];
}

/** How a case is named in verdicts: its key, or its headers for a headers exchange. */
export function caseLabel(c: RouteCase): string {
  if (c.headers !== undefined) {
    const h = Object.entries(c.headers);
    return h.length ? `with headers ${jsLiteral(c.headers)}` : 'with no headers';
  }
  return c.key === '' ? 'with the empty routing key ""' : `with routing key "${c.key}"`;
}

/**
 * Publishes one message per case to `exchange` (confirmed), then empties every queue of
 * the vhost and reports where each message went. The exchange must exist (check first
 * with expectExchange): publishing to a missing exchange closes the channel.
 */
export async function routeMatrix(t: Ctx, exchange: string, cases: RouteCase[]): Promise<MatrixResult> {
  const tag = `m${Date.now().toString(36)}`;
  const ch = await t.confirmChannel();
  try {
    cases.forEach((c, i) => {
      const body = Buffer.from(JSON.stringify({ case: i + 1, key: c.key, headers: c.headers ?? null }));
      ch.publish(exchange, c.key, body, { persistent: true, contentType: 'application/json', messageId: `${tag}-${i}`, headers: c.headers });
    });
    await ch.waitForConfirms();
  } finally {
    await ch.close().catch(() => undefined);
  }
  const what = cases.every((c) => c.headers !== undefined) ? `${cases.length} messages with different headers` : `${cases.length} messages, routing keys ${cases.map((c) => JSON.stringify(c.key)).join(', ')}`;
  t.log(`published ${what} to the exchange "${exchange}" (the broker confirmed them)`);

  const arrived: string[][] = cases.map(() => []);
  const received: MatrixResult['received'] = cases.map(() => []);
  const queues = (await t.mgmt.queues(t.vhost)).map((q) => q.name);
  for (const q of queues) {
    for (const m of await t.takeMessages(q, 1000)) {
      const id = String(m.properties.messageId ?? '');
      if (!id.startsWith(`${tag}-`)) continue;
      const i = Number(id.slice(tag.length + 1));
      arrived[i]?.push(q);
      received[i]?.push({ queue: q, message: m });
    }
  }
  t.log(`read every queue (${queues.map((q) => `"${q}"`).join(', ') || 'none'}) to see where each message went`);

  const mismatches: Mismatch[] = [];
  cases.forEach((c, i) => {
    const got = arrived[i]!;
    for (const q of c.expect) if (!got.includes(q)) mismatches.push({ case: c, queue: q, kind: 'missing' });
    for (const q of new Set(got)) {
      if (!c.expect.includes(q)) mismatches.push({ case: c, queue: q, kind: 'extra' });
      else if (got.filter((x) => x === q).length > 1) mismatches.push({ case: c, queue: q, kind: 'duplicate' });
    }
  });
  return { arrived, received, mismatches };
}

/** "order.eu → audit, eu-orders; error → (nowhere)" for expected/saw lines. */
export function routeTable(cases: RouteCase[], where: (c: RouteCase, i: number) => string[]): string {
  return cases
    .map((c, i) => {
      const qs = where(c, i);
      const name = c.headers !== undefined ? caseLabel(c).replace(/^with /, '') : JSON.stringify(c.key);
      return `${name} → ${qs.length ? [...qs].sort().join(', ') : '(nowhere)'}`;
    })
    .join('; ');
}

/**
 * Fails on the first mismatch, naming the message, the queue and the binding that
 * caused it (or the bindings that failed to match), with the whole matrix as
 * expected/saw. `advice(queue)` is the fix for that queue's bindings.
 */
export async function expectRoutes(
  t: Ctx,
  exchange: string,
  cases: RouteCase[],
  advice: (queue: string, m: Mismatch) => string,
): Promise<MatrixResult> {
  const result = await routeMatrix(t, exchange, cases);
  if (result.mismatches.length === 0) return result;
  return failOnMismatch(t, exchange, cases, result, advice);
}

/** The failure expectRoutes reports, for checks that look at some mismatches themselves first. */
export async function failOnMismatch(
  t: Ctx,
  exchange: string,
  cases: RouteCase[],
  result: MatrixResult,
  advice: (queue: string, m: Mismatch) => string,
): Promise<never> {
  const x = await t.mgmt.exchange(t.vhost, exchange);
  const type = x?.type ?? 'direct';
  const bindings = await bindingsFrom(t, exchange);
  const m = result.mismatches[0]!;
  const label = caseLabel(m.case);
  const toQueue = bindings.filter((b) => b.destination === m.queue && b.destination_type === 'queue');
  // Exchange-to-exchange bindings from `exchange`: the queue may be reached through one of them.
  const via = bindings.filter((b) => b.destination_type === 'exchange');
  const viaMatching = via.filter((b) => bindingMatches(type, b, m.case.key, m.case.headers));
  const describeVia = (bs: BindingInfo[]) => bs.map((b) => `${describeBinding(type, b)} to the exchange "${b.destination}"`).join(', ');
  let summary: string;
  if (m.kind === 'extra') {
    const culprits = toQueue.filter((b) => bindingMatches(type, b, m.case.key, m.case.headers));
    const cause = culprits.length
      ? ` (routed there by ${culprits.map((b) => describeBinding(type, b)).join(' and ')})`
      : viaMatching.length
        ? ` (it came through ${describeVia(viaMatching)})`
        : toQueue.length === 0
          ? ` (it is not bound to "${exchange}" directly: check what else routes to it)`
          : '';
    summary = `The message ${label} reached "${m.queue}", where it does not belong${cause}.`;
  } else if (m.kind === 'missing') {
    const cause = toQueue.length
      ? ` (none of its bindings matches: ${toQueue.map((b) => describeBinding(type, b)).join(', ')})`
      : viaMatching.length
        ? ` (it went on through ${describeVia(viaMatching)}, which did not deliver it to "${m.queue}")`
        : via.length
          ? ` (it is not bound to "${exchange}" itself, and no exchange-to-exchange binding matches: ${describeVia(via)})`
          : ` ("${m.queue}" has no binding from "${exchange}" at all)`;
    summary = `The message ${label} never reached "${m.queue}"${cause}.`;
  } else {
    summary = `The message ${label} arrived in "${m.queue}" more than once.`;
  }
  // Only the messages that went astray, so the two lines are short enough to compare.
  const astray = cases.filter((c) => result.mismatches.some((x) => x.case === c));
  const others = astray.length - 1;
  t.fail({
    summary,
    expected: routeTable(astray, (c) => c.expect),
    saw: routeTable(astray, (c) => result.arrived[cases.indexOf(c)]!),
    why: [m.case.because, others > 0 ? `${others} other message${others === 1 ? '' : 's'} went astray too: compare the two lines above.` : '']
      .filter(Boolean)
      .join(' '),
    fix: advice(m.queue, m),
    link: t.ui('exchanges', exchange),
  });
}

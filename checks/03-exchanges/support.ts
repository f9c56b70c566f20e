// Helpers for chapter 3's checks: the broker's topology as the management API shows it
// (immediate), and a routing matrix that proves what the exchanges really do: it publishes
// one tagged message per case through the checker's confirm channel, then reads every
// queue of the sandbox vhost and compares where each message went with where it belongs.
// Generic enough for the runner: routeMatrix, topicMatches, headersMatch.
// Every setup function of the chapter must also survive the broker refusing a declaration:
// expectRefusedDeclarationHandled makes that happen.
import type { CheckContext } from '../../runner/check/context.js';
import type { ContractRef } from '../../runner/check/contract.js';
import { CheckFailure } from '../../runner/check/verdict.js';
import type { Channel, GetMessage } from 'amqplib';
import type { BindingInfo } from '../../runner/broker/management.js';
import { ReturnWatch } from '../01-messaging-concepts/support.js';

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
 * with expectExchange): publishing to a missing exchange closes the channel. `lines`: the
 * contract lines whose bindings the matrix puts to the test.
 */
export async function routeMatrix(t: Ctx, exchange: string, cases: RouteCase[], lines?: ContractRef | ContractRef[]): Promise<MatrixResult> {
  const tag = `m${Date.now().toString(36)}`;
  const ch = await t.confirmChannel();
  try {
    cases.forEach((c, i) => {
      const body = Buffer.from(JSON.stringify({ case: i + 1, key: c.key, headers: c.headers ?? null }));
      ch.publish(exchange, c.key, body, { persistent: true, contentType: 'application/json', messageId: `${tag}-${i}`, headers: c.headers });
    });
    await ch.waitForConfirms();
  } catch (err) {
    // The exchange exists (the check made sure), so the broker refused it for what it is, e.g. internal.
    const message = t.lastBrokerError?.message ?? (err instanceof Error ? err.message : String(err));
    t.fail({
      summary: /internal exchange/.test(message)
        ? `The exchange "${exchange}" was declared internal, so nobody can publish to it: ${message}`
        : `The checker could not publish to the exchange "${exchange}": ${message}`,
      expected: `an exchange "${exchange}" that publishers can publish to`,
      saw: message,
      why: /internal exchange/.test(message)
        ? 'Applications publish to this exchange, but an internal exchange takes messages only from other exchanges (through exchange-to-exchange bindings), never from a publisher.'
        : 'Applications publish to this exchange: the broker must take what they publish there.',
      fix: `Declare it as the exercise says, without internal: true: channel.assertExchange('${exchange}', <type>, { durable: true })`,
      link: t.ui('exchanges', exchange),
    });
  } finally {
    await ch.close().catch(() => undefined);
  }
  const what = cases.every((c) => c.headers !== undefined) ? `${cases.length} messages with different headers` : `${cases.length} messages, routing keys ${cases.map((c) => JSON.stringify(c.key)).join(', ')}`;
  const published = `published ${what} to the exchange "${exchange}" (the broker confirmed them)`;
  if (lines !== undefined) t.provoke(lines, published);
  else t.log(published);

  const arrived: string[][] = cases.map(() => []);
  const received: MatrixResult['received'] = cases.map(() => []);
  const queues = (await t.mgmt.queues(t.vhost)).map((q) => q.name);
  for (const [q, messages] of await drainQueues(t, queues)) {
    for (const m of messages) {
      const id = String(m.properties.messageId ?? '');
      if (!id.startsWith(`${tag}-`)) continue;
      const i = Number(id.slice(tag.length + 1));
      arrived[i]?.push(q);
      received[i]?.push({ queue: q, message: m });
    }
  }
  const read = `read every queue (${queues.map((q) => `"${q}"`).join(', ') || 'none'}) to see where each message went`;
  if (lines !== undefined) t.observe(lines, read);
  else t.log(read);

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
  lines?: ContractRef | ContractRef[],
): Promise<MatrixResult> {
  const result = await routeMatrix(t, exchange, cases, lines);
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

// ---- reading queues without tripping over what the code under check left ----------------

/**
 * Takes every message off each queue, on one channel. A queue the checker cannot read (an
 * exclusive queue of a connection still open, a stream queue, one deleted meanwhile) ends
 * the check with a verdict that names it, not with a crash.
 */
export async function drainQueues(t: Ctx, queues: string[]): Promise<Map<string, GetMessage[]>> {
  const out = new Map<string, GetMessage[]>();
  let ch: Channel | undefined;
  try {
    for (const q of queues) {
      ch ??= await t.channel();
      const messages: GetMessage[] = [];
      try {
        for (let m = await ch.get(q, { noAck: true }); m; m = await ch.get(q, { noAck: true })) messages.push(m);
      } catch (err) {
        ch = undefined; // the broker closed it
        unreadable(t, q, err);
      }
      out.set(q, messages);
    }
    return out;
  } finally {
    await ch?.close().catch(() => undefined);
  }
}

function unreadable(t: Ctx, queue: string, err: unknown): never {
  // amqplib only says "Channel ended"; the reason is in the close the broker sent.
  const message = t.lastBrokerError?.message ?? (err instanceof Error ? err.message : String(err));
  const why = /RESOURCE_LOCKED|405/.test(message)
    ? 'It is an exclusive queue of a connection that is still open: only that connection may use it.'
    : /NOT_IMPLEMENTED|540|stream/i.test(message)
      ? 'It is a stream queue: a stream is read with a consumer and an offset, never with basic.get, and it keeps its messages.'
      : 'The broker refused to hand out its messages.';
  t.fail({
    summary: `The checker could not read the queue "${queue}": ${message}`,
    expected: `a queue the checker can empty with basic.get, like the durable quorum queues of the exercise`,
    saw: `"${queue}": ${message}`,
    why: `${why} The checker reads every queue of the vhost to see where each message went.`,
    fix: 'Declare only the queues the exercise asks for, as durable quorum queues, and close your connection before returning.',
    link: t.ui('queues', queue),
  });
}

// ---- the broker refuses a declaration ------------------------------------------------------

export interface RefusedDeclaration {
  /** The contract line that promises to close the connection and pass the error on. */
  line: ContractRef;
  /** How the call is shown, e.g. "setupLogRouting(url)". */
  label: string;
  call: () => Promise<unknown>;
  /** An exchange the code under check declares, and the type it declares it with. */
  exchange: string;
  type: string;
}

/**
 * Replaces `exchange` with an exchange of another type, so that the code under check gets
 * 406 PRECONDITION_FAILED when it declares it; then expects its function to reject with
 * that error, without crashing on the channel's 'error' event, and to leave no connection
 * open. Run it last: it leaves the exchange of the wrong type behind.
 */
export async function expectRefusedDeclarationHandled(t: Ctx, o: RefusedDeclaration): Promise<void> {
  const decoy = o.type === 'fanout' ? 'direct' : 'fanout';
  const ch = await t.channel();
  await ch.deleteExchange(o.exchange);
  await ch.assertExchange(o.exchange, decoy, { durable: true });
  await ch.close().catch(() => undefined);
  t.provoke(o.line, `replaced the exchange "${o.exchange}" with a ${decoy} exchange of the same name, so that the broker refuses to declare it as a ${o.type} exchange (406 PRECONDITION_FAILED)`);
  await expectRefusalPassedOn(t, o, {
    while: `"${o.exchange}" exists as a ${decoy} exchange`,
    kind: 'exchange',
    name: o.exchange,
    redeclared: async () => (await t.mgmt.exchange(t.vhost, o.exchange))?.type === o.type,
    now: async () => `"${o.exchange}" is still a ${(await t.mgmt.exchange(t.vhost, o.exchange))?.type ?? 'missing'} exchange`,
    declare: `channel.assertExchange('${o.exchange}', '${o.type}', { durable: true })`,
    brokerError: `406 (PRECONDITION-FAILED) … inequivalent arg 'type' for exchange '${o.exchange}'`,
  });
}

export interface RefusedQueue {
  /** The contract line that promises to close the connection and pass the error on. */
  line: ContractRef;
  /** How the call is shown, e.g. "setupBroadcast(url)". */
  label: string;
  call: () => Promise<unknown>;
  /** A quorum queue the code under check declares. */
  queue: string;
}

/**
 * Replaces the quorum queue `queue` with a classic queue of the same name, so that the code
 * under check gets 406 PRECONDITION_FAILED when it declares it, further into the function
 * than the first declaration; expects the function to reject with that error and to leave
 * no connection open (a try/catch around one step, which logs and goes on, fails here).
 * Then puts the quorum queue back.
 */
export async function expectRefusedQueueHandled(t: Ctx, o: RefusedQueue): Promise<void> {
  const ch = await t.channel();
  await ch.deleteQueue(o.queue);
  await ch.assertQueue(o.queue, { durable: true });
  await ch.close().catch(() => undefined);
  t.provoke(o.line, `replaced the queue "${o.queue}" with a classic queue of the same name, so that the broker refuses to declare it as a quorum queue (406 PRECONDITION_FAILED)`);
  const type = async () => (await t.mgmt.queue(t.vhost, o.queue))?.type ?? 'missing';
  await expectRefusalPassedOn(t, o, {
    while: `"${o.queue}" exists as a classic queue`,
    kind: 'queue',
    name: o.queue,
    redeclared: async () => (await type()) === 'quorum',
    now: async () => `"${o.queue}" is still a ${await type()} queue`,
    declare: `channel.assertQueue('${o.queue}', { durable: true, arguments: { 'x-queue-type': 'quorum' } })`,
    brokerError: `406 (PRECONDITION-FAILED) … inequivalent arg 'x-queue-type' for queue '${o.queue}'`,
  });
  const restore = await t.channel();
  await restore.deleteQueue(o.queue);
  await restore.assertQueue(o.queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await restore.close().catch(() => undefined);
  t.log(`put the quorum queue "${o.queue}" back`);
}

/** The common part: the call rejects with the broker's 406, and leaves no connection open, at once. */
async function expectRefusalPassedOn(
  t: Ctx,
  o: { line: ContractRef; label: string; call: () => Promise<unknown> },
  r: { while: string; kind: 'exchange' | 'queue'; name: string; redeclared: () => Promise<boolean>; now: () => Promise<string>; declare: string; brokerError: string },
): Promise<void> {
  const name = o.label.replace(/\(.*$/, '()');
  const watch = ReturnWatch.for(t);
  const outcome = await t.call(`${o.label}, while ${r.while}`, async () => {
    try {
      await watch.run(o.call);
      return { rejected: false as const };
    } catch (err) {
      return { rejected: true as const, err };
    }
  });
  if (!outcome.rejected) {
    if (await r.redeclared()) {
      t.fail({
        summary: `${name} deleted the existing ${r.kind} "${r.name}" and declared it again, instead of failing when the broker refused the declaration.`,
        expected: `${name} rejects with the broker's error (406 PRECONDITION_FAILED) and leaves "${r.name}" as it found it`,
        saw: `${name} resolved, and "${r.name}" is now a new ${r.kind}`,
        why:
          r.kind === 'exchange'
            ? 'Deleting an exchange also deletes every binding other applications made to it: their queues silently stop receiving messages. An exchange of the wrong type is a mistake a person must look at.'
            : 'Deleting a queue deletes every message waiting in it, and the bindings other applications made to it. A queue declared otherwise is a mistake a person must look at.',
        fix: `Declare it with ${r.declare} and let a refusal reject the call; never delete shared ${r.kind === 'exchange' ? 'exchanges' : 'queues'} in setup code.`,
        link: t.ui(r.kind === 'exchange' ? 'exchanges' : 'queues', r.name),
      });
    }
    t.fail({
      summary: `The broker refused to declare "${r.name}" (406 PRECONDITION_FAILED), but ${name} resolved as if everything were in place.`,
      expected: `${name} rejects with the broker's error`,
      saw: `${name} resolved; ${await r.now()}`,
      why: 'The caller believes the routing is set up, and publishes into a topology that does not exist. An error swallowed in a catch block (or logged and forgotten) hides the one message that says what is wrong.',
      fix: 'Do not catch the error, or rethrow it after logging: try { … } finally { await connection.close(); } closes the connection and passes the error on.',
      link: t.ui(r.kind === 'exchange' ? 'exchanges' : 'queues', r.name),
    });
  }
  const message = outcome.err instanceof Error ? outcome.err.message : String(outcome.err);
  if (!carriesRefusal(outcome.err)) {
    const closedTwice = /channel (is )?closed|IllegalOperationError/i.test(`${message} ${(outcome.err as Error)?.name ?? ''}`);
    t.fail({
      summary: closedTwice
        ? `When the broker refused a declaration, ${name} rejected with "${message}" instead of the broker's error: it closed a channel the broker had already closed.`
        : `When the broker refused a declaration, ${name} rejected with an error that no longer says why: "${message}".`,
      expected: `the broker's error: ${r.brokerError}`,
      saw: `"${message}"`,
      why: closedTwice
        ? 'A refused declaration closes the channel. channel.close() in a finally block then throws "Channel closed", which replaces the broker\'s error, and the lines after it (connection.close()) never run.'
        : 'The broker\'s error is the only place that says what was refused, and why. Replaced by another message, it is lost to whoever reads the logs.',
      fix: closedTwice
        ? 'Close only the connection in finally (it closes its channels): try { … } finally { await connection.close(); }'
        : 'Let the error propagate (or rethrow it, or pass it as { cause: err } when you wrap it).',
    });
  }
  await expectClosedAfterFailure(t, name, 'a declaration');
  watch.expectClosedOnReturn(t, name);
  t.observe(o.line, `saw ${name} reject with the broker's error (${message.slice(0, 60)}…) and leave no connection open`);
}

/**
 * No connection left open by `name` after it rejected because the broker refused `what`
 * ("a declaration", "the message"): t.expectConnectionsClosed, with a verdict that says so.
 */
export async function expectClosedAfterFailure(t: Ctx, name: string, what: string): Promise<void> {
  try {
    await t.expectConnectionsClosed(`${name}, after the broker refused ${what},`);
  } catch (err) {
    if (!(err instanceof CheckFailure)) throw err;
    t.fail({
      ...err.finding,
      summary: `When the broker refused ${what}, ${name} rejected, but left its connection open.`,
      why: 'The code after the refused call never ran, and the connection.close() at the end of the function with it. A service that retries leaks one connection per attempt, until the broker refuses new ones.',
      fix: 'Close the connection in a finally block, so that it also happens when a call rejects: const connection = await amqp.connect(url); try { … } finally { await connection.close(); }',
    });
  }
}

/** Whether an error (or an error it wraps, as `cause`) is the broker's 406 refusal. */
function carriesRefusal(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const text = e instanceof Error ? e.message : String(e);
    if ((e as { code?: unknown }).code === 406 || /PRECONDITION[-_]FAILED/.test(text)) return true;
  }
  return false;
}

// ---- the broker refuses a message ----------------------------------------------------------

/**
 * Makes the broker refuse (nack) every new message routed to `queue`: a policy with
 * max-length 0 and overflow reject-publish. A quorum queue refuses only once it is over its
 * limit, so one message goes in first; a probe then proves the refusal is in force.
 */
export async function refuseNewMessages(t: Ctx, queue: string, lines: ContractRef | ContractRef[]): Promise<void> {
  await t.publish(queue, ['already here: a quorum queue refuses only once it is over its limit']);
  await t.mgmt.setPolicy(t.vhost, 'refuse-new-messages', { pattern: `^${queue}$`, 'apply-to': 'queues', definition: { 'max-length': 0, overflow: 'reject-publish' } });
  await t.waitFor(() => t.brokerRefuses(queue), 3000, 50); // nacked: the policy is in force
  t.provoke(lines, `made the broker refuse new messages on "${queue}" (policy: max-length 0, overflow reject-publish), and saw it nack a message of its own`);
}

// ---- where a message published the wrong way goes ------------------------------------------

/** The checker's catch-all for messages published to an exchange with a key nobody bound. */
export const STRAYS = 'checker-strays';

/**
 * Sets nets for messages published the wrong way, so that a verdict can say how they were
 * published instead of "they vanished": a queue named after each of `keys` (sendToQueue(key)
 * publishes through the default exchange, which routes by queue name), and, by policy, an
 * alternate exchange for `exchange` that hands every message no binding matches to the
 * queue "checker-strays" (a wrong routing key).
 */
export async function catchStrays(t: Ctx, exchange: string, keys: string[]): Promise<void> {
  for (const key of keys) {
    const spy = await t.channel();
    // A queue of that name declared otherwise by the code under check refuses this declaration; it catches the message all the same.
    await spy.assertQueue(key, { durable: true }).catch(() => undefined);
    await spy.close().catch(() => undefined);
  }
  const ch = await t.channel();
  try {
    await ch.assertExchange(STRAYS, 'fanout', { durable: true });
    await ch.assertQueue(STRAYS, { durable: true });
    await ch.bindQueue(STRAYS, STRAYS, '');
  } finally {
    await ch.close().catch(() => undefined);
  }
  await t.mgmt.setPolicy(t.vhost, 'checker-strays', { pattern: `^${exchange}$`, 'apply-to': 'exchanges', definition: { 'alternate-exchange': STRAYS } });
  t.log(`declared the queues ${keys.map((k) => `"${k}"`).join(', ')} and gave "${exchange}" the alternate exchange "${STRAYS}" (by policy), to see where a message published the wrong way goes`);
}

// ---- calling a set-up function --------------------------------------------------------------

/**
 * t.call for a set-up function, with one mistake named before the generic explanation: the
 * queue and the exchange swapped in bindQueue(queue, exchange, key), which the broker reports
 * as a missing queue named like an exchange (or a missing exchange named like a queue). Then
 * expects its connection closed by the time it returned (ReturnWatch).
 */
export async function callSetup(t: Ctx, label: string, fn: () => Promise<unknown>, names: { exchanges: string[]; queues: string[] }): Promise<void> {
  const watch = ReturnWatch.for(t);
  await t.call(label, async () => {
    try {
      await watch.run(fn);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const missingQueue = /NOT[_-]FOUND - no queue '([^']*)'/.exec(message)?.[1];
      const missingExchange = /NOT[_-]FOUND - no exchange '([^']*)'/.exec(message)?.[1];
      const swapped = (missingQueue !== undefined && names.exchanges.includes(missingQueue)) || (missingExchange !== undefined && names.queues.includes(missingExchange));
      if (swapped) {
        t.fail({
          summary: `${label} passed the exchange where bindQueue() takes the queue: the broker looked for ${missingQueue !== undefined ? `a queue named "${missingQueue}"` : `an exchange named "${missingExchange}"`} and found none.`,
          expected: "channel.bindQueue(queue, exchange, key): the queue first",
          saw: message,
          why: 'bindQueue names the receiving end first, then the exchange it receives from. Swapped, the broker looks for a queue named like the exchange (or an exchange named like the queue), refuses the binding (404 NOT_FOUND) and closes the channel.',
          fix: 'channel.bindQueue(queue, exchange, key), e.g. await channel.bindQueue(\'' + (names.queues[0] ?? 'queue') + '\', \'' + (names.exchanges[0] ?? 'exchange') + '\', …)',
        });
      }
      throw err;
    }
  });
  const name = label.replace(/\(.*$/, '()');
  await t.expectConnectionsClosed(name);
  watch.expectClosedOnReturn(t, name);
}

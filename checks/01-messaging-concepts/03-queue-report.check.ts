// Check 1.3: queueReport() reads /api/queues/<vhost> for a vhost whose name holds a "/"
// and a space, and reports the right queues with their total message and consumer counts.
// The checker builds that vhost itself, fills its queues with known numbers (one message
// held unacknowledged by a consumer), waits until the management API's statistics show
// them (they refresh on an interval), then calls queueReport() and compares.
import { isDeepStrictEqual } from 'node:util';
import type { ChannelModel } from 'amqplib';
import { defineCheck, type CheckContext } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/01-messaging-concepts/03-queue-report.js';
import { checkerConnection, recordFetches, type RecordedFetch } from './support.js';

type T = CheckContext<typeof Exercise>;
type Line = Exercise.QueueLine;

// What the checker puts in the second vhost. "orders" has a consumer holding one message unacked.
// Sorted by name, the counts are in no order (neither up nor down), so only a sort by name fits.
const SEED = [
  { name: 'invoices', ready: 1, unacked: 0, consumers: 0 },
  { name: 'orders', ready: 2, unacked: 1, consumers: 1 },
  { name: 'returns', ready: 0, unacked: 0, consumers: 0 },
];
const EXPECTED: Line[] = SEED.map((s) => ({ name: s.name, messages: s.ready + s.unacked, consumers: s.consumers }));
const DECOY = 'payments'; // a queue in the sandbox vhost, which a report of the second vhost must not show
const STATS_WAIT_MS = 20_000;

export default defineCheck<typeof Exercise>(async (t) => {
  const vhost = `${t.vhost}/shop floor/east`;
  await t.mgmt.createVhost(vhost, t.broker.username);
  t.log(`created a second vhost "${vhost}" (its name has two "/" and a space)`);
  let connection: ChannelModel | undefined;
  try {
    // 1. Known numbers. Classic queues: a new quorum queue reports its first counts several seconds later.
    connection = await checkerConnection(t, vhost);
    const ch = await connection.createConfirmChannel();
    for (const s of SEED) {
      await ch.assertQueue(s.name, { durable: true });
      for (let i = 0; i < s.ready + s.unacked; i++) ch.sendToQueue(s.name, Buffer.from(`${s.name} #${i + 1}`), { persistent: true });
    }
    await ch.waitForConfirms();
    const consumer = await connection.createChannel();
    await consumer.prefetch(1);
    await consumer.consume('orders', () => undefined, { noAck: false }); // takes one message and never acks it
    const seeded = Date.now();
    t.log(`filled it: ${SEED.map((s) => `"${s.name}" ${s.ready + s.unacked} message(s)`).join(', ')}; a consumer on "orders" holds 1 of them unacked`);

    const other = await t.channel();
    await other.assertQueue(DECOY, { durable: true });
    await other.close();
    await t.publish(DECOY, ['a payment, in another vhost']);

    // 2. While the statistics catch up: a first call on the sandbox vhost, where only an error is judged
    //    (so a broken function fails in a second, not after the wait). The management URL ends in "/"
    //    already: a URL glued to "/api/…" as it is fails here too.
    const early = await callReport(t, t.vhost, { trailingSlash: true });
    if ('error' in early.outcome) judgeFailure(t, t.vhost, early);

    //    Errors must reach the caller: a vhost that does not exist (404), then a wrong password (401).
    t.provoke(3, 'asked for the report of a vhost that does not exist, then for one with a wrong password');
    for (const probe of [
      { vhost: `${t.vhost}-does-not-exist`, password: t.broker.password, answer: '404 Not Found' },
      { vhost, password: 'not-the-password', answer: '401 Unauthorized' },
    ]) {
      const report = await callReport(t, probe.vhost, { password: probe.password });
      const { outcome, requests } = report;
      // Asked for something else than that vhost's queues: that mistake is the one to name.
      if (!requests.some((r) => r.path === `/api/queues/${encodeURIComponent(probe.vhost)}`)) judgeFailure(t, probe.vhost, report);
      const status = probe.answer.slice(0, 3);
      if (!('error' in outcome) || !(outcome.error instanceof Error) || !outcome.error.message.includes(status)) {
        t.fail({
          summary: `The management API answered ${probe.answer}, but queueReport() ${
            !('error' in outcome) ? `returned ${JSON.stringify(outcome.value)}`
            : !(outcome.error instanceof Error) ? `threw ${JSON.stringify(outcome.error)}, not an Error`
            : `threw an Error that does not name the status: "${outcome.error.message}"`
          }.`,
          expected: `queueReport() throws an Error that names the status (${status}) when the API answers ${probe.answer}`,
          saw: requests.map((r) => `${r.method} ${r.path} → ${r.status ?? r.error}`).join('; ') || 'no fetch() call',
          why: 'fetch() resolves for every HTTP answer, errors included: only a network failure rejects. Code that does not look at the status reports an error page as if it were data, and its caller never learns that the credentials or the vhost are wrong.',
          fix: 'if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`) before response.json(). (Without it, the error body still makes .map() throw a TypeError, which says nothing of the 401 or 404 behind it.)',
        });
      }
    }
    t.observe(3, 'queueReport() threw an Error for the 404 and for the 401');

    // 3. The management API counts on a statistics interval: wait until it shows the seeded numbers.
    const settled = await t.waitFor(async () => {
      const queues = await t.mgmt.queues(vhost);
      return SEED.every((s) => {
        const q = queues.find((x) => x.name === s.name);
        return q && q.messages === s.ready + s.unacked && q.messages_ready === s.ready && q.messages_unacknowledged === s.unacked && q.consumers === s.consumers;
      });
    }, STATS_WAIT_MS, 200);
    if (!settled) {
      const queues = await t.mgmt.queues(vhost);
      if (queues.every((q) => q.messages === undefined)) {
        t.skip(
          "this broker's management API reports no message counts: its metrics collector is disabled (management_agent.disable_metrics_collector = true, the default of the plain rabbitmq Docker image; the -management image turns it back on).",
        );
      }
      throw new Error(`the management API did not show the seeded counts within ${STATS_WAIT_MS / 1000} s: ${JSON.stringify(queues.map((q) => [q.name, q.messages, q.consumers]))}`);
    }
    t.log(`the management API shows those numbers now, ${((Date.now() - seeded) / 1000).toFixed(1)} s after seeding (statistics refresh on an interval)`);

    // 4. The report that counts. The API's answer is handed over out of order: it happens to be
    //    sorted by name, and the report must be sorted whatever order the API answers in.
    t.provoke([1, 2, 4], `asked for the report of "${vhost}" (two "/" and a space in its name) with the right credentials, the management URL ending in "/", and the API's list handed over out of order`);
    const report = await callReport(t, vhost, { reorder: true, trailingSlash: true });
    if (!isDeepStrictEqual(report.outcome.value, EXPECTED)) judgeFailure(t, vhost, report);
    t.observe(1, `your code asked for ${report.requests.map((r) => r.path).join(', ')}`);
    t.observe(2, 'the management API accepted its credentials');
    t.observe(4, `the report is exactly ${JSON.stringify(EXPECTED)}`);
  } finally {
    await connection?.close().catch(() => undefined);
    await t.mgmt.deleteVhost(vhost);
  }
});

interface Report {
  outcome: { value?: unknown; error?: unknown };
  requests: (RecordedFetch & { path: string })[];
}

/** Calls queueReport() for `vhost`, recording what it asked the API; a throw is returned, not raised. */
async function callReport(t: T, vhost: string, opts: { password?: string; reorder?: boolean; trailingSlash?: boolean } = {}): Promise<Report> {
  const { username } = t.broker;
  const password = opts.password ?? t.broker.password;
  const managementUrl = t.broker.managementUrl.replace(/\/+$/, '') + (opts.trailingSlash ? '/' : '');
  const recorder = recordFetches({ reorderLists: opts.reorder });
  try {
    const outcome = await t.call(`queueReport("${managementUrl}", "${username}", "${opts.password ? opts.password : '…'}", "${vhost}")`, async () => {
      try {
        return { value: (await t.target.queueReport(managementUrl, username, password, vhost)) as unknown };
      } catch (error) {
        return { error };
      }
    });
    const requests = recorder.requests.map((r) => ({ ...r, path: pathOf(r.url) }));
    for (const r of requests) t.log(`your code sent ${r.method} ${r.path} → ${r.status ?? r.error}`);
    return { outcome, requests };
  } finally {
    recorder.restore();
  }
}

/** Says what is wrong with a report of `vhost` that is not the expected one (always fails). */
function judgeFailure(t: T, vhost: string, { outcome, requests }: Report): never {
  const expectedPath = `/api/queues/${encodeURIComponent(vhost)}`;
  const sent = requests.length ? requests.map((r) => `${r.method} ${r.path} → ${r.status ?? r.error}`).join('; ') : 'no fetch() call';

  const split = requests.find((r) => r.path.startsWith(`/api/queues/${encodeURIComponent(t.vhost)}/`));
  if (split) {
    t.fail({
      summary: `The vhost name was not URL-encoded: queueReport() asked for ${split.path}, and the API read the "/" inside the name as a path separator.`,
      expected: `GET ${expectedPath}`,
      saw: `${split.method} ${split.path} → ${split.status ?? split.error}${split.status === 404 ? ` (to the API: something under vhost "${t.vhost}", which has no such queue)` : ''}`,
      why: 'In the API\'s URLs each name is exactly one path segment. A "/" in a vhost name (the default vhost is even called "/") must travel as %2F, a space as %20; otherwise the API splits the name and looks up something else.',
      fix: 'Put encodeURIComponent(vhost) in the URL. Not encodeURI(vhost): that one leaves "/" as it is.',
    });
  }
  const doubled = requests.find((r) => r.path.startsWith('//'));
  if (doubled) {
    t.fail({
      summary: `queueReport() asked for ${doubled.path}: the management URL it was given ends with "/", and the URL built from it has "//" before api.`,
      expected: `GET ${expectedPath}`,
      saw: `${doubled.method} ${doubled.path} → ${doubled.status ?? doubled.error}`,
      why: 'A management URL may come with or without a trailing "/" (both are common in configuration). Glued to "/api/…" as it is, the trailing one makes an empty path segment, and the API does not know that path.',
      fix: "Drop the trailing slashes first: managementUrl.replace(/\\/+$/, '') + '/api/queues/' + encodeURIComponent(vhost)",
    });
  }
  // Some "/" encoded, not all: vhost.replace('/', '%2F') replaces the first one only.
  const partly = requests.find((r) => r.path !== expectedPath && r.path.replace(/%2F/gi, '/') === expectedPath.replace(/%2F/gi, '/'));
  if (partly) {
    t.fail({
      summary: `Not every "/" of the vhost name was URL-encoded: queueReport() asked for ${partly.path}.`,
      expected: `GET ${expectedPath}`,
      saw: `${partly.method} ${partly.path} → ${partly.status ?? partly.error}`,
      why: `The vhost "${vhost}" has more than one "/". Every one of them must travel as %2F: a raw "/" is a path separator, so the API reads the rest of the name as a queue. A string's replace('/', '%2F') replaces the first one only.`,
      fix: 'encodeURIComponent(vhost) encodes every "/" (and every space, "%", "?", "#"...): build the URL with it rather than by hand.',
    });
  }
  if (requests.some((r) => r.status === 401)) {
    t.fail({
      summary: 'The management API refused the request: 401 Unauthorized.',
      expected: 'a request with HTTP basic auth for the given user and password',
      saw: sent,
      why: 'The management API wants credentials on every request, in an Authorization header.',
      fix: "fetch(url, { headers: { authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') } })",
    });
  }
  if ('error' in outcome) {
    const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
    const todo = /^TODO/.test(message);
    t.fail({
      summary: `queueReport() threw an error: ${message}`,
      expected: `the report of vhost "${vhost}"`,
      saw: `requests: ${sent}`,
      why: todo ? 'This is still the starter: the TODOs have not been done yet.' : 'The check asked for the report of a vhost that exists.',
      fix: todo ? 'Replace the TODOs; npm run hint 1.3 gives one hint at a time.' : `GET ${t.broker.managementUrl}${expectedPath} with basic auth, check response.ok, and map the JSON array it answers.`,
    });
  }

  const value = outcome.value;
  if (!Array.isArray(value)) {
    t.fail({ summary: 'queueReport() did not return an array.', expected: JSON.stringify(EXPECTED), saw: JSON.stringify(value) ?? String(value), fix: 'Return one { name, messages, consumers } object per queue.' });
  }
  const lines = value as Partial<Line>[];
  const names = lines.map((l) => l?.name);
  const strangers = [...new Set(names.filter((n) => !EXPECTED.some((e) => e.name === n)))].sort((a, b) => Number(b === DECOY) - Number(a === DECOY));
  if (strangers.length || lines.length > EXPECTED.length) {
    const everyVhost = requests.some((r) => /^\/api\/queues\/?$/.test(r.path));
    const shown = strangers.slice(0, 4).map((n) => `"${n}"`).join(', ') + (strangers.length > 4 ? ', …' : '');
    t.fail({
      summary: `queueReport() returned ${lines.length} queues, but vhost "${vhost}" holds ${EXPECTED.length}: the report also lists queues of other vhosts${shown ? ` (${shown})` : ''}.`,
      expected: EXPECTED.map((e) => `"${e.name}"`).join(', '),
      saw: everyVhost ? `${sent}: /api/queues lists the queues of every vhost on the broker` : sent,
      why: `Each vhost is a world of its own. A report of one vhost that mixes in others (here the sandbox vhost's "${DECOY}", and whatever else lives on this broker) counts messages that are not there.`,
      fix: "Ask for that vhost's queues only: GET /api/queues/ + encodeURIComponent(vhost).",
    });
  }
  const missing = EXPECTED.filter((e) => !names.includes(e.name));
  if (missing.length) {
    t.fail({
      summary: `queueReport() left out ${missing.map((m) => `"${m.name}"`).join(', ')}.`,
      expected: EXPECTED.map((e) => `"${e.name}"`).join(', '),
      saw: names.map((n) => `"${n}"`).join(', ') || 'an empty list',
      fix: 'Return one line per queue in the answer, empty queues included.',
    });
  }

  for (const s of SEED) {
    const total = s.ready + s.unacked;
    const line = lines.find((l) => l?.name === s.name)!;
    if (line.messages !== total) {
      const onlyReady = s.unacked > 0 && line.messages === s.ready;
      t.fail({
        summary: onlyReady
          ? `queueReport() counts ${line.messages} messages in "${s.name}", but it holds ${total}: ${s.ready} ready and ${s.unacked} unacknowledged (delivered to its consumer, not acked yet).`
          : `queueReport() counts ${JSON.stringify(line.messages)} messages in "${s.name}"; it holds ${total}.`,
        expected: `messages: ${total} (= messages_ready ${s.ready} + messages_unacknowledged ${s.unacked})`,
        saw: `messages: ${JSON.stringify(line.messages)}`,
        why: onlyReady
          ? 'messages_ready counts only the messages waiting for a consumer. A message a consumer holds without having acked it is still in the queue: if that consumer dies, it comes back. The field messages counts both.'
          : 'The API gives the number of messages of each queue in its field messages (ready + unacknowledged).',
        fix: 'Use the field messages of each queue.',
        link: `${t.broker.managementUrl.replace(/\/+$/, '')}/#/queues`,
      });
    }
    if (line.consumers !== s.consumers) {
      t.fail({
        summary: `queueReport() says "${s.name}" has ${JSON.stringify(line.consumers)} consumers; it has ${s.consumers}.`,
        expected: `consumers: ${s.consumers}`,
        saw: `consumers: ${JSON.stringify(line.consumers)}`,
        fix: 'Use the field consumers of each queue.',
      });
    }
  }
  const keys = [...new Set(lines.flatMap((l) => Object.keys(l ?? {})))];
  const extraKeys = keys.filter((k) => !['name', 'messages', 'consumers'].includes(k));
  if (extraKeys.length) {
    t.fail({
      summary: `queueReport() returns more than name, messages and consumers (also ${extraKeys.slice(0, 5).join(', ')}${extraKeys.length > 5 ? ', …' : ''}).`,
      expected: '{ name, messages, consumers } per queue',
      saw: `keys ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', …' : ''}`,
      why: 'The API answers dozens of fields per queue; the report is the three its caller asked for.',
      fix: 'queues.map((q) => ({ name: q.name, messages: q.messages ?? 0, consumers: q.consumers ?? 0 }))',
    });
  }
  if (!isDeepStrictEqual(names, EXPECTED.map((e) => e.name))) {
    const byField = (['messages', 'consumers'] as const).find((f) => isSortedBy(lines as Line[], f));
    t.fail({
      summary: byField
        ? `queueReport() has the right queues and counts, but sorted by ${byField}, not by name.`
        : 'queueReport() has the right queues and counts, but they are not sorted by name.',
      expected: EXPECTED.map((e) => e.name).join(', '),
      saw: byField ? `${lines.map((l) => `${l.name} (${l[byField]})`).join(', ')}` : names.join(', '),
      why: byField
        ? `The report is sorted by name, so that a reader finds a queue where the alphabet says it is, whatever its numbers. Compare the names: a.name.localeCompare(b.name), not the ${byField}.`
        : 'Do not rely on the order the API happens to answer in.',
      fix: 'Sort the lines: .sort((a, b) => a.name.localeCompare(b.name))',
    });
  }
  t.fail({
    summary: 'queueReport() returned something that is not a plain list of { name, messages, consumers } objects.',
    expected: JSON.stringify(EXPECTED),
    saw: JSON.stringify(value),
    fix: 'Return plain objects: { name: q.name, messages: q.messages, consumers: q.consumers }.',
  });
}

/** Whether the lines are in strict order of `field`, up or down (ties prove nothing). */
function isSortedBy(lines: Line[], field: 'messages' | 'consumers'): boolean {
  const values = lines.map((l) => l[field]);
  const pairs = values.slice(1).map((v, i) => [values[i]!, v] as const);
  return pairs.every(([a, b]) => a < b) || pairs.every(([a, b]) => a > b);
}

function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

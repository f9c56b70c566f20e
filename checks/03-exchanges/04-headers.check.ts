// Check 3.4: publishes print jobs with different header combinations (and meaningless
// routing keys) to the "print-jobs" headers exchange, and checks where each one went; a
// refused declaration makes bindPrintJobs() reject, and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/04-headers.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { bindingsFrom, callSetup, expectRefusedDeclarationHandled, expectRoutes, jsLiteral, type RouteCase } from './support.js';

const EXCHANGE = 'print-jobs';

const ADVICE: Record<string, string> = {
  'eu-pdf':
    "\"eu-pdf\" needs both conditions at once: bind it with the arguments { 'x-match': 'all', format: 'pdf', region: 'eu' }. Binding keys mean nothing to a headers exchange, and a binding without header conditions matches every message.",
  rush: "\"rush\" needs either condition: bind it with { 'x-match': 'any', priority: 'high', customer: 'vip' }. Without x-match, RabbitMQ uses all.",
};

/** The headers each queue's bindings may test. */
const CONDITIONS: Record<string, string[]> = { 'eu-pdf': ['format', 'region'], rush: ['priority', 'customer'] };

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3, 4], 'called bindPrintJobs(url) on an empty vhost');
  await callSetup(t, 'bindPrintJobs(url)', () => t.target.bindPrintJobs(t.url), { exchanges: [EXCHANGE], queues: Object.keys(ADVICE) });

  await expectExchange(t, EXCHANGE, 'headers', `await channel.assertExchange('${EXCHANGE}', 'headers', { durable: true })`);
  t.observe(1, `read "${EXCHANGE}" from the management API: a durable headers exchange`);
  for (const q of Object.keys(ADVICE)) await expectQuorumQueue(t, q);
  t.observe(2, 'read "eu-pdf" and "rush" from the management API: quorum queues');

  // The routing keys are deliberately misleading: a headers exchange must ignore them.
  const job = (headers: Record<string, unknown>, key: string, expect: string[], because: string): RouteCase => ({ key, headers, expect, because });
  const cases: RouteCase[] = [
    job({ format: 'pdf', region: 'eu' }, 'pdf.eu', ['eu-pdf'], 'A pdf for the EU: both eu-pdf conditions hold.'),
    job({ format: 'pdf', region: 'us' }, 'pdf.eu', [], 'A pdf, but for the US: with x-match all, one condition out of two is not enough.'),
    job({ format: 'pdf' }, '', [], 'No region header at all: a missing header does not match.'),
    job({ format: 'pdf', region: 'eu', pages: 12 }, 'x', ['eu-pdf'], 'Extra headers do no harm: every condition of the binding holds.'),
    job({ format: 'docx', region: 'eu', priority: 'high' }, '', ['rush'], 'High priority is one of the two rush conditions; with x-match any, one is enough.'),
    job({ customer: 'vip' }, 'rush', ['rush'], 'A vip customer is the other rush condition.'),
    job({ format: 'pdf', region: 'eu', customer: 'vip' }, '', ['eu-pdf', 'rush'], 'Both bindings match: each queue gets its own copy.'),
    job({ priority: 'low', customer: 'regular' }, 'rush', [], 'Both headers are present, but neither has the value rush asks for.'),
    job({}, 'pdf.eu', [], 'No headers at all: nothing to match, whatever the routing key says.'),
  ];
  await expectRoutes(t, EXCHANGE, cases, (queue) => ADVICE[queue] ?? `Only "eu-pdf" and "rush" should be bound to "${EXCHANGE}".`, [3, 4]);
  t.note(`All ${cases.length} print jobs went exactly where they belong.`);

  // The jobs above cannot guess a header the task never mentions: read the conditions themselves.
  const bindings = (await bindingsFrom(t, EXCHANGE)).filter((b) => b.destination_type === 'queue');
  for (const [queue, allowed] of Object.entries(CONDITIONS)) {
    for (const b of bindings.filter((x) => x.destination === queue)) {
      const extra = Object.keys(b.arguments).filter((k) => k !== 'x-match' && !allowed.includes(k));
      if (extra.length === 0) continue;
      const any = String(b.arguments['x-match'] ?? 'all').startsWith('any');
      t.fail({
        summary: `"${queue}" is bound with a condition the task does not ask for: ${extra.map((k) => `${k}: ${JSON.stringify(b.arguments[k])}`).join(', ')}.`,
        expected: `conditions on ${allowed.join(' and ')} only`,
        saw: `the binding with arguments ${jsLiteral(b.arguments)}`,
        why: any
          ? `With x-match any, every condition is one more way in: a job whose only header is ${extra[0]}: ${JSON.stringify(b.arguments[extra[0]!])} lands in "${queue}", although it matches none of the conditions the task gives.`
          : `With x-match all, every condition must hold: a job without ${extra[0]} never reaches "${queue}", although it has everything the task asks for.`,
        fix: ADVICE[queue]!,
        link: t.ui('exchanges', EXCHANGE),
      });
    }
  }
  t.observe([3, 4], `read the bindings of "${EXCHANGE}": conditions on ${Object.entries(CONDITIONS).map(([q, c]) => `${c.join(' and ')} for "${q}"`).join(', ')}, nothing else`);

  await expectRefusedDeclarationHandled(t, { line: 5, label: 'bindPrintJobs(url)', call: () => t.target.bindPrintJobs(t.url), exchange: EXCHANGE, type: 'headers' });
});

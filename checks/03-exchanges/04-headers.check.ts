// Check 3.4: publishes print jobs with different header combinations (and meaningless
// routing keys) to the "print-jobs" headers exchange, and checks where each one went; a
// refused declaration makes bindPrintJobs() reject, and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/04-headers.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { callSetup, expectRefusedDeclarationHandled, expectRoutes, type RouteCase } from './support.js';

const EXCHANGE = 'print-jobs';

const ADVICE: Record<string, string> = {
  'eu-pdf':
    "\"eu-pdf\" needs both conditions at once: bind it with the arguments { 'x-match': 'all', format: 'pdf', region: 'eu' }. Binding keys mean nothing to a headers exchange, and a binding without header conditions matches every message.",
  rush: "\"rush\" needs either condition: bind it with { 'x-match': 'any', priority: 'high', customer: 'vip' }. Without x-match, RabbitMQ uses all.",
};

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3, 4], 'called bindPrintJobs(url) on an empty vhost');
  await callSetup(t, 'bindPrintJobs(url)', () => t.target.bindPrintJobs(t.url), { exchanges: [EXCHANGE], queues: Object.keys(ADVICE) });
  await t.expectConnectionsClosed('bindPrintJobs()');

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

  await expectRefusedDeclarationHandled(t, { line: 5, label: 'bindPrintJobs(url)', call: () => t.target.bindPrintJobs(t.url), exchange: EXCHANGE, type: 'headers' });
});

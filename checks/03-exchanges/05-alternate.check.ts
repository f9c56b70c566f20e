// Check 3.5: "payments" routes "card" and "transfer" to their queues, and every message no
// binding matches (unknown key, empty key, wrong case) lands in "unrouted" through the
// alternate exchange, with its original routing key. When it does not, the check follows
// the chain (argument, alternate exchange, its bindings) to say where it broke. A refused
// declaration makes setupPayments() reject, and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/05-alternate.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { bindingsFrom, callSetup, caseLabel, expectRefusedDeclarationHandled, expectRefusedQueueHandled, failOnMismatch, jsLiteral, type RouteCase, routeMatrix } from './support.js';

const EXCHANGE = 'payments';
const ALTERNATE = 'payments-unrouted';
const DECLARE = `await channel.assertExchange('${EXCHANGE}', 'direct', { durable: true, alternateExchange: '${ALTERNATE}' })`;

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3], 'called setupPayments(url) on an empty vhost');
  await callSetup(t, 'setupPayments(url)', () => t.target.setupPayments(t.url), { exchanges: [EXCHANGE, ALTERNATE], queues: ['card-payments', 'bank-transfers', 'unrouted'] });

  await expectExchange(t, EXCHANGE, 'direct', DECLARE);
  for (const q of ['card-payments', 'bank-transfers', 'unrouted']) await expectQuorumQueue(t, q);

  const nowhere = 'No binding of "payments" matches it, so the exchange hands it to its alternate exchange.';
  const cases: RouteCase[] = [
    { key: 'card', expect: ['card-payments'], because: '"card" is bound to "card-payments".' },
    { key: 'transfer', expect: ['bank-transfers'], because: '"transfer" is bound to "bank-transfers".' },
    { key: 'crypto', expect: ['unrouted'], because: nowhere },
    { key: '', expect: ['unrouted'], because: nowhere },
    { key: 'Card', expect: ['unrouted'], because: `Routing keys are case-sensitive: "Card" is not "card". ${nowhere}` },
  ];
  const result = await routeMatrix(t, EXCHANGE, cases, [1, 2, 3]);
  // Lost: it reached no queue at all. (One that a binding of "payments" took went elsewhere, not astray: see below.)
  const lost = result.mismatches.find((m) => m.queue === 'unrouted' && m.kind === 'missing' && result.arrived[cases.indexOf(m.case)]!.length === 0);
  if (lost) {
    // Follow the chain to the first broken link.
    const x = (await t.mgmt.exchange(t.vhost, EXCHANGE))!;
    const label = caseLabel(lost.case);
    const ae = x.arguments['alternate-exchange'];
    const base = `The message ${label} matched no binding of "${EXCHANGE}" and was dropped`;
    if (typeof ae !== 'string') {
      const lookalikes = Object.keys(x.arguments).filter((k) => /altern|dead/i.test(k));
      const wildcards = (await bindingsFrom(t, EXCHANGE)).filter((b) => b.destination === 'unrouted' && /[#*]/.test(b.routing_key));
      return t.fail({
        summary: `${base}: the exchange "${EXCHANGE}" has no alternate-exchange argument.`,
        expected: `arguments: { 'alternate-exchange': '${ALTERNATE}' }`,
        saw: `arguments: ${jsLiteral(x.arguments)}${wildcards.length ? `, and "unrouted" bound to it with the key "${wildcards[0]!.routing_key}"` : ''}`,
        why: lookalikes.length
          ? `RabbitMQ reads the argument named exactly "alternate-exchange", with no x- prefix. It stores arguments it does not know (${lookalikes.map((k) => `"${k}"`).join(', ')}) without a word, and they do nothing.`
          : wildcards.length
            ? `A direct exchange compares routing keys literally: "${wildcards[0]!.routing_key}" is a wildcard only on a topic exchange, so that binding takes only messages whose key is exactly "${wildcards[0]!.routing_key}". Catching what no binding matches is the job of an alternate exchange.`
            : 'Without an alternate exchange, a message that matches no binding is dropped silently, and the publisher still gets its confirm.',
        fix: `${DECLARE}. amqplib turns alternateExchange into the 'alternate-exchange' argument. (An existing exchange cannot change its arguments: delete it first, or use a policy.)`,
        link: t.ui('exchanges', EXCHANGE),
      });
    }
    const aeInfo = await t.mgmt.exchange(t.vhost, ae);
    if (!aeInfo) {
      return t.fail({
        summary: `${base}: its alternate exchange "${ae}" does not exist.`,
        expected: `a fanout exchange "${ALTERNATE}", named in the argument`,
        saw: `alternate-exchange: '${ae}', and no exchange of that name`,
        why: 'RabbitMQ accepts an alternate-exchange argument that names a missing exchange, and then drops what it would have handed over.',
        fix: `Declare "${ALTERNATE}" (fanout, durable) and name exactly that exchange: ${DECLARE}`,
        link: t.ui('exchanges'),
      });
    }
    const aeBindings = await bindingsFrom(t, ae);
    t.fail({
      summary: aeBindings.length
        ? `${base}: it reached the alternate exchange "${ae}", but no binding there matches it.`
        : `${base}: it reached the alternate exchange "${ae}", but nothing is bound to it.`,
      expected: `"${ae}" hands every message to "unrouted"`,
      saw: `"${ae}" is a ${aeInfo.type} exchange with ${aeBindings.length ? `bindings ${aeBindings.map((b) => `"${b.routing_key}" → ${b.destination}`).join(', ')}` : 'no bindings'}`,
      why:
        aeInfo.type === 'fanout'
          ? 'An alternate exchange routes like any other exchange: a queue must be bound to it.'
          : `A message keeps its routing key on its way to the alternate exchange, so a ${aeInfo.type} exchange there only catches the keys it happens to be bound for. A fanout catches them all.`,
      fix: `await channel.assertExchange('${ALTERNATE}', 'fanout', { durable: true }); await channel.bindQueue('unrouted', '${ALTERNATE}', '')`,
      link: t.ui('exchanges', ae),
    });
  }
  if (result.mismatches.length) {
    // Where a message went says more than where it did not: name an extra binding first.
    const mismatches = [...result.mismatches].sort((a, b) => Number(b.kind === 'extra') - Number(a.kind === 'extra'));
    await failOnMismatch(t, EXCHANGE, cases, { ...result, mismatches }, (queue) =>
      queue === 'unrouted'
        ? `Only messages no binding of "${EXCHANGE}" matches may reach "unrouted": bind "unrouted" to "${ALTERNATE}" only, never to "${EXCHANGE}".`
        : `Bind card-payments with 'card' and bank-transfers with 'transfer' to "${EXCHANGE}", and nothing else: every other key (another case included) must match no binding, so that the alternate exchange catches it.`,
    );
  }
  await expectExchange(t, ALTERNATE, 'fanout', `await channel.assertExchange('${ALTERNATE}', 'fanout', { durable: true })`);
  t.observe([1, 2], `read "${EXCHANGE}" (direct, durable, alternate-exchange "${ALTERNATE}") and "${ALTERNATE}" (fanout, durable) from the management API`);

  const caught = result.received[2]![0]!.message;
  t.note(`The unroutable payment waits in "unrouted" with its original exchange "${caught.fields.exchange}" and routing key "${caught.fields.routingKey}": enough to find out who sent it, and why nobody took it.`);

  // A refusal in the safety net's part too: a try/catch around it ("nice to have") must not hide it.
  await expectRefusedQueueHandled(t, { line: 4, label: 'setupPayments(url)', call: () => t.target.setupPayments(t.url), queue: 'unrouted' });
  await expectRefusedDeclarationHandled(t, { line: 4, label: 'setupPayments(url)', call: () => t.target.setupPayments(t.url), exchange: EXCHANGE, type: 'direct' });
});

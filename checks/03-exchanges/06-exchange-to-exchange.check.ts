// Check 3.6: "billing" (fanout) is bound to "shop-events" (topic) by an exchange-to-exchange
// binding; payment events published to "shop-events", and anything published to "billing",
// reach both billing queues; other shop events do not; no queue is bound to "shop-events"
// directly. A refused declaration makes wireBilling() reject, and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/06-exchange-to-exchange.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { bindingsFrom, callSetup, expectRefusedDeclarationHandled, expectRoutes, type RouteCase } from './support.js';

const SHOP = 'shop-events';
const BILLING = 'billing';
const QUEUES = ['billing-ledger', 'billing-fraud'];
const BIND = `await channel.bindExchange('${BILLING}', '${SHOP}', 'payment.#')`;

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3], 'called wireBilling(url) on an empty vhost');
  await callSetup(t, 'wireBilling(url)', () => t.target.wireBilling(t.url), { exchanges: [SHOP, BILLING], queues: QUEUES });

  await expectExchange(t, SHOP, 'topic', `await channel.assertExchange('${SHOP}', 'topic', { durable: true })`);
  await expectExchange(t, BILLING, 'fanout', `await channel.assertExchange('${BILLING}', 'fanout', { durable: true })`);
  for (const q of QUEUES) await expectQuorumQueue(t, q);
  t.observe(1, `read "${BILLING}" (a durable fanout exchange) and its queues from the management API`);

  // The topology first: the point of the exercise is the binding between the two exchanges.
  const e2e = (await bindingsFrom(t, SHOP)).filter((b) => b.destination === BILLING && b.destination_type === 'exchange');
  if (e2e.length === 0) {
    const reversed = (await bindingsFrom(t, BILLING)).filter((b) => b.destination === SHOP && b.destination_type === 'exchange');
    if (reversed.length) {
      t.fail({
        summary: `The exchange-to-exchange binding goes the wrong way: from "${BILLING}" to "${SHOP}".`,
        expected: `source "${SHOP}" → destination "${BILLING}"`,
        saw: `source "${BILLING}" → destination "${SHOP}" (pattern "${reversed[0]!.routing_key}")`,
        why: `channel.bindExchange(destination, source, pattern) takes the receiving exchange first, like bindQueue(queue, exchange, key). Swapped, the shop's payment events never reach "${BILLING}", and whatever the billing team publishes is fed into "${SHOP}".`,
        fix: BIND,
        link: t.ui('exchanges', BILLING),
      });
    }
    const direct = (await bindingsFrom(t, SHOP)).filter((b) => QUEUES.includes(b.destination));
    t.fail({
      summary: `There is no binding from the exchange "${SHOP}" to the exchange "${BILLING}".`,
      expected: `an exchange-to-exchange binding "${SHOP}" → "${BILLING}"`,
      saw: direct.length
        ? `the queues bound to "${SHOP}" directly: ${direct.map((b) => `${b.destination} ("${b.routing_key}")`).join(', ')}`
        : `no binding from "${SHOP}" to "${BILLING}"`,
      why: `With one binding between the exchanges, "${SHOP}" does not need to know billing's queues: the billing team adds or removes queues on its own exchange, and everything it publishes there reaches the same queues as the shop's payments.`,
      fix: `${BIND}, and bind the queues to "${BILLING}" only.`,
      link: t.ui('exchanges', SHOP),
    });
  }

  t.observe(2, `read the bindings of "${SHOP}": an exchange-to-exchange binding to "${BILLING}", pattern "${e2e.map((b) => b.routing_key).join('", "')}"`);
  const direct = (await bindingsFrom(t, SHOP)).filter((b) => b.destination_type === 'queue');
  if (direct.length) {
    t.fail({
      summary: `Besides the exchange-to-exchange binding, ${direct.map((b) => `"${b.destination}"`).join(' and ')} ${direct.length === 1 ? 'is' : 'are'} bound to "${SHOP}" directly.`,
      expected: `the queues bound to "${BILLING}" only; "${SHOP}" bound to "${BILLING}"`,
      saw: direct.map((b) => `"${SHOP}" → "${b.destination}" (key "${b.routing_key}")`).join(', '),
      why: `Every binding from "${SHOP}" to a billing queue is one more thing the shop's exchange must know about billing: whoever changes the routing later must change it in two places, and a queue bound both ways only looks right because RabbitMQ puts a message in a queue once, however many bindings lead there.`,
      fix: `Remove the direct bindings (await channel.unbindQueue(queue, '${SHOP}', key), or reset the exercise): bind each queue to "${BILLING}" with '', and only ${BIND}.`,
      link: t.ui('exchanges', SHOP),
    });
  }
  t.observe(3, `read the bindings of "${SHOP}": no queue bound to it directly`);

  const both = [...QUEUES];
  const shopCases: RouteCase[] = [
    { key: 'payment.captured', expect: both, because: 'A payment event: "payment" and one more word.' },
    { key: 'payment.refund.issued', expect: both, because: 'A payment event too, with two more words: only # matches more than one word.' },
    { key: 'payment.refund.issued.eu', expect: both, because: 'Three more words: still a payment event. # matches any number of words; a fixed number of * does not.' },
    { key: 'payment', expect: both, because: '"payment" followed by nothing: # matches zero words, * does not.' },
    { key: 'order.created', expect: [], because: 'Not a payment: billing does not want it.' },
    { key: 'order.payment.failed', expect: [], because: 'This key starts with "order", not "payment".' },
  ];
  const advice = () => `Bind "${BILLING}" to "${SHOP}" with a pattern that takes "payment" and any number of words after it (${BIND}), and each queue to "${BILLING}" with "".`;
  await expectRoutes(t, SHOP, shopCases, advice, [1, 2]);

  // The billing team's own services publish straight to "billing".
  await expectRoutes(t, BILLING, [{ key: 'manual-adjustment', expect: both, because: `A fanout delivers whatever is published to "${BILLING}" to every bound queue.` }], advice, 1);
  t.note(`Payment events travel ${SHOP} → ${BILLING} → ${QUEUES.join(' and ')}; other events stay out.`);

  // Routing right is not all: one pattern, one direction.
  const back = (await bindingsFrom(t, BILLING)).filter((b) => b.destination === SHOP && b.destination_type === 'exchange');
  if (back.length) {
    t.fail({
      summary: `"${BILLING}" is bound to "${SHOP}" both ways: besides "${SHOP}" → "${BILLING}", there is a binding from "${BILLING}" back to "${SHOP}".`,
      expected: `one direction: source "${SHOP}" → destination "${BILLING}"`,
      saw: `also source "${BILLING}" → destination "${SHOP}" (pattern "${back[0]!.routing_key}")`,
      why: `One bindExchange(destination, source, pattern) call binds one direction. The reverse binding feeds what the billing team publishes to "${BILLING}" into the shop's exchange, where every shop queue bound for those keys gets it: the shop never asked for billing's messages.`,
      fix: `Keep only ${BIND}, and remove the other (await channel.unbindExchange('${SHOP}', '${BILLING}', '${back[0]!.routing_key}'), or npm run reset 3.6).`,
      link: t.ui('exchanges', BILLING),
    });
  }
  if (e2e.length > 1) {
    t.fail({
      summary: `"${BILLING}" is bound to "${SHOP}" ${e2e.length} times (${e2e.map((b) => `"${b.routing_key}"`).join(', ')}); the task asks for one pattern that takes every payment event.`,
      expected: `one exchange-to-exchange binding, pattern "payment.#"`,
      saw: e2e.map((b) => `"${SHOP}" → "${BILLING}" with "${b.routing_key}"`).join(', '),
      why: `"payment" followed by any number of words, even none, is exactly what # says after payment: payment.# takes "payment", "payment.captured" and "payment.refund.issued.eu" alike. Every other pattern either repeats part of it, or lets in events that are not payments.`,
      fix: `${BIND}, and remove the other bindings (npm run reset 3.6).`,
      link: t.ui('exchanges', SHOP),
    });
  }
  t.observe(2, `read the bindings between "${SHOP}" and "${BILLING}" again: one pattern, one direction`);

  await expectRefusedDeclarationHandled(t, { line: 4, label: 'wireBilling(url)', call: () => t.target.wireBilling(t.url), exchange: BILLING, type: 'fanout' });
});

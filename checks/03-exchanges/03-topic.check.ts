// Check 3.3: publishes a matrix of routing keys to the "order-events" topic exchange
// (edge cases included: "#" matching zero words, "order.eu" vs "order.x.eu", a longer
// key, the empty key, keys that only a wildcard at either end tells apart) and compares
// where each message went with the requirements; a refused declaration makes bindTopics()
// reject, and close its connection.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/03-exchanges/03-topic.js';
import { expectExchange, expectQuorumQueue } from '../../runner/check/topology.js';
import { bindingsFrom, callSetup, expectRefusedDeclarationHandled, expectRoutes, type RouteCase } from './support.js';

const EXCHANGE = 'order-events';

/** "order.created.eu.paris" has 4 words: order, created, eu, paris. */
function words(key: string): string {
  if (key === '') return 'The empty key has no words at all.';
  const w = key.split('.');
  return w.length === 1 ? `"${key}" is a single word.` : `"${key}" has ${w.length} words: ${w.join(', ')}.`;
}

const ADVICE: Record<string, string> = {
  'eu-orders':
    '"eu-orders" wants exactly three words: "order", any one word, "eu". * stands for exactly one word, # for any number of words (even none): bind it with order.*.eu.',
  'order-created':
    '"order-created" wants "order.created" followed by anything, including nothing. Only # can match zero words: bind it with order.created.#.',
  'all-errors':
    '"all-errors" wants every key whose last word is "error", however many words come before, even none: bind it with #.error (the pattern order matters: "error" comes last).',
  audit: '"audit" wants every message. # alone matches any key, even the empty one; * alone matches one-word keys only: bind it with #.',
};

export default defineCheck<typeof Exercise>(async (t) => {
  t.provoke([1, 2, 3, 4], 'called bindTopics(url) on an empty vhost');
  await callSetup(t, 'bindTopics(url)', () => t.target.bindTopics(t.url), { exchanges: [EXCHANGE], queues: Object.keys(ADVICE) });

  await expectExchange(t, EXCHANGE, 'topic', `await channel.assertExchange('${EXCHANGE}', 'topic', { durable: true })`);
  for (const q of Object.keys(ADVICE)) await expectQuorumQueue(t, q);

  const route = (key: string, ...expect: string[]): RouteCase => ({ key, expect: [...expect, 'audit'], because: words(key) });
  const cases: RouteCase[] = [
    route('order.created.eu', 'eu-orders', 'order-created'),
    route('order.shipped.eu', 'eu-orders'),
    route('order.created.us', 'order-created'),
    route('order.eu'),
    route('order.created.eu.paris', 'order-created'),
    route('order.created.eu.paris.left-bank', 'order-created'), // deeper still: a fixed number of * would miss it
    route('order.created', 'order-created'),
    route('order.error.eu', 'eu-orders'),
    route('payment.error', 'all-errors'),
    route('error', 'all-errors'),
    route('order.created.eu.error', 'order-created', 'all-errors'),
    route('payment.errors'),
    route('payment.error.retry'), // "error" in the middle: #.error.# would take it
    route('invoice.created.eu'), // not an order: *.*.eu or #.created.# would take it
    route(''),
  ];
  await expectRoutes(t, EXCHANGE, cases, (queue) => ADVICE[queue] ?? `Only the four queues of the task should be bound to "${EXCHANGE}".`, [1, 2, 3, 4]);
  t.note(`All ${cases.length} routing keys went exactly where they belong.`);

  // One pattern per queue: the routing above can be right with several, and still not be what was asked.
  const bindings = (await bindingsFrom(t, EXCHANGE)).filter((b) => b.destination_type === 'queue');
  for (const queue of Object.keys(ADVICE)) {
    const patterns = bindings.filter((b) => b.destination === queue).map((b) => b.routing_key);
    if (patterns.length > 1) {
      t.fail({
        summary: `"${queue}" is bound ${patterns.length} times (${patterns.map((p) => `"${p}"`).join(', ')}); the exercise asks for one pattern per queue.`,
        expected: `one binding from "${EXCHANGE}" to "${queue}"`,
        saw: `${patterns.length} bindings: ${patterns.map((p) => `"${p}"`).join(', ')}`,
        why: `Together they route these keys right, but one pattern says the same in one place: # already matches zero words, so the pattern that takes "more" also takes "nothing more". Every extra binding is one more thing to remember when the keys change, and bindings add up until someone removes them.`,
        fix: `${ADVICE[queue]} Then remove the other bindings (npm run reset 3.3).`,
        link: t.ui('queues', queue),
      });
    }
  }
  t.observe([1, 2, 3, 4], `read the bindings of "${EXCHANGE}": one pattern per queue`);

  await expectRefusedDeclarationHandled(t, { line: 5, label: 'bindTopics(url)', call: () => t.target.bindTopics(t.url), exchange: EXCHANGE, type: 'topic' });
});

// Check 13.5: with the reference Odoo client (only the upsert is judged), events become
// contacts once: a redelivery, or a retry after Odoo's answer was lost, makes no second
// contact; an older event never overwrites a newer one, in one batch or across batches;
// one bad row does not sink the good ones, and comes back 'rejected' with Odoo's reason.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/05-upsert.js';
import { createOdooClient } from '../../solutions/13-capstone/04-odoo-client.js';
import type { CustomerEvent } from '../../solutions/13-capstone/02-topology.js';
import { event, partnersOf, standIn, withResources } from './support.js';

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const odoo = await standIn(defer);
    const client = createOdooClient(odoo.config);
    const VERSION = t.target.VERSION_FIELD;
    await t.call('prepareOdoo(odoo)', () => t.target.prepareOdoo(client));
    const up = (label: string, events: CustomerEvent[]) => t.call(`upsertCustomers(odoo, ${label})`, () => t.target.upsertCustomers(client, events), { timeoutMs: 5000 });
    const statuses = (out: { status: string }[]) => out.map((o) => o.status).join(', ');
    const contacts = (key: string) => partnersOf(odoo, key);
    const one = (key: string, when: string): Record<string, unknown> => {
      const found = contacts(key);
      if (found.length === 1) return found[0]!;
      return t.fail({
        summary: found.length === 0 ? `Customer ${key} has no contact in Odoo ${when}.` : `Customer ${key} has ${found.length} contacts in Odoo ${when}: a second contact for the same customer.`,
        expected: `exactly one res.partner with ref "pg:${key}"`,
        saw: `${found.length}: ${found.map((p) => `#${p.id} ${JSON.stringify(p.name)} (external id ${p.xmlid || 'none'})`).join(', ')}`,
        why:
          found.length === 0
            ? 'upsertCustomers() said it wrote the event, but Odoo has nothing.'
            : 'RabbitMQ delivers at least once: after a crash, a lost ack or a lost answer, the same event comes again. create() makes a new record each time; load() with an external id updates the one it made the first time.',
        fix: "execute('res.partner', 'load', [FIELDS, rows]) where the 'id' column is externalId(key).",
      });
    };

    // 1. Two new customers.
    const e1 = event('1', 1, { name: 'Ada Lovelace' });
    const e2 = event('2', 1, { name: 'Alan Turing' });
    let out = await up('[customer 1 v1, customer 2 v1]', [e1, e2]);
    if (statuses(out) !== 'written, written') t.fail({ summary: `Two new customers came back as [${statuses(out)}] instead of [written, written].`, fix: 'Return one Outcome per event, in order.' });
    const ada = one('1', 'after the first upsert');
    one('2', 'after the first upsert');
    if (ada.name !== 'Ada Lovelace' || ada[VERSION] !== 1) t.fail({ summary: 'The contact does not hold the event\'s values.', expected: `name "Ada Lovelace", ${VERSION} 1`, saw: `name ${JSON.stringify(ada.name)}, ${VERSION} ${JSON.stringify(ada[VERSION])}` });

    // 2. The same two again: a redelivery.
    t.log('delivered the same two events again, as the broker does after a lost ack');
    out = await up('[customer 1 v1, customer 2 v1] again', [e1, e2]);
    one('1', 'after the same event was delivered twice');
    one('2', 'after the same event was delivered twice');
    if (out.some((o) => o.status === 'rejected')) t.fail({ summary: `A redelivered event came back ${statuses(out)}.`, expected: "'stale' (Odoo already has this version)", fix: 'An event whose version is not newer than the one in Odoo is stale: ack it and move on.' });

    // 3. Odoo commits, and its answer is lost: the caller will send the batch again.
    await odoo.setFaults({ dropAfterCommit: 1 });
    t.log("made Odoo commit the next call and then drop the connection before answering (a lost answer)");
    const e3 = event('3', 1, { name: 'Grace Hopper' });
    try {
      await t.target.upsertCustomers(client, [e3]);
    } catch {
      /* expected: the network error reaches the caller, who tries again */
    }
    out = await up('[customer 3 v1] again, after the lost answer', [e3]);
    one('3', "after Odoo's answer was lost and the batch was sent again");

    // 4. Newer, then older.
    out = await up('[customer 1 v3]', [event('1', 3, { name: 'Ada King' })]);
    if (out[0]?.status !== 'written') t.fail({ summary: `A newer event (v3) came back '${out[0]?.status}' instead of 'written'.` });
    t.log('then delivered customer 1 v2, older than what Odoo holds (retries reorder events)');
    out = await up('[customer 1 v2]', [event('1', 2, { name: 'Ada Lovelace-Byron' })]);
    let now = one('1', 'after v3 then v2');
    if (now.name !== 'Ada King' || now[VERSION] !== 3) {
      t.fail({
        summary: `An older event overwrote a newer one: Odoo now has v${now[VERSION]} "${now.name}" although it had v3 "Ada King".`,
        expected: "customer 1 stays v3 \"Ada King\"; the v2 event comes back 'stale'",
        saw: `${VERSION} ${now[VERSION]}, name "${now.name}", outcome '${out[0]?.status}'`,
        why: 'A retried event waits in a delay queue while newer ones pass it. Applied late, it would silently roll Odoo back to old data: "stale".',
        fix: `Read ${VERSION} of the contacts first (ir.model.data, then res.partner) and skip events that are not newer.`,
      });
    }
    if (out[0]?.status !== 'stale') t.fail({ summary: `The older event came back '${out[0]?.status}' instead of 'stale'.` });

    // 5. Two versions of one customer in the same batch, newest first.
    out = await up('[customer 4 v2, customer 4 v1]', [event('4', 2, { name: 'Four v2' }), event('4', 1, { name: 'Four v1' })]);
    now = one('4', 'after a batch with v2 and v1');
    if (now.name !== 'Four v2' || statuses(out) !== 'written, stale') {
      t.fail({
        summary: `In one batch with v2 then v1 of customer 4, Odoo ended with "${now.name}" and the outcomes were [${statuses(out)}].`,
        expected: '"Four v2", outcomes [written, stale]',
        why: 'Within a batch, only the newest event per customer matters; load() applies rows in order, so an older row after a newer one would win.',
        fix: 'Keep only the newest event per key before calling load(); mark the others stale.',
      });
    }

    // 6. Bad rows in the middle of a batch.
    t.log('sent a batch of 4: customers 5 and 8 are fine, 6 has no name, 7 lives in "Atlantis"');
    out = await up('[5 ok, 6 without a name, 7 in Atlantis, 8 ok]', [
      event('5', 1, { name: 'Five' }),
      event('6', 1, { name: null }),
      event('7', 1, { name: 'Seven', country: 'Atlantis' }),
      event('8', 1, { name: 'Eight' }),
    ]);
    const good = contacts('5').length + contacts('8').length;
    if (out[0]?.status !== 'written' || out[3]?.status !== 'written' || good !== 2) {
      t.fail({
        summary: `One bad row sank the good rows of its batch: outcomes [${statuses(out)}], ${good} of the 2 good customers in Odoo.`,
        expected: '[written, rejected, rejected, written], customers 5 and 8 in Odoo',
        why: 'load() writes nothing when a row fails (ids: false) and lists the bad rows in messages. Rejecting the whole batch would dead-letter good events with a reason that is not theirs.',
        fix: 'Reject the rows named in messages (message.record), then load() the rest again.',
      });
    }
    const r6 = out[1] as { status: string; reason?: string };
    const r7 = out[2] as { status: string; reason?: string };
    if (r6.status !== 'rejected' || !/name/i.test(r6.reason ?? '') || r7.status !== 'rejected' || !/Atlantis/.test(r7.reason ?? '')) {
      t.fail({
        summary: `The bad rows came back [${statuses(out.slice(1, 3))}] without Odoo's reasons.`,
        expected: "customer 6: rejected, reason mentions the name; customer 7: rejected, reason mentions 'Atlantis'",
        saw: `6: ${JSON.stringify(out[1])}; 7: ${JSON.stringify(out[2])}`,
        why: 'The reason travels with the message to the dead-letter queue: whoever looks at it must see what to fix.',
        fix: 'reason = the message of the load() error whose record is that row.',
      });
    }
    if (contacts('6').length + contacts('7').length !== 0) t.fail({ summary: 'A rejected row has a contact in Odoo anyway.' });

    // 7. A malformed event.
    const malformed = { eventId: 'x', entity: 'customer', version: 1, data: {} } as unknown as CustomerEvent;
    out = await up('[an event without a key]', [malformed]);
    if (out[0]?.status !== 'rejected') t.fail({ summary: `An event without a key came back '${out[0]?.status}' instead of 'rejected'.` });
  }),
);

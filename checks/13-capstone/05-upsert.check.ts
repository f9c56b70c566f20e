// Check 13.5: with the reference Odoo client (only the upsert is judged), through a proxy
// that records every call (and can answer a load() in Odoo's place), against the stand-in:
// events become contacts with every column, through one load() per batch; a redelivery, or
// a retry after Odoo's answer was lost, makes no second contact; an older event never
// overwrites a newer one, in one batch or across batches, archived or not; bad rows are
// rejected with Odoo's reason and do not sink the good ones (warnings do not count, errors
// that name no row reject all); malformed events are rejected; OdooErrors reach the caller;
// prepareOdoo() creates the version field once.
import { isDeepStrictEqual } from 'node:util';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/05-upsert.js';
import { OdooError, createOdooClient } from '../../solutions/13-capstone/04-odoo-client.js';
import type { CustomerEvent } from '../../solutions/13-capstone/02-topology.js';
import { rejection, standIn, wireProxy, withResources, type WireRequest } from './support.js';

const VERSION = 'x_source_version';
type Outcome = { status: string; id?: unknown; newer?: unknown; reason?: unknown };

let seq = 0;
function ev(key: string, version: number, data: Record<string, unknown>): CustomerEvent {
  return { eventId: `00000000-0000-4000-9000-${String(++seq).padStart(12, '0')}`, entity: 'customer', key, version, data: { id: Number(key), version, ...data }, committedAt: new Date().toISOString() };
}

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const odoo = await standIn(defer);
    const wire = await wireProxy(defer, odoo.url);
    const client = createOdooClient({ ...odoo.config, url: wire.url });
    const isLoad = (r: WireRequest) => r.rpc?.params?.args?.[3] === 'res.partner' && r.rpc?.params?.args?.[4] === 'load';
    const loads = () => wire.requests.filter(isLoad).length;
    const partners = (key: string) => odoo.records('res.partner').filter((p) => p.ref === `pg:${key}` || p.xmlid === `pg_bridge.customer_${key}`);
    const show = (out: unknown) => JSON.stringify(out);
    const statuses = (out: Outcome[]) => out.map((o) => o?.status).join(', ');

    const up = async (label: string, events: CustomerEvent[]) => {
      const out = await t.call(`upsertCustomers(odoo, ${label})`, () => t.target.upsertCustomers(client, events), { timeoutMs: 5000 });
      if (!Array.isArray(out) || out.length !== events.length) {
        t.fail({
          summary: `upsertCustomers() returned ${Array.isArray(out) ? `${out.length} outcome(s)` : show(out)} for ${events.length} event(s).`,
          expected: `${events.length} outcomes, one per event, in the same order`,
          saw: show(out)?.slice(0, 300),
          why: 'The receiver acks, retries or dead-letters each message by the outcome at its index. A missing outcome leaves a message unsettled; a shifted one acks the wrong message.',
          fix: 'Fill an array with one Outcome per event (events.map…) and return it whole.',
        });
      }
      return out as Outcome[];
    };
    /** The one contact of a customer, with what it must hold. */
    const contact = (key: string, when: string, want?: Record<string, unknown>) => {
      const found = partners(key);
      if (found.length !== 1) {
        t.fail({
          summary: found.length === 0 ? `Customer ${key} has no contact in Odoo ${when}.` : `Customer ${key} has ${found.length} contacts in Odoo ${when}: a second contact for the same customer.`,
          expected: `exactly one res.partner with external id pg_bridge.customer_${key}`,
          saw: `${found.length}: ${found.map((p) => `#${p.id} ${show(p.name)} (external id ${p.xmlid || 'none'})`).join(', ')}`,
          why:
            found.length === 0
              ? 'upsertCustomers() said it wrote the event, but Odoo has nothing.'
              : 'RabbitMQ delivers at least once: after a crash, a lost ack or a lost answer, the same event comes again. create() makes a new record each time; load() with an external id updates the one it made the first time.',
          fix: "execute('res.partner', 'load', [FIELDS, rows]) where the 'id' column is externalId(key).",
        });
      }
      const p = found[0]!;
      if (p.xmlid !== `pg_bridge.customer_${key}`) {
        t.fail({
          summary: `The contact of customer ${key} has ${p.xmlid ? `the external id ${p.xmlid}` : 'no external id'} instead of pg_bridge.customer_${key}: the next event for this customer would create a second contact.`,
          expected: `external id pg_bridge.customer_${key}`,
          saw: `contact #${p.id} ${show(p.name)}, external id ${show(p.xmlid)}`,
          why: 'RabbitMQ delivers at least once. The external id is what makes the next write (a redelivery, a newer version) update this contact instead of creating another; it must be the same for the same customer, always.',
          fix: "execute('res.partner', 'load', [FIELDS, rows]) where the 'id' column is externalId(key) = `pg_bridge.customer_${key}`.",
        });
      }
      const wrong = Object.entries({ xmlid: `pg_bridge.customer_${key}`, ...want }).filter(([k, v]) => !isDeepStrictEqual(p[k], v));
      if (wrong.length) {
        t.fail({
          summary: `The contact of customer ${key} ${when} does not hold what the event said: ${wrong.map(([k]) => k).join(', ')}.`,
          expected: wrong.map(([k, v]) => `${k} ${show(v)}`).join(', '),
          saw: wrong.map(([k]) => `${k} ${show(p[k])}`).join(', '),
          why: wrong.some(([k]) => k === 'xmlid')
            ? "The external id is what makes the next write update this contact instead of creating another: it must be 'pg_bridge.customer_<key>', always the same for the same customer."
            : 'Odoo must end up with the values of the newest event: every column, and empty where the event has nothing (null or missing), never the text "null".',
          fix: 'Write every column with toRow(event): externalId(key), name, email, phone, city, country, notes, ref, version; null and undefined become "".',
        });
      }
      return p;
    };
    const expectOutcomes = (line: number | string, out: Outcome[], want: Outcome[], what: string, why: string, fix: string, summary?: string) => {
      t.observe(line, `${what}: ${show(out)}`);
      const bad = want.findIndex((w, i) => Object.entries(w).some(([k, v]) => (v === '*' ? typeof out[i]?.[k as keyof Outcome] !== 'string' || out[i]?.[k as keyof Outcome] === '' : !isDeepStrictEqual(out[i]?.[k as keyof Outcome], v))));
      if (bad < 0) return;
      t.fail({
        summary: summary ?? `${what} came back as [${statuses(out)}]: event ${bad + 1} is ${show(out[bad])}.`,
        expected: show(want).replaceAll('"*"', 'a reason'),
        saw: show(out),
        why,
        fix,
      });
    };
    const countryId = (name: string) => odoo.records('res.country').find((c) => c.name === name)?.id;

    // ---- line 6: prepareOdoo() ----
    t.provoke(6, 'called prepareOdoo() twice on an Odoo without the version field');
    await t.call('prepareOdoo(odoo)', () => t.target.prepareOdoo(client));
    await t.call('prepareOdoo(odoo) a second time', () => t.target.prepareOdoo(client));
    const partnerModel = odoo.records('ir.model').find((m) => m.model === 'res.partner')?.id;
    const made = odoo.records('ir.model.fields').filter((f) => f.name === VERSION);
    t.observe(6, `Odoo holds ${made.length} field(s) named ${VERSION}: ${made.map((f) => `${f.ttype} on model #${show(f.model_id)}, label ${show(f.field_description)}`).join('; ')}`);
    if (made.length !== 1 || made[0]!.ttype !== 'integer' || made[0]!.model_id !== partnerModel || !made[0]!.field_description) {
      t.fail({
        summary: made.length === 0 ? `prepareOdoo() did not create the field ${VERSION}.` : made.length > 1 ? `prepareOdoo() created the field ${VERSION} ${made.length} times: it does not look first.` : `The field ${VERSION} is not an integer field on res.partner with a label.`,
        expected: `one integer field ${VERSION} on res.partner (model #${partnerModel}), with a label`,
        saw: made.map((f) => `${f.ttype} on model #${show(f.model_id)}, label ${show(f.field_description)}`).join('; ') || 'none',
        why: 'Every version comparison reads this field. The receiver calls prepareOdoo() each time it starts, so it must create the field only when fields_get does not show it.',
        fix: `fields_get([${VERSION}]) first; only when it is missing, create it through ir.model.fields with ttype 'integer' on the model_id of res.partner.`,
      });
    }

    // ---- lines 1 and 2: new customers, every column, one load() ----
    const e1 = ev('1', 1, { name: 'Ada Lovelace', email: 'ada@example.com', phone: '+44 20 7946 0001', city: 'London', country: 'Portugal', notes: 'Analyst' });
    const e2 = ev('2', 1, { name: 'Alan Turing', email: null, phone: null, city: 'Wilmslow' });
    t.provoke([1, 2, 3], 'sent a batch: customer 1 v1 (every column), customer 2 v1 (email and phone null, no country, no notes), and customer 1 v1 again');
    const loadsBefore = loads();
    let out = await up('[customer 1 v1, customer 2 v1, customer 1 v1 again]', [e1, e2, e1]);
    t.observe(2, `${loads() - loadsBefore} load() call(s) for the batch`);
    const creates = wire.requests.filter((r) => r.rpc?.params?.args?.[3] === 'res.partner' && r.rpc?.params?.args?.[4] === 'create').length;
    if (loads() - loadsBefore !== 1) {
      t.fail({
        summary:
          loads() === loadsBefore && creates > 0
            ? `The batch was written with ${creates} create() call(s) and no load(): without an external id, every redelivery makes a second contact.`
            : `A batch of 2 new customers took ${loads() - loadsBefore} load() calls instead of 1.`,
        expected: "one execute('res.partner', 'load', [FIELDS, rows]) with a row per customer",
        saw: `${loads() - loadsBefore} calls${loads() === loadsBefore ? ` (calls made: ${wire.requests.slice(-4).map((r) => show(r.rpc?.params?.args?.slice(3, 5))).join(', ')})` : ''}`,
        why: 'load() writes a batch and its external ids in one transaction and one HTTP request: that is where the bridge gets its speed. A call per event makes 500 requests where one does.',
        fix: 'Collect the rows (toRow(event)) and call load() once for all of them.',
      });
    }
    const p1 = contact('1', 'after the first batch', { name: 'Ada Lovelace', email: 'ada@example.com', phone: '+44 20 7946 0001', city: 'London', country_id: countryId('Portugal'), comment: 'Analyst', ref: 'pg:1', [VERSION]: 1 });
    const p2 = contact('2', 'after the first batch', { name: 'Alan Turing', email: false, phone: false, city: 'Wilmslow', country_id: false, comment: false, ref: 'pg:2', [VERSION]: 1 });
    t.observe(2, `read the contacts from Odoo: #${p1.id} ${show(p1.name)}, #${p2.id} ${show(p2.name)}`);
    expectOutcomes(1, out, [{ status: 'written', id: p1.id }, { status: 'written', id: p2.id }, { status: 'stale', newer: 1 }], 'The batch [customer 1 v1, customer 2 v1, customer 1 v1 again]',
      'Each outcome belongs to the event at its index. A written one carries the contact\'s id; the same event twice in one batch is written once: the later copy is stale (newer: 1).',
      "outcomes[i] = { status: 'written', id: result.ids[n] } for the n-th row loaded; among equal versions of one customer keep the first, mark the others { status: 'stale', newer }.");

    // ---- line 3: a redelivery is stale ----
    t.provoke([2, 3], 'delivered customers 1 and 2 v1 again, as the broker does after a lost ack');
    const loadsBeforeRedelivery = loads();
    out = await up('[customer 1 v1, customer 2 v1] again', [e1, e2]);
    contact('1', 'after the same event was delivered twice');
    contact('2', 'after the same event was delivered twice');
    expectOutcomes(3, out, [{ status: 'stale', newer: 1 }, { status: 'stale', newer: 1 }], 'A redelivery of customers 1 and 2 v1',
      'Odoo already holds version 1 of both: writing them again is useless, and with an older event it would be harmful.',
      `Read ${VERSION} of the contacts their external ids point to (ir.model.data, then res.partner) and mark events that are not newer { status: 'stale', newer: <Odoo's version> }.`,
      `Customers 1 and 2 v1, delivered again, came back [${statuses(out)}] instead of [stale, stale]: the version Odoo holds was not compared.`);
    t.observe(2, `${loads() - loadsBeforeRedelivery} load() call(s) for a batch with nothing left to write`);
    if (loads() !== loadsBeforeRedelivery) {
      t.fail({
        summary: `A batch with nothing left to write (every event stale) still called load() ${loads() - loadsBeforeRedelivery} time(s).`,
        expected: 'no load() call',
        saw: show(wire.requests.filter(isLoad).at(-1)?.rpc?.params?.args?.slice(5)),
        why: 'Every call to Odoo costs a request and a transaction; a redelivered batch should cost a version read, nothing more.',
        fix: 'Call load() only while there are rows left to write.',
      });
    }

    // ---- line 5 and 3: Odoo commits and its answer is lost; the batch comes again ----
    wire.when(isLoad, 'lose-answer');
    const e3 = ev('3', 1, { name: 'Grace Hopper' });
    t.provoke(5, "sent customer 3 v1, and made the connection drop after Odoo committed the load() and before its answer arrived (a lost answer)");
    const lost = await rejection(() => Promise.resolve(t.target.upsertCustomers(client, [e3])));
    t.observe(5, `upsertCustomers() ${lost === undefined ? 'resolved' : lost === 'timeout' ? 'did not settle within 5 s' : `rejected with ${lost.name} (kind ${show((lost as { kind?: unknown }).kind)})`}`);
    if (!(lost instanceof OdooError) || lost.kind !== 'retry') {
      t.fail({
        summary: lost === undefined ? "upsertCustomers() resolved although the client threw (Odoo's answer was lost): the error was swallowed." : `upsertCustomers() did not let the client's OdooError through: ${lost === 'timeout' ? 'it never settled' : `${lost.name}: ${lost.message}`}.`,
        expected: "a rejection with the client's OdooError (kind 'retry')",
        saw: lost instanceof Error ? `${lost.name}: ${lost.message}` : String(lost ?? 'resolved'),
        why: "Only the receiver knows what to do with a failure: park the batch in a delay queue ('retry'), or stop ('fatal'). An outcome invented here ('rejected' for a network error) dead-letters good events.",
        fix: "Do not catch the client's errors in upsertCustomers(): let them reach the caller.",
      });
    }
    out = await up('[customer 3 v1] again, after the lost answer', [e3]);
    contact('3', "after Odoo's answer was lost and the batch was sent again", { name: 'Grace Hopper', [VERSION]: 1 });
    expectOutcomes(3, out, [{ status: 'stale', newer: 1 }], 'Customer 3 v1 sent again after the lost answer',
      'Odoo committed the first try: it holds version 1 already.', 'Compare with the version Odoo holds before writing.');

    // ---- line 3: newer, then older, on an archived contact ----
    out = await up('[customer 1 v3]', [ev('1', 3, { name: 'Ada King' })]);
    const p1v3 = contact('1', 'after v3', { name: 'Ada King', [VERSION]: 3 });
    expectOutcomes(3, out, [{ status: 'written', id: p1v3.id }], 'Customer 1 v3 (Odoo holds v1)', 'A newer event must be written.', 'Write the events that are newer than what Odoo holds.');
    await client.execute('res.partner', 'write', [[p1v3.id], { active: false }]);
    t.provoke(3, 'archived the contact of customer 1 in Odoo, then delivered customer 1 v2, older than what Odoo holds (retries reorder events)');
    out = await up('[customer 1 v2]', [ev('1', 2, { name: 'Ada Lovelace-Byron' })]);
    const now = partners('1')[0];
    if (now?.name !== 'Ada King' || now?.[VERSION] !== 3) {
      t.fail({
        summary: `An older event overwrote a newer one: Odoo now has v${show(now?.[VERSION])} ${show(now?.name)} although it had v3 "Ada King" (archived).`,
        expected: 'customer 1 stays v3 "Ada King"; the v2 event comes back stale',
        saw: `${VERSION} ${show(now?.[VERSION])}, name ${show(now?.name)}, outcome ${show(out[0])}`,
        why: 'A retried event waits in a delay queue while newer ones pass it. Applied late, it would silently roll Odoo back to old data. Archived contacts count too: search_read hides them unless the domain mentions active.',
        fix: `Read ${VERSION} of the contacts first, with ['active', 'in', [true, false]] in the domain, and skip events that are not newer.`,
      });
    }
    expectOutcomes(3, out, [{ status: 'stale', newer: 3 }], 'Customer 1 v2 (Odoo holds v3, archived)', 'The event is older than what Odoo holds: stale, newer 3.', "{ status: 'stale', newer: <Odoo's version> }");

    // ---- line 3: two versions of one customer in one batch, in both orders ----
    t.provoke(3, 'sent one batch with customer 4 v2 then v1, and customer 9 v1 then v2');
    out = await up('[customer 4 v2, customer 4 v1, customer 9 v1, customer 9 v2]', [ev('4', 2, { name: 'Four v2' }), ev('4', 1, { name: 'Four v1' }), ev('9', 1, { name: 'Nine v1' }), ev('9', 2, { name: 'Nine v2' })]);
    const p4 = contact('4', 'after a batch with v2 then v1', { name: 'Four v2', [VERSION]: 2 });
    const p9 = contact('9', 'after a batch with v1 then v2', { name: 'Nine v2', [VERSION]: 2 });
    expectOutcomes(3, out, [{ status: 'written', id: p4.id }, { status: 'stale', newer: 2 }, { status: 'stale', newer: 2 }, { status: 'written', id: p9.id }], 'The batch [4 v2, 4 v1, 9 v1, 9 v2]',
      'Within a batch, only the newest event per customer matters, wherever it stands; load() applies rows in order, so an older row after a newer one would win.',
      'Keep only the newest event per key before calling load(); mark the others { status: "stale", newer: <the newest version> }.');

    // ---- line 4: bad rows in the middle of a batch ----
    await client.execute('res.partner', 'load', [['id', 'name', VERSION], [['__import__.customer_5', 'Someone Else Imported', '99']]]);
    t.provoke(3, 'imported another contact in Odoo with the external id __import__.customer_5 (another module, same name) and version 99');
    t.provoke(4, 'sent a batch of 4: customers 5 and 8 are fine, 6 has no name, 7 lives in "Atlantis"');
    out = await up('[5 ok, 6 without a name, 7 in Atlantis, 8 ok]', [ev('5', 1, { name: 'Five' }), ev('6', 1, { name: null }), ev('7', 1, { name: 'Seven', country: 'Atlantis' }), ev('8', 1, { name: 'Eight' })]);
    const firstLoad = wire.requests.filter(isLoad).at(-2);
    const said = (row: number): string => {
      try {
        return (JSON.parse(firstLoad?.answer ?? '{}').result?.messages ?? []).find((m: { record?: number }) => m.record === row)?.message ?? '?';
      } catch {
        return '?';
      }
    };
    const good = partners('5').length + partners('8').length;
    if (out[0]?.status !== 'written' || out[3]?.status !== 'written' || good !== 2) {
      t.fail({
        summary: `One bad row sank the good rows of its batch: outcomes [${statuses(out)}], ${good} of the 2 good customers in Odoo.`,
        expected: '[written, rejected, rejected, written], customers 5 and 8 in Odoo',
        why: 'load() writes nothing when a row fails (ids: false) and lists the bad rows in messages. Rejecting the whole batch would dead-letter good events with a reason that is not theirs.',
        fix: 'Reject the rows named in messages (message.record), then load() the rest again.',
      });
    }
    const p5 = contact('5', 'after a batch with bad rows', { name: 'Five' });
    const p8 = contact('8', 'after a batch with bad rows', { name: 'Eight' });
    expectOutcomes(4, out, [{ status: 'written', id: p5.id }, { status: 'rejected', reason: said(1) }, { status: 'rejected', reason: said(2) }, { status: 'written', id: p8.id }], 'The batch [5 ok, 6 without a name, 7 in Atlantis, 8 ok]',
      'The reason travels with the message to the dead-letter queue: whoever looks at it must see Odoo\'s own words about that row, not another row\'s.',
      "reason = the message of the load() error whose record is that row's index in the rows you sent.");
    if (partners('6').length + partners('7').length !== 0) t.fail({ summary: 'A rejected row has a contact in Odoo anyway.', fix: 'Load the good rows again WITHOUT the rejected ones.' });

    // ---- line 4: a warning is not an error; errors without a row reject all ----
    const warning = 'Found multiple matches for value "Portugal" in field "Country" (2 records)';
    wire.when(isLoad, { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, result: { ids: false, messages: [{ type: 'warning', record: 0, message: warning }, { type: 'error', record: 1, message: 'Eleven is bad (scripted by the checker)' }], nextrow: 0 } }) });
    t.provoke(4, 'answered the next load() in Odoo\'s place: ids false, a WARNING about row 0 and an error about row 1 (customers 10, 11, 12)');
    out = await up('[10, 11, 12], load() answering a warning for row 0 and an error for row 1', [ev('10', 1, { name: 'Ten' }), ev('11', 1, { name: 'Eleven' }), ev('12', 1, { name: 'Twelve' })]);
    expectOutcomes(4, out, [{ status: 'written', id: partners('10')[0]?.id }, { status: 'rejected', reason: 'Eleven is bad (scripted by the checker)' }, { status: 'written', id: partners('12')[0]?.id }], 'The batch [10, 11, 12] with a warning on row 0 and an error on row 1',
      "Odoo's load() also returns warnings (type 'warning'); they do not make a row bad. Only the messages of type 'error' name rows that failed.",
      "Filter result.messages on type === 'error' before taking their record indexes.");
    const general = ['Unknown field "x_vip" for model Contact (scripted by the checker)', 'Unknown field "x_tier" for model Contact (scripted by the checker)'];
    wire.when(isLoad, { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, result: { ids: false, messages: general.map((message) => ({ type: 'error', message })), nextrow: 0 } }) });
    t.provoke(4, "answered the next load() in Odoo's place: ids false, two errors that name no row (customers 13, 14)");
    out = await up('[13, 14], load() answering errors that name no row', [ev('13', 1, { name: 'Thirteen' }), ev('14', 1, { name: 'Fourteen' })]);
    const both = (o: Outcome) => typeof o?.reason === 'string' && general.every((g) => (o.reason as string).includes(g)) && !(o.reason as string).includes(general.join(''));
    expectOutcomes(4, out.map((o) => (both(o) ? { ...o, reason: 'both messages' } : o)), [{ status: 'rejected', reason: 'both messages' }, { status: 'rejected', reason: 'both messages' }], 'The batch [13, 14] with two errors that name no row',
      'An error without a row index gives nothing to tell good rows from bad ones, and loading again gets the same answer: reject them all, with that message, or loop forever.',
      "When no error names a record: reject every row left with the errors' messages.");
    wire.when(isLoad, { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, result: { ids: false, messages: [], nextrow: 0 } }) });
    t.provoke(4, "answered the next load() in Odoo's place: ids false and no message at all (customer 15)");
    out = await up('[15], load() answering ids false without any message', [ev('15', 1, { name: 'Fifteen' })]);
    expectOutcomes(4, out, [{ status: 'rejected', reason: '*' }], 'Customer 15 with load() answering ids false and nothing else',
      'ids false means nothing was written, even without a message: the event must not count as written, and its reason must say something.',
      "When nothing names a row: reject every row left, with a reason such as 'load() wrote nothing and said nothing'.");

    // ---- line 1: malformed events ----
    const malformed = [
      null,
      { eventId: 'm1', entity: 'customer', key: 16, version: 1, data: { name: 'Key Is A Number' } },
      { eventId: 'm2', entity: 'customer', key: '16', version: '1', data: { name: 'Version Is Text' } },
      { eventId: 'm3', entity: 'customer', key: '16', version: 1.5, data: { name: 'Version Is Not Whole' } },
      { eventId: 'm4', entity: 'customer', key: '16', version: 1, data: null },
      { eventId: 'm5', entity: 'customer', key: '16', version: 1, data: 'Sixteen' },
    ] as unknown as CustomerEvent[];
    t.provoke(1, 'sent a batch of 6 malformed events (null, a numeric key, a text version, version 1.5, data null, data a string) and customer 17 v1');
    out = await up('[6 malformed events, customer 17 v1]', [...malformed, ev('17', 1, { name: 'Seventeen' })]);
    expectOutcomes(1, out, [...malformed.map(() => ({ status: 'rejected', reason: '*' })), { status: 'written', id: partners('17')[0]?.id }], 'A batch of 6 malformed events and customer 17 v1',
      'A message whose JSON is not an event can never be written; it must be dead-lettered with a reason, and must not stop the good events around it (or crash the whole batch on null.key).',
      'Reject an event unless typeof key === "string", Number.isInteger(version) and data is an object; process the others as usual.');
    const leaked = wire.requests.find((r) => r.body.includes('customer_16"'));
    t.observe(1, leaked ? `a call to Odoo mentions customer 16: ${leaked.body.slice(0, 160)}` : 'no call to Odoo mentions customer 16');
    if (leaked) {
      t.fail({
        summary: 'A malformed event (customer 16) was sent to Odoo anyway.',
        expected: 'malformed events rejected before any call to Odoo',
        saw: leaked.body.slice(0, 200),
        why: 'An event that is not a CustomerEvent (data a string, a version that is not a whole number) may still slip through Odoo; what lands there would be garbage.',
        fix: 'Reject an event unless typeof key === "string", Number.isInteger(version) and data is an object (not null); leave it out of every call.',
      });
    }

    // ---- line 5: Odoo down ----
    await wire.setDown(true);
    t.provoke(5, 'took Odoo down (connections refused), then sent customer 18 v1');
    const down = await rejection(() => Promise.resolve(t.target.upsertCustomers(client, [ev('18', 1, { name: 'Eighteen' })])));
    await wire.setDown(false);
    t.observe(5, `upsertCustomers() ${down === undefined ? 'resolved' : down === 'timeout' ? 'did not settle within 5 s' : `rejected with ${down.name} (kind ${show((down as { kind?: unknown }).kind)})`}`);
    if (!(down instanceof OdooError) || down.kind !== 'retry') {
      t.fail({
        summary: down === undefined ? 'upsertCustomers() resolved while Odoo was down: the error was swallowed.' : `upsertCustomers() did not let the client's OdooError through while Odoo was down: ${down === 'timeout' ? 'it never settled' : `${down.name}: ${down.message}`}.`,
        expected: "a rejection with the client's OdooError (kind 'retry')",
        saw: down instanceof Error ? `${down.name}: ${down.message}` : String(down ?? 'resolved'),
        why: "While Odoo is down, the receiver must park the events in a delay queue. It can only do so if the client's 'retry' error reaches it; events marked 'rejected' would be dead-lettered instead.",
        fix: "Do not catch the client's errors in upsertCustomers(): let them reach the caller.",
      });
    }
  }),
);

// Check 13.4: against the Odoo stand-in (it answers like Odoo 17: HTTP 200 for every
// error), the client returns results, and turns every failure into an OdooError whose
// kind says what to do: a rejected record ('reject'), an Odoo that is down, slow to
// answer, behind a failing proxy or with an expired session ('retry'), refused
// credentials ('fatal'). The checker switches the faults on.
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/04-odoo-client.js';
import { standIn, withResources } from './support.js';

type Kind = 'retry' | 'reject' | 'fatal';

const TABLE: [string, number, Kind, string][] = [
  ['odoo.exceptions.ValidationError', 200, 'reject', 'the record breaks a rule in Odoo: sending it again changes nothing'],
  ['odoo.exceptions.UserError', 200, 'reject', 'Odoo refuses the operation itself'],
  ['odoo.exceptions.MissingError', 200, 'reject', 'the record it refers to does not exist'],
  ['odoo.exceptions.AccessError', 200, 'reject', 'this user may not do this to this record'],
  ['odoo.exceptions.AccessDenied', 200, 'fatal', 'the credentials are wrong: every call will fail the same way, for every message'],
  ['odoo.http.SessionExpiredException', 100, 'retry', 'log in again, and it works'],
  ['psycopg2.errors.SerializationFailure', 200, 'retry', 'two transactions collided; the next try usually passes'],
  ['psycopg2.OperationalError', 200, 'retry', "Odoo's database is restarting or unreachable"],
];

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    // 0. classify(): the table every decision rests on.
    for (const [name, code, kind, why] of TABLE) {
      const got = await t.call(`classify('${name}', ${code})`, () => t.target.classify(name, code));
      if (got !== kind) {
        t.fail({
          summary:
            kind === 'reject' && got === 'retry'
              ? `classify() says 'retry' for ${name}: the event would be retried forever and never reach the dead-letter queue.`
              : kind === 'fatal'
                ? `classify() says '${got}' for AccessDenied: with a wrong API key the receiver would keep going, ${got === 'retry' ? 'retrying every message' : 'dead-lettering every message'}.`
                : `classify('${name}') is '${got}', but should be '${kind}'.`,
          expected: `'${kind}': ${why}`,
          saw: `'${got}'`,
          fix: "Session expiry (code 100) and unknown errors: 'retry'. AccessDenied: 'fatal'. ValidationError, UserError, MissingError, AccessError: 'reject'.",
        });
      }
    }

    const odoo = await standIn(defer);
    const client = t.target.createOdooClient(odoo.config);
    const uid = await t.call('authenticate()', () => client.authenticate());
    if (uid !== 2) t.fail({ summary: `authenticate() returned ${JSON.stringify(uid)} instead of the uid 2.`, fix: "Return the `result` of common.authenticate(db, user, apiKey, {})." });

    // 1. Results come back.
    const id = await t.call("execute('res.partner', 'create', [{ name: 'Ada' }])", () => client.execute('res.partner', 'create', [{ name: 'Ada', ref: 'chk:ada' }]));
    if (typeof id !== 'number') t.fail({ summary: `execute(…create…) returned ${JSON.stringify(id)} instead of the new record's id.`, fix: 'Return body.result.' });
    const rows = await t.call("execute('res.partner', 'search_read', …)", () => client.execute<{ id: number }[]>('res.partner', 'search_read', [[['ref', '=', 'chk:ada']]], { fields: ['name'] }));
    if (!Array.isArray(rows) || rows[0]?.id !== id) t.fail({ summary: 'search_read did not return the record just created.', saw: JSON.stringify(rows), fix: 'Pass args and kwargs through: [db, uid, apiKey, model, method, args, kwargs].' });

    // A call that must throw an OdooError of a given kind.
    const expectKind = async (label: string, fn: () => Promise<unknown>, kind: Kind, explain: { summary: string; why: string; fix?: string }) => {
      let result: unknown;
      try {
        result = await Promise.race([fn(), new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000))]);
      } catch (err) {
        const got = (err as { kind?: unknown }).kind;
        if (got === kind) return;
        t.fail({
          summary: `${label} threw, but with kind ${JSON.stringify(got)} instead of '${kind}': ${explain.summary}`,
          expected: `an OdooError with kind '${kind}'`,
          saw: `${(err as Error).name}: ${(err as Error).message}`,
          why: explain.why,
          fix: "Throw new OdooError(message, kind, name): the receiver decides from `kind` alone.",
        });
      }
      t.fail({
        summary: `${label} returned normally (${JSON.stringify(result)?.slice(0, 60)}) although ${explain.summary}`,
        expected: `an OdooError with kind '${kind}'`,
        saw: 'no error',
        why: explain.why,
        fix: explain.fix ?? 'Read the body: `error` present means failure, whatever the HTTP status.',
      });
    };

    // 2. A rejected record: HTTP 200 with an error in the body.
    t.log('asked Odoo to create a contact without a name (Odoo answers HTTP 200 + error ValidationError)');
    await expectKind("execute('res.partner', 'create', [{ name: false }])", () => client.execute('res.partner', 'create', [{ name: false }]), 'reject', {
      summary: 'Odoo answered HTTP 200 with an error (odoo.exceptions.ValidationError: Contacts require a name).',
      why: "Odoo's JSON-RPC answers every refusal with HTTP 200; the refusal is in the body. Treating 200 as success acks, and loses, every record Odoo rejects: the seed's second flaw.",
    });
    await expectKind("execute('res.partner', 'write', [[999999], …])", () => client.execute('res.partner', 'write', [[999999], { name: 'x' }]), 'reject', {
      summary: 'Odoo answered HTTP 200 with odoo.exceptions.MissingError.',
      why: 'The record does not exist: retrying will not create it.',
    });

    // 3. Transient trouble: retry.
    await odoo.setFaults({ failNext: 1, errorKind: 'bad-gateway' });
    t.log('made the proxy in front of Odoo answer 502 Bad Gateway once');
    await expectKind('execute() through a 502', () => client.execute('res.partner', 'search_count', [[]]), 'retry', {
      summary: 'the proxy answered 502 Bad Gateway.',
      why: 'A 5xx from the proxy means Odoo is restarting or overloaded: worth another try later.',
    });
    await odoo.setFaults({ failNext: 1, errorKind: 'serialization' });
    t.log('made Odoo answer one call with a serialization failure (HTTP 200 + psycopg2.errors.SerializationFailure)');
    await expectKind('execute() during a serialization failure', () => client.execute('res.partner', 'search_count', [[]]), 'retry', {
      summary: 'Odoo answered HTTP 200 with psycopg2.errors.SerializationFailure.',
      why: 'Two transactions collided in Odoo\'s database; the next attempt usually succeeds.',
    });
    await odoo.setFaults({ down: true });
    t.log('took Odoo down (connections refused)');
    await expectKind('execute() while Odoo is down', () => client.execute('res.partner', 'search_count', [[]]), 'retry', {
      summary: 'Odoo refused the connection (it is down).',
      why: 'fetch() throws on a network error; that must become a retry, not a crash and not a rejection.',
    });
    await odoo.setFaults({ down: false });
    await odoo.setFaults({ sessionExpired: 1 });
    t.log('made Odoo answer one call with "Odoo Session Expired" (code 100)');
    await expectKind('execute() with an expired session', () => client.execute('res.partner', 'search_count', [[]]), 'retry', {
      summary: 'Odoo answered HTTP 200 with error code 100, odoo.http.SessionExpiredException.',
      why: 'An expired session is fixed by logging in again.',
    });
    const after = await t.call('execute() after the session expired', () => client.execute('res.partner', 'search_count', [[]]));
    if (typeof after !== 'number') t.fail({ summary: 'The call after the expired session did not succeed.', fix: 'Forget the uid on session expiry and authenticate again on the next call.' });

    // 4. Refused credentials: fatal.
    await odoo.setFaults({ keysRevoked: true });
    t.log("revoked the bridge's API key in Odoo");
    await expectKind('execute() with a revoked API key', () => client.execute('res.partner', 'search_count', [[]]), 'fatal', {
      summary: 'Odoo answered HTTP 200 with odoo.exceptions.AccessDenied.',
      why: 'Wrong credentials fail every call. Retrying burns through the queue; the receiver must stop and say so.',
    });
    await odoo.setFaults({ keysRevoked: false });
    const wrong = t.target.createOdooClient({ ...odoo.config, apiKey: '0'.repeat(40) });
    t.log('called authenticate() with a wrong API key (Odoo answers result: false, no error)');
    await expectKind('authenticate() with a wrong API key', () => wrong.authenticate(), 'fatal', {
      summary: 'common.authenticate answered `false`: Odoo refused the key.',
      why: 'Odoo does not raise an error here: a refused login is result false. Taking false for a uid makes every later call fail with AccessDenied, far from the cause.',
      fix: "In authenticate(): a result that is not a positive number is a refusal: throw new OdooError(…, 'fatal', 'odoo.exceptions.AccessDenied').",
    });
  }),
);

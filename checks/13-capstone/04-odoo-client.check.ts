// Check 13.4: against the Odoo stand-in (it answers like Odoo 17: HTTP 200 for every error),
// through a proxy that records every request (what the client sent is what the check
// reads) and can answer in Odoo's place, as a load balancer does. The client sends the
// right JSON-RPC calls, logs in once (and never again because a call failed: /jsonrpc has
// no session), returns results, and turns every failure the checker causes into an
// OdooError whose kind says what to do: a rejected record ('reject'); a network error, a
// timeout, a 5xx, a 429, an HTML page, an unknown error ('retry'); refused credentials, a
// wrong URL ('fatal').
import { isDeepStrictEqual } from 'node:util';
import { defineCheck } from '../../runner/check/context.js';
import type * as Exercise from '../../exercises/13-capstone/04-odoo-client.js';
import { rejection, standIn, wireProxy, withResources, type WireRequest } from './support.js';

type Kind = 'retry' | 'reject' | 'fatal';
const LINE: Record<Kind, string> = { retry: '4a', reject: '4b', fatal: '4c' };

const NAMES: [string, Kind, string][] = [
  ['odoo.exceptions.ValidationError', 'reject', 'the record breaks a rule in Odoo: sending it again changes nothing'],
  ['odoo.exceptions.UserError', 'reject', 'Odoo refuses the operation itself'],
  ['odoo.exceptions.MissingError', 'reject', 'the record it refers to does not exist'],
  ['odoo.exceptions.AccessError', 'reject', 'this user may not do this to this record'],
  ['builtins.ValueError', 'reject', 'a value Odoo cannot use: the same value fails the same way next time'],
  ['builtins.TypeError', 'reject', 'a call Odoo cannot make sense of: it fails the same way next time'],
  ['builtins.KeyError', 'reject', 'a field or key Odoo does not know: it fails the same way next time'],
  ['odoo.exceptions.AccessDenied', 'fatal', 'the credentials are wrong: every call will fail the same way, for every message'],
  ['psycopg2.errors.SerializationFailure', 'retry', 'two transactions collided; the next try usually passes'],
  ['psycopg2.OperationalError', 'retry', "Odoo's database is restarting or unreachable"],
  ['odoo.addons.base.models.ir_cron.CronBusy', 'retry', 'an error nobody listed: trying later is safe, dropping the event is not'],
];

const HTML_200 = '<!doctype html><html><head><title>Captive portal</title></head><body>Please log in to the network</body></html>';

export default defineCheck<typeof Exercise>(async (t) =>
  withResources(async (defer) => {
    const { OdooError } = t.target;

    // ---- line 4: classify(), the table every decision rests on ----
    t.provoke(['4a', '4b', '4c'], `asked classify() about ${NAMES.length} of Odoo's exception names`);
    for (const [name, kind, why] of NAMES) {
      const got = await t.call(`classify('${name}')`, () => t.target.classify(name));
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
          fix: "AccessDenied: 'fatal'. ValidationError, UserError, MissingError, AccessError, ValueError, TypeError, KeyError: 'reject'. Everything else (psycopg2.*, the unknown): 'retry'.",
        });
      }
    }
    t.observe(['4a', '4b', '4c'], 'classify() answered as the table says');

    const odoo = await standIn(defer);
    const wire = await wireProxy(defer, odoo.url);
    const config = { ...odoo.config, url: `${wire.url}//` };
    const client = t.target.createOdooClient(config);
    const logins = () => wire.requests.filter((r) => r.rpc?.params?.service === 'common').length;
    const show = (r: WireRequest | undefined) => (r ? `${r.method} ${r.path} (${r.contentType || 'no content-type'}) ${r.body.slice(0, 200)}` : 'no request');

    /** Calls the client; the outcome, never a throw (the wire is judged first). */
    const attempt = async <R>(fn: () => Promise<R>, ms = 5000): Promise<{ value?: R; error?: Error | 'timeout' }> => {
      let value: R | undefined;
      const error = await rejection(async () => (value = await fn()), ms);
      return error ? { error } : { value };
    };

    /** What one request must look like on the wire. */
    const expectRequest = (line: number, req: WireRequest | undefined, service: string, method: string, args: unknown[], what: string) => {
      const problems = [
        !req && 'no request reached Odoo',
        req && req.method !== 'POST' && `HTTP method ${req.method}, not POST`,
        req && req.path !== '/jsonrpc' && `path ${req.path}, not /jsonrpc (config.url was "${config.url}")`,
        req && !/^application\/json\b/.test(req.contentType) && `content-type "${req.contentType}", not application/json`,
        req && (req.rpc?.jsonrpc !== '2.0' || req.rpc?.method !== 'call') && 'not a JSON-RPC 2.0 "call"',
        req && req.rpc?.id === undefined && 'no "id"',
        req && (req.rpc?.params?.service !== service || req.rpc?.params?.method !== method) && `service "${String(req.rpc?.params?.service)}", method "${String(req.rpc?.params?.method)}"`,
        req && !isDeepStrictEqual(req.rpc?.params?.args, args) && `args ${JSON.stringify(req.rpc?.params?.args)}`,
      ].filter((p): p is string => typeof p === 'string');
      t.observe(line, `the proxy saw ${show(req)}`);
      if (problems.length === 0) return;
      t.fail({
        summary: `${what} did not send what Odoo expects: ${problems[0]}.`,
        expected: `POST /jsonrpc, content-type application/json, {"jsonrpc":"2.0","method":"call","params":{"service":"${service}","method":"${method}","args":${JSON.stringify(args)}},"id":…}`,
        saw: show(req),
        why: problems[0]!.startsWith('path')
          ? 'config.url comes from the environment (ODOO_URL), with or without a trailing slash. "http://odoo:8069/" + "/jsonrpc" makes "//jsonrpc", which Odoo does not know (404).'
          : "Odoo's external API answers only this exact shape: the service, the method, and the arguments in Odoo's order.",
        fix: `fetch(\`\${config.url.replace(/\\/+$/, '')}/jsonrpc\`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service, method, args }, id: 1 }) })`,
      });
    };

    /** A call that must throw an OdooError of a given kind, odooName and message. */
    const expectFailure = async (
      label: string,
      fn: () => Promise<unknown>,
      want: { kind: Kind; name?: string | RegExp; message?: string | RegExp },
      explain: { summary: string; why: string; fix?: string },
      ms = 5000,
    ) => {
      const { value, error } = await attempt(fn, ms);
      const line = LINE[want.kind];
      t.observe(line, `${label} ${error === undefined ? `returned ${JSON.stringify(value)?.slice(0, 60)}` : error === 'timeout' ? `had not settled after ${ms / 1000} s` : `threw ${error.name} (kind ${JSON.stringify((error as { kind?: unknown }).kind)}, odooName ${JSON.stringify((error as { odooName?: unknown }).odooName)}): ${error.message}`}`);
      if (error === undefined) {
        t.fail({
          summary: `${label} returned normally (${JSON.stringify(value)?.slice(0, 60)}) although ${explain.summary}`,
          expected: `an OdooError with kind '${want.kind}'`,
          saw: 'no error',
          why: explain.why,
          fix: explain.fix ?? 'Read the body: `error` present means failure, whatever the HTTP status.',
        });
      }
      if (error === 'timeout') {
        t.fail({
          summary: `${label} had not settled after ${ms / 1000} s, although ${explain.summary}`,
          expected: `an OdooError with kind '${want.kind}', at once`,
          saw: 'a promise still pending',
          why: `${explain.why} A call that hangs holds the whole batch, and every message in it, for as long as it hangs.`,
          fix: explain.fix ?? 'fetch(…, { signal: AbortSignal.timeout(timeoutMs) }), and turn every failure into an OdooError.',
        });
      }
      const e = error as Error & { kind?: unknown; odooName?: unknown };
      if (!(e instanceof OdooError) || e.name !== 'OdooError') {
        t.fail({
          summary: `${label} threw a ${e.name} ("${e.message}") instead of an OdooError: ${explain.summary}`,
          expected: `new OdooError(message, '${want.kind}', odooName)`,
          saw: `${e.name}: ${e.message}`,
          why: `The receiver decides from an OdooError's kind alone. Any other error tells it nothing; it can only guess. ${explain.why}`,
          fix: 'Catch what fetch() and res.json() throw, and throw an OdooError with the right kind instead.',
        });
      }
      if (e.kind !== want.kind) {
        t.fail({
          summary: `${label} threw, but with kind ${JSON.stringify(e.kind)} instead of '${want.kind}': ${explain.summary}`,
          expected: `an OdooError with kind '${want.kind}'`,
          saw: `kind ${JSON.stringify(e.kind)}: ${e.message}`,
          why: explain.why,
          fix: explain.fix ?? "Throw new OdooError(message, kind, name): the receiver decides from `kind` alone.",
        });
      }
      const nameOk = typeof e.odooName === 'string' && e.odooName !== '' && (want.name === undefined || (typeof want.name === 'string' ? e.odooName === want.name : want.name.test(e.odooName)));
      const messageOk = typeof e.message === 'string' && e.message.trim() !== '' && (want.message === undefined || (typeof want.message === 'string' ? e.message.includes(want.message) : want.message.test(e.message)));
      if (!nameOk || !messageOk) {
        t.fail({
          summary: !nameOk ? `${label} threw an OdooError whose odooName is ${JSON.stringify(e.odooName)}.` : `${label} threw an OdooError whose message does not say what happened: ${JSON.stringify(e.message)}.`,
          expected: !nameOk ? `odooName ${want.name ?? 'saying what failed'}` : `a message with ${want.message ?? 'what happened'}`,
          saw: `odooName ${JSON.stringify(e.odooName)}, message ${JSON.stringify(e.message)}`,
          why: "The message travels to the dead-letter queue and the log: whoever reads it must see Odoo's own words, the HTTP status or the network error, not a guess.",
          fix: "new OdooError(`${name}: ${message}`, kind, name) for an error in the body; 'network' and the error's cause.code for a failed fetch; `http.${res.status}` and the status for an HTTP error.",
        });
      }
    };
    // ---- lines 1 and 2: authenticate() ----
    t.provoke([1, 2], `called authenticate() with config.url "${config.url}" (ending in "//"), through the recording proxy`);
    const auth = await attempt(() => client.authenticate());
    expectRequest(1, wire.requests[0], 'common', 'authenticate', [odoo.db, odoo.login, odoo.apiKey, {}], 'authenticate()');
    t.observe(2, `authenticate() ${auth.error ? `threw ${auth.error === 'timeout' ? 'nothing within 5 s' : auth.error.message}` : `returned ${JSON.stringify(auth.value)}`}`);
    if (auth.value !== 2) {
      t.fail({
        summary: `authenticate() ${auth.error ? `failed (${auth.error === 'timeout' ? 'no answer within 5 s' : auth.error.message})` : `returned ${JSON.stringify(auth.value)}`} instead of the uid 2.`,
        expected: 'the uid Odoo answered: 2',
        saw: `Odoo answered ${wire.requests[0]?.answer ?? 'nothing'}`,
        fix: 'Return the `result` of common.authenticate(db, user, apiKey, {}).',
      });
    }

    // ---- line 3: execute() returns results, logs in once ----
    t.provoke(3, "called execute('res.partner', 'create', [{ name: 'Ada', ref: 'chk:ada' }]), then search_read on it, then search_count without kwargs");
    const created = await attempt(() => client.execute('res.partner', 'create', [{ name: 'Ada', ref: 'chk:ada' }]));
    expectRequest(3, wire.requests.at(-1), 'object', 'execute_kw', [odoo.db, 2, odoo.apiKey, 'res.partner', 'create', [{ name: 'Ada', ref: 'chk:ada' }], {}], "execute('res.partner', 'create', …)");
    const ada = odoo.records('res.partner').find((p) => p.ref === 'chk:ada');
    if (created.value !== ada?.id) {
      t.fail({ summary: `execute(…create…) ${created.error ? `failed: ${created.error === 'timeout' ? 'no answer' : created.error.message}` : `returned ${JSON.stringify(created.value)}`} instead of the new record's id ${ada?.id}.`, expected: `${ada?.id}`, fix: 'Return body.result.' });
    }
    const rows = await attempt(() => client.execute('res.partner', 'search_read', [[['ref', '=', 'chk:ada']]], { fields: ['name'] }));
    expectRequest(3, wire.requests.at(-1), 'object', 'execute_kw', [odoo.db, 2, odoo.apiKey, 'res.partner', 'search_read', [[['ref', '=', 'chk:ada']]], { fields: ['name'] }], "execute('res.partner', 'search_read', …, { fields: ['name'] })");
    if (!isDeepStrictEqual(rows.value, [{ id: ada?.id, name: 'Ada' }])) {
      t.fail({ summary: 'search_read did not return what Odoo answered.', expected: JSON.stringify([{ id: ada?.id, name: 'Ada' }]), saw: rows.error ? String(rows.error) : JSON.stringify(rows.value), fix: 'Return body.result as it is.' });
    }
    const counted = await attempt(() => client.execute('res.partner', 'search_count', [[]]));
    expectRequest(3, wire.requests.at(-1), 'object', 'execute_kw', [odoo.db, 2, odoo.apiKey, 'res.partner', 'search_count', [[]], {}], "execute('res.partner', 'search_count', [[]]) (no kwargs)");
    t.observe(3, `search_count returned ${JSON.stringify(counted.value)}; ${logins()} call(s) to common.authenticate so far`);
    if (counted.value !== odoo.records('res.partner').length || logins() !== 1) {
      t.fail({
        summary: logins() !== 1 ? `The client called common.authenticate ${logins()} times for 1 authenticate() and 3 execute() calls: it logs in again before every call.` : `search_count returned ${JSON.stringify(counted.value)}.`,
        expected: 'one login, reused by every execute()',
        saw: `${logins()} logins; search_count ${JSON.stringify(counted.value)}`,
        why: 'A login per call doubles the requests to Odoo, and the receiver makes thousands of calls an hour.',
        fix: 'Keep the uid authenticate() returned; execute() calls authenticate() only while it has none.',
      });
    }

    // ---- line 4b: Odoo refuses the record (HTTP 200, the refusal in the body) ----
    t.provoke('4b', 'asked Odoo to create a contact without a name (HTTP 200 + ValidationError), to write a record that does not exist (MissingError), and called search_count with args that are not a list (TypeError)');
    await expectFailure("execute('res.partner', 'create', [{ name: false }])", () => client.execute('res.partner', 'create', [{ name: false }]), { kind: 'reject', name: 'odoo.exceptions.ValidationError', message: 'Contacts require a name' }, {
      summary: 'Odoo answered HTTP 200 with an error (odoo.exceptions.ValidationError: Contacts require a name).',
      why: "Odoo's JSON-RPC answers every refusal with HTTP 200; the refusal is in the body. Treating 200 as success acks, and loses, every record Odoo rejects: the original project's second flaw.",
    });
    await expectFailure("execute('res.partner', 'write', [[999999], …])", () => client.execute('res.partner', 'write', [[999999], { name: 'x' }]), { kind: 'reject', name: 'odoo.exceptions.MissingError', message: 'Record does not exist' }, {
      summary: 'Odoo answered HTTP 200 with odoo.exceptions.MissingError.',
      why: 'The record does not exist: retrying will not create it.',
    });
    await expectFailure("execute('res.partner', 'search_count', 'not a list')", () => client.execute('res.partner', 'search_count', 'not a list' as unknown as unknown[]), { kind: 'reject', name: 'builtins.TypeError', message: 'args must be a list' }, {
      summary: 'Odoo answered HTTP 200 with builtins.TypeError.',
      why: 'Odoo could not make sense of the call: the same call fails the same way next time.',
    });
    t.observe('4b', `${logins()} call(s) to common.authenticate after those errors`);
    if (logins() !== 1) {
      t.fail({ summary: `After Odoo refused a record, the client logged in again (${logins()} logins so far).`, why: '/jsonrpc keeps no session: Odoo checks db, uid and key on every call, so the uid stays valid. Forgetting it after an error adds a login per failed record.', fix: 'Keep the uid for the client\'s life; execute() calls authenticate() only while it has none.' });
    }

    // ---- line 4a: trouble that passes ----
    t.provoke('4a', 'made the proxy answer 502, 500 and 429, then an HTML page with status 200, then an error without data; made Odoo fail a call with a serialization failure; took the proxy down; made a call hang');
    const loginsBeforeTrouble = logins();
    await odoo.setFaults({ failNext: 1, errorKind: 'bad-gateway' });
    await expectFailure('execute() through a 502 Bad Gateway', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', name: /502/, message: '502' }, {
      summary: 'the proxy in front of Odoo answered 502 Bad Gateway.',
      why: 'A 5xx from the proxy means Odoo is restarting or overloaded: worth another try later.',
    });
    wire.next({ status: 500, body: '<h1>Internal Server Error</h1>', contentType: 'text/html' });
    await expectFailure('execute() through a 500 Internal Server Error', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', name: /500/, message: '500' }, {
      summary: 'the server answered HTTP 500.',
      why: 'Every 5xx (500 included) is the server failing, not the record: try again later.',
      fix: 'res.status >= 500 || res.status === 429: retry.',
    });
    wire.next({ status: 429, body: '<h1>Too Many Requests</h1>', contentType: 'text/html' });
    await expectFailure('execute() through a 429 Too Many Requests', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', name: /429/, message: '429' }, {
      summary: 'the proxy answered 429 Too Many Requests (a rate limit).',
      why: 'A rate limit says "slow down", not "stop": the same call passes a little later. Treating it as fatal stops the receiver at the first burst.',
      fix: 'res.status >= 500 || res.status === 429: retry.',
    });
    wire.next({ status: 200, body: HTML_200, contentType: 'text/html' });
    await expectFailure('execute() answered by an HTML page with status 200', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry' }, {
      summary: 'something between the client and Odoo answered HTTP 200 with an HTML page.',
      why: 'A captive portal, a maintenance page or a misrouted proxy answer 200 with HTML. res.json() then throws a SyntaxError; it is not Odoo refusing the record, so: try later.',
      fix: "Wrap res.json() in try/catch: a body that is not JSON is an OdooError(…, 'retry', 'http.invalid-body').",
    });
    wire.next({ status: 200, body: JSON.stringify({ jsonrpc: '2.0', id: 1, error: { code: 200, message: 'Odoo Server Error' } }) });
    await expectFailure('execute() answered by an error without data', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', message: 'Odoo Server Error' }, {
      summary: 'Odoo answered an error without `data` (no exception name).',
      why: "An error nobody can name is not a reason to drop the event: try later. Reading error.data.name without `?.` crashes on it instead.",
      fix: "name = error.data?.name ?? 'unknown', message = error.data?.message ?? error.message.",
    });
    await odoo.setFaults({ failNext: 1, errorKind: 'serialization' });
    await expectFailure('execute() during a serialization failure', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', name: 'psycopg2.errors.SerializationFailure', message: 'could not serialize' }, {
      summary: 'Odoo answered HTTP 200 with psycopg2.errors.SerializationFailure.',
      why: "Two transactions collided in Odoo's database; the next attempt usually succeeds.",
    });
    await wire.setDown(true);
    t.log('took Odoo down (connections refused)');
    await expectFailure('execute() while Odoo is down', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'retry', message: /ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET/ }, {
      summary: 'Odoo refused the connection (it is down).',
      why: 'fetch() throws on a network error ("fetch failed", the reason in err.cause.code); that must become a retry, not a crash and not a rejection.',
      fix: "try { res = await fetch(…) } catch (err) { throw new OdooError(`Odoo is unreachable (${err.cause?.code ?? err.name})`, 'retry', 'network') }",
    });
    await wire.setDown(false);
    const slow = t.target.createOdooClient({ ...config, timeoutMs: 300 });
    await attempt(() => slow.authenticate());
    wire.next('hang');
    t.log('made the next call hang (no answer at all), with config.timeoutMs 300');
    await expectFailure('execute() with timeoutMs 300 on a call that never gets an answer', () => slow.execute('res.partner', 'search_count', [[]]), { kind: 'retry', message: /time/i }, {
      summary: 'Odoo never answered and config.timeoutMs is 300 ms.',
      why: 'A hung connection (a dead proxy, a stuck worker) would hold the batch forever. A timeout turns it into a retry.',
      fix: 'fetch(endpoint, { …, signal: AbortSignal.timeout(timeoutMs) }); fetch then throws a TimeoutError: an OdooError of kind retry.',
    }, 2000);
    const after = await attempt(() => client.execute('res.partner', 'search_count', [[]]));
    const relogins = logins() - loginsBeforeTrouble - 1; // the second client (timeoutMs 300) logged in once
    t.observe(3, `after its 7 failed calls, the client logged in ${relogins} more time(s), then search_count returned ${JSON.stringify(after.value)}`);
    if (typeof after.value !== 'number' || relogins !== 0) {
      t.fail({
        summary: typeof after.value !== 'number' ? `Once Odoo answered again, execute() still failed: ${after.error === 'timeout' ? 'no answer within 5 s' : after.error?.message}.` : `The failed calls made the client log in again (${relogins} new login(s)).`,
        expected: 'no new login: the call, which succeeds',
        saw: wire.requests.slice(-2).map(show).join(' | '),
        why: "/jsonrpc keeps no session (Odoo's route is auth=\"none\", save_session=False): Odoo checks db, uid and key on every call, so there is nothing to renew. A 502, a time-out or a database error says nothing about the uid; logging in again after each one adds a request per failed call, just when Odoo struggles.",
        fix: 'Keep the uid for the client\'s life; execute() calls authenticate() only while it has none.',
      });
    }

    // ---- line 4c: no retry will help ----
    t.provoke('4c', "called authenticate() with config.url pointing at a path Odoo does not serve (404), made the proxy answer 204 No Content, revoked the API key, and logged in with a wrong key");
    const lost = t.target.createOdooClient({ ...config, url: `${wire.url}/odoo` });
    await expectFailure('authenticate() with config.url ".../odoo" (Odoo answers 404)', () => lost.authenticate(), { kind: 'fatal', name: /404/, message: '404' }, {
      summary: 'Odoo answered HTTP 404 Not Found: config.url is wrong.',
      why: 'A wrong URL fails every call the same way. Retrying parks every event in the delay queues forever; stopping with the status in the message tells a person what to fix.',
      fix: "Any status other than 200 that is neither 5xx nor 429: an OdooError of kind 'fatal'.",
    });
    wire.next({ status: 204, body: '' });
    await expectFailure('execute() answered 204 No Content', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'fatal', name: /204/, message: '204' }, {
      summary: 'the server answered 204 No Content: whatever answers there is not Odoo\'s JSON-RPC.',
      why: 'Any status other than 200 that is neither 5xx nor 429 means the URL points at something else; a 204 also has no body at all (res.body is null).',
      fix: "Any status other than 200 that is neither 5xx nor 429: an OdooError of kind 'fatal' (and res.body?.cancel(): there may be no body).",
    });
    await odoo.setFaults({ keysRevoked: true });
    await expectFailure('execute() with a revoked API key', () => client.execute('res.partner', 'search_count', [[]]), { kind: 'fatal', name: 'odoo.exceptions.AccessDenied', message: 'Access Denied' }, {
      summary: 'Odoo answered HTTP 200 with odoo.exceptions.AccessDenied.',
      why: 'Wrong credentials fail every call. Retrying burns through the queue; the receiver must stop and say so.',
    });
    await odoo.setFaults({ keysRevoked: false });
    const wrong = t.target.createOdooClient({ ...config, apiKey: '0'.repeat(40) });
    t.provoke(2, 'called authenticate() with a wrong API key (Odoo answers result: false, no error)');
    await expectFailure('authenticate() with a wrong API key', () => wrong.authenticate(), { kind: 'fatal' }, {
      summary: 'common.authenticate answered `false`: Odoo refused the key.',
      why: 'Odoo does not raise an error here: a refused login is result false. Taking false for a uid makes every later call fail with AccessDenied, far from the cause.',
      fix: "In authenticate(): a result that is not a number is a refusal: throw new OdooError(…, 'fatal', 'odoo.exceptions.AccessDenied').",
    });
    t.observe(2, 'authenticate() with the wrong key threw a fatal OdooError');

  }),
);

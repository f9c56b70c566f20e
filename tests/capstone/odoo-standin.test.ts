// The Odoo stand-in must be faithful where the bridge depends on it. A published
// third-party client, @fernandoslim/odoo-jsonrpc (it speaks /jsonrpc with API keys:
// common.authenticate, then object.execute_kw), runs against it unchanged; raw requests
// pin down the envelopes Odoo 17 writes (HTTP 200 for every error, error.data.name ...).
// odoo-await is not used here: it speaks XML-RPC (/xmlrpc/2/...), which the stand-in does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import jsonrpcPkg from '@fernandoslim/odoo-jsonrpc';
import { startOdooStandIn, type OdooStandIn } from '../../capstone/odoo/server.js';

// A CommonJS package: Node's ESM loader hands over module.exports (class under .default),
// vitest's interop hands over the default export itself.
type ClientClass = typeof jsonrpcPkg.default;
const OdooJSONRpc: ClientClass = (jsonrpcPkg as unknown as { default?: ClientClass }).default ?? (jsonrpcPkg as unknown as ClientClass);
let odoo: OdooStandIn;

async function rpc(service: string, method: string, args: unknown[], url = odoo.url) {
  const res = await fetch(`${url}/jsonrpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service, method, args }, id: 7 }),
  });
  return { status: res.status, body: (await res.json()) as { jsonrpc: string; id: number; result?: any; error?: any } };
}
const kw = (model: string, method: string, args: unknown[], kwargs: Record<string, unknown> = {}, key = odoo.apiKey) =>
  rpc('object', 'execute_kw', [odoo.db, 2, key, model, method, args, kwargs]);

function client(apiKey = odoo.apiKey) {
  const u = new URL(odoo.url);
  return new OdooJSONRpc({ baseUrl: `${u.protocol}//${u.hostname}`, port: Number(u.port), db: odoo.db, username: 'admin', apiKey });
}

beforeAll(async () => {
  odoo = await startOdooStandIn({ db: 'fidelity' });
});
afterAll(async () => {
  await odoo?.stop();
});

describe('a published JSON-RPC client works unchanged', () => {
  it('authenticates with an API key and does CRUD through execute_kw', async () => {
    const c = client();
    const auth = await c.connect();
    expect(auth).toEqual({ uid: 2 });
    const id = await c.create('res.partner', { name: 'Ada Lovelace', email: 'ada@example.com' });
    expect(typeof id).toBe('number');
    const rows = await c.searchRead<{ id: number; name: string; email: string }>('res.partner', [['email', '=', 'ada@example.com']], ['name', 'email']);
    expect(rows).toEqual([{ id, name: 'Ada Lovelace', email: 'ada@example.com' }]);
    expect(await c.update('res.partner', id, { city: 'London' })).toBe(true);
    const [read] = await c.read<{ city: string; country_id: unknown }>('res.partner', id, ['city', 'country_id']);
    expect(read).toMatchObject({ city: 'London', country_id: false });
    expect(await c.search('res.partner', [['name', 'ilike', 'lovelace']])).toEqual([id]);
    const fields = await c.getFields('res.partner');
    expect(fields.name).toMatchObject({ type: 'char', string: 'Name' });
    expect(await c.delete('res.partner', id)).toBe(true);
    expect(await c.search('res.partner', [['id', '=', id]])).toEqual([]);
  });

  it('external ids: createExternalId (a batch create, so it returns a list) and the lookups', async () => {
    const c = client();
    const id = await c.create('res.partner', { name: 'Grace Hopper' });
    const made = await c.createExternalId('res.partner', id, 'grace', 'fidelity');
    expect(Array.isArray(made)).toBe(true); // typed Promise<number>, but Odoo returns [id] for a list of dicts
    expect(await c.searchByExternalId('grace')).toBe(id);
    const rec = await c.readByExternalId<{ name: string }>('grace', ['name']);
    expect(rec.name).toBe('Grace Hopper');
    await expect(c.createExternalId('res.partner', id, 'grace', 'fidelity')).rejects.toThrow(/same external ID/);
  });

  it('surfaces Odoo errors (HTTP 200 + error) as exceptions with data.message', async () => {
    const c = client();
    await expect(c.create('res.partner', { name: false })).rejects.toThrow('The operation cannot be completed: Contacts require a name');
    await expect(c.call_kw('res.partner', 'no_such_method', [])).rejects.toThrow("The method 'no_such_method' does not exist on the model 'res.partner'");
    await expect(c.call_kw('no.such.model', 'search', [[]])).rejects.toThrow("Object no.such.model doesn't exist");
  });

  it('a wrong API key: authenticate answers false, the client ends up without a uid', async () => {
    const c = client('0'.repeat(40));
    const auth = await c.connect(); // the client reads a non-existent `odoo_error` key, so it does not throw here
    expect(auth).toEqual({ uid: false });
    await expect(c.call_kw('res.partner', 'search', [[]])).rejects.toThrow(/connect with credentials or api key/);
  });
});

describe('envelopes, byte for byte where it matters', () => {
  it('common.version, login and authenticate', async () => {
    const v = await rpc('common', 'version', []);
    expect(v).toEqual({ status: 200, body: { jsonrpc: '2.0', id: 7, result: expect.objectContaining({ server_version: '17.0', protocol_version: 1 }) } });
    expect((await rpc('common', 'login', [odoo.db, 'admin', odoo.apiKey])).body.result).toBe(2);
    expect((await rpc('common', 'authenticate', [odoo.db, 'admin', 'wrong', {}])).body.result).toBe(false);
    expect((await rpc('common', 'authenticate', [odoo.db, 'admin', 'admin', {}])).body.result).toBe(2); // the password works over RPC too
  });

  it('an error is HTTP 200 with error.code 200, "Odoo Server Error" and serialize_exception() data', async () => {
    const { status, body } = await kw('res.partner', 'create', [{ name: '' }]);
    expect(status).toBe(200);
    expect(body.result).toBeUndefined();
    expect(body.error).toEqual({
      code: 200,
      message: 'Odoo Server Error',
      data: {
        name: 'odoo.exceptions.ValidationError',
        debug: expect.stringMatching(/^Traceback \(most recent call last\):/),
        message: 'The operation cannot be completed: Contacts require a name',
        arguments: ['The operation cannot be completed: Contacts require a name'],
        context: {},
      },
    });
  });

  it('a wrong key on an object call is AccessDenied; a wrong database is psycopg2.OperationalError', async () => {
    const denied = await kw('res.partner', 'search', [[]], {}, 'nope');
    expect(denied.status).toBe(200);
    expect(denied.body.error.data).toMatchObject({ name: 'odoo.exceptions.AccessDenied', message: 'Access Denied' });
    const nodb = await rpc('object', 'execute_kw', ['nodb', 2, odoo.apiKey, 'res.partner', 'search', [[]]]);
    expect(nodb.body.error.data.name).toBe('psycopg2.OperationalError');
  });

  it('MissingError, AccessError for private methods, and a missing positional argument', async () => {
    const missing = await kw('res.partner', 'write', [[999999], { name: 'x' }]);
    expect(missing.body.error.data.name).toBe('odoo.exceptions.MissingError');
    const priv = await kw('res.partner', '_load_records', [[]]);
    expect(priv.body.error.data.name).toBe('odoo.exceptions.AccessError');
    const res = await fetch(`${odoo.url}/jsonrpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'call', params: { service: 'common' }, id: 1 }) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).error.data.name).toBe('builtins.TypeError');
  });

  it('only a body that is not JSON gets a non-200 status (400)', async () => {
    const res = await fetch(`${odoo.url}/jsonrpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    expect(res.status).toBe(400);
  });

  it('one transaction per call: a failing batch create leaves nothing behind', async () => {
    const before = (await kw('res.partner', 'search_count', [[]])).body.result;
    const r = await kw('res.partner', 'create', [[{ name: 'ok' }, { name: '' }]]);
    expect(r.body.error.data.name).toBe('odoo.exceptions.ValidationError');
    expect((await kw('res.partner', 'search_count', [[]])).body.result).toBe(before);
  });
});

describe('load(): create-or-update by external id, errors in the result', () => {
  const fields = ['id', 'name', 'email', 'country_id'];
  it('is idempotent: the same rows twice give the same ids', async () => {
    const rows = [['fid.c1', 'One', 'one@x', 'Belgium'], ['fid.c2', 'Two', '', '']];
    const a = (await kw('res.partner', 'load', [fields, rows])).body.result;
    const b = (await kw('res.partner', 'load', [fields, rows])).body.result;
    expect(a.messages).toEqual([]);
    expect(a.ids).toHaveLength(2);
    expect(b.ids).toEqual(a.ids);
    const read = (await kw('res.partner', 'read', [a.ids, ['name', 'country_id', 'email']])).body.result;
    expect(read[0].country_id[1]).toBe('Belgium');
    expect(read[1].email).toBe(false);
  });

  it('a bad row: HTTP 200, no error member, ids false, messages name the row, nothing written', async () => {
    const r = await kw('res.partner', 'load', [fields, [['fid.c3', 'Three', '', ''], ['fid.c4', 'Four', '', 'Atlantis'], ['fid.c5', '', '', '']]]);
    expect(r.status).toBe(200);
    expect(r.body.error).toBeUndefined();
    expect(r.body.result.ids).toBe(false);
    expect(r.body.result.messages).toEqual([
      expect.objectContaining({ type: 'error', record: 1, field: 'country_id', message: "No matching record found for name 'Atlantis' in field 'Country'" }),
      expect.objectContaining({ type: 'error', record: 2, message: 'The operation cannot be completed: Contacts require a name' }),
    ]);
    const found = (await kw('ir.model.data', 'search_count', [[['module', '=', 'fid'], ['name', '=', 'c3']]])).body.result;
    expect(found).toBe(0);
  });

  it('custom fields: create x_ fields through ir.model.fields, then use them', async () => {
    const [model] = (await kw('ir.model', 'search_read', [[['model', '=', 'res.partner']], ['id']])).body.result;
    const made = await kw('ir.model.fields', 'create', [{ model_id: model.id, name: 'x_fid_version', field_description: 'Version', ttype: 'integer' }]);
    expect(typeof made.body.result).toBe('number');
    const bad = await kw('ir.model.fields', 'create', [{ model_id: model.id, name: 'fid_version', field_description: 'V', ttype: 'integer' }]);
    expect(bad.body.error.data.name).toBe('odoo.exceptions.ValidationError');
    const r = (await kw('res.partner', 'load', [['id', 'name', 'x_fid_version'], [['fid.v1', 'Vee', '3']]])).body.result;
    const [rec] = (await kw('res.partner', 'read', [r.ids, ['x_fid_version']])).body.result;
    expect(rec.x_fid_version).toBe(3);
  });
});

describe('faults', () => {
  it('down refuses connections, and comes back on the same port', async () => {
    await odoo.setFaults({ down: true });
    await expect(fetch(`${odoo.url}/jsonrpc`, { method: 'POST', body: '{}' })).rejects.toThrow();
    await odoo.setFaults({ down: false });
    expect((await rpc('common', 'version', [])).status).toBe(200);
  });

  it('502 from the proxy, serialization failures, slowness', async () => {
    await odoo.setFaults({ failNext: 1, errorKind: 'bad-gateway' });
    const res = await fetch(`${odoo.url}/jsonrpc`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(502);
    await res.text();
    await odoo.setFaults({ failNext: 1, errorKind: 'serialization' });
    expect((await rpc('common', 'version', [])).body.error.data.name).toBe('psycopg2.errors.SerializationFailure');
    await odoo.setFaults({ slowMs: 150 });
    const t0 = Date.now();
    await rpc('common', 'version', []);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    await odoo.setFaults({ slowMs: 0 });
  });

  it('no session to expire: revoked keys are AccessDenied (code 200) on the next call; a rejected field is a ValidationError', async () => {
    expect('sessionExpired' in odoo.faults()).toBe(false);
    await odoo.setFaults({ keysRevoked: true });
    expect((await kw('res.partner', 'search', [[]])).body.error).toMatchObject({ code: 200, message: 'Odoo Server Error', data: { name: 'odoo.exceptions.AccessDenied' } });
    expect((await rpc('common', 'authenticate', [odoo.db, 'admin', odoo.apiKey, {}])).body.result).toBe(false);
    await odoo.setFaults({ keysRevoked: false, reject: { field: 'email', pattern: '@invalid$', message: 'Invalid email' } });
    const rej = await kw('res.partner', 'create', [{ name: 'x', email: 'x@invalid' }]);
    expect(rej.body.error.data).toMatchObject({ name: 'odoo.exceptions.ValidationError', message: 'Invalid email' });
    const viaLoad = (await kw('res.partner', 'load', [['id', 'name', 'email'], [['fid.r1', 'r', 'r@invalid']]])).body.result;
    expect(viaLoad.ids).toBe(false);
    expect(viaLoad.messages[0].message).toBe('Invalid email');
    await odoo.setFaults({ reject: null });
  });

  it('dropAfterCommit: the write happens, the answer never arrives', async () => {
    await odoo.setFaults({ dropAfterCommit: 1 });
    await expect(kw('res.partner', 'create', [{ name: 'Dropped', ref: 'drop-1' }])).rejects.toThrow();
    expect((await kw('res.partner', 'search_count', [[['ref', '=', 'drop-1']]])).body.result).toBe(1);
  });

  it('the admin endpoint switches faults over HTTP', async () => {
    const set = await fetch(`${odoo.adminUrl}/faults`, { method: 'POST', body: JSON.stringify({ slowMs: 5 }) });
    expect(((await set.json()) as any).slowMs).toBe(5);
    await fetch(`${odoo.adminUrl}/reset`, { method: 'POST' });
    expect(odoo.faults().slowMs).toBe(0);
  });
});

// A tiny in-memory ORM with the semantics of Odoo's that a bridge relies on:
// create/write/read/search/search_read/search_count/unlink/fields_get/load, domains in
// Polish notation, external ids (ir.model.data, unique per module+name), custom x_
// fields created through ir.model.fields, access rights, and one transaction per call
// (an error rolls back everything the call did, as Odoo's cursor does).
import {
  AccessError,
  MissingError,
  OdooException,
  PyAttributeError,
  PyTypeError,
  PyValueError,
  UserError,
  ValidationError,
} from './errors.js';

export type FieldType = 'char' | 'text' | 'html' | 'integer' | 'float' | 'boolean' | 'many2one' | 'selection' | 'datetime';

export interface FieldDef {
  type: FieldType;
  string: string;
  required?: boolean;
  readonly?: boolean;
  relation?: string;
  selection?: [string, string][];
  default?: unknown;
  /** Created through ir.model.fields (state "manual"). */
  manual?: boolean;
}

export type Rec = Record<string, unknown> & { id: number };

interface ModelDef {
  name: string;
  description: string;
  fields: Record<string, FieldDef>;
  records: Map<number, Rec>;
  nextId: number;
}

export interface User {
  uid: number;
  login: string;
  password: string;
  apiKeys: string[];
  /** A user without write access to contacts: writes raise AccessError. */
  readonly?: boolean;
  active: boolean;
}

/** A "constraint" switched on at runtime: values of `field` matching `pattern` raise ValidationError. */
export interface RejectRule {
  model?: string;
  field: string;
  pattern?: string;
  message?: string;
}

const AUDIT: Record<string, FieldDef> = {
  id: { type: 'integer', string: 'ID', readonly: true },
  display_name: { type: 'char', string: 'Display Name', readonly: true },
  create_date: { type: 'datetime', string: 'Created on', readonly: true },
  write_date: { type: 'datetime', string: 'Last Updated on', readonly: true },
  create_uid: { type: 'many2one', string: 'Created by', relation: 'res.users', readonly: true },
  write_uid: { type: 'many2one', string: 'Last Updated by', relation: 'res.users', readonly: true },
};

export class Orm {
  readonly models = new Map<string, ModelDef>();
  readonly users = new Map<number, User>();
  reject: RejectRule | null = null;
  /** Called after a call that changed records committed: (model, ids, when). */
  onCommit?: (changes: { model: string; ids: number[] }[], at: number) => void;
  /** "module.name" -> ir.model.data record: Odoo has a unique index there, we keep a map. */
  private readonly xmlids = new Map<string, Rec>();
  private undo: (() => void)[] | null = null;
  private changed: Map<string, Set<number>> = new Map();
  /** Like Odoo's cr.now(): every record a call creates or writes gets the transaction's timestamp. */
  private txNow: string | undefined;
  /** Default values per model, computed once (a new custom field resets them). */
  private readonly defaultsOf = new Map<ModelDef, Record<string, unknown>>();

  constructor() {
    this.define('res.users', 'User', {
      login: { type: 'char', string: 'Login', required: true },
      name: { type: 'char', string: 'Name', required: true },
      active: { type: 'boolean', string: 'Active', default: true },
    });
    this.define('res.country', 'Country', {
      name: { type: 'char', string: 'Country Name', required: true },
      code: { type: 'char', string: 'Country Code' },
    });
    this.define('res.partner', 'Contact', {
      name: { type: 'char', string: 'Name' },
      email: { type: 'char', string: 'Email' },
      phone: { type: 'char', string: 'Phone' },
      city: { type: 'char', string: 'City' },
      country_id: { type: 'many2one', string: 'Country', relation: 'res.country' },
      ref: { type: 'char', string: 'Reference' },
      comment: { type: 'html', string: 'Notes' },
      active: { type: 'boolean', string: 'Active', default: true },
      is_company: { type: 'boolean', string: 'Is a Company', default: false },
      type: {
        type: 'selection',
        string: 'Address Type',
        default: 'contact',
        selection: [
          ['contact', 'Contact'],
          ['invoice', 'Invoice Address'],
          ['delivery', 'Delivery Address'],
          ['other', 'Other Address'],
        ],
      },
    });
    this.define('ir.model', 'Models', {
      model: { type: 'char', string: 'Model', required: true },
      name: { type: 'char', string: 'Model Description', required: true },
    });
    this.define('ir.model.fields', 'Fields', {
      model_id: { type: 'many2one', string: 'Model', relation: 'ir.model', required: true },
      model: { type: 'char', string: 'Model Name' },
      name: { type: 'char', string: 'Field Name', required: true },
      field_description: { type: 'char', string: 'Field Label', required: true },
      ttype: { type: 'char', string: 'Field Type', required: true },
      relation: { type: 'char', string: 'Related Model' },
      required: { type: 'boolean', string: 'Required' },
      state: { type: 'selection', string: 'Type', default: 'manual', selection: [['manual', 'Custom Field'], ['base', 'Base Field']] },
    });
    this.define('ir.model.data', 'Model Data', {
      name: { type: 'char', string: 'External Identifier', required: true },
      module: { type: 'char', string: 'Module', required: true },
      model: { type: 'char', string: 'Model Name', required: true },
      res_id: { type: 'integer', string: 'Record ID' },
      noupdate: { type: 'boolean', string: 'Non Updatable', default: false },
      complete_name: { type: 'char', string: 'Complete ID', readonly: true },
    });

    // The records every fresh Odoo database has.
    this.seed('res.users', { id: 1, login: '__system__', name: 'OdooBot', active: false });
    this.seed('res.users', { id: 2, login: 'admin', name: 'Mitchell Admin', active: true });
    this.seed('res.partner', { id: 1, name: 'YourCompany', is_company: true });
    this.seed('res.partner', { id: 2, name: 'OdooBot' });
    this.seed('res.partner', { id: 3, name: 'Mitchell Admin', email: 'admin@yourcompany.example.com' });
    const countries: [string, string][] = [
      ['Belgium', 'BE'], ['Brazil', 'BR'], ['France', 'FR'], ['Germany', 'DE'], ['Portugal', 'PT'],
      ['Spain', 'ES'], ['United Kingdom', 'GB'], ['United States', 'US'], ['Mexico', 'MX'], ['Japan', 'JP'],
    ];
    for (const [name, code] of countries) {
      const id = this.seed('res.country', { name, code });
      this.seed('ir.model.data', { module: 'base', name: code.toLowerCase(), model: 'res.country', res_id: id, noupdate: true });
    }
    this.seed('ir.model.data', { module: 'base', name: 'main_partner', model: 'res.partner', res_id: 1, noupdate: true });
    this.seed('ir.model.data', { module: 'base', name: 'partner_admin', model: 'res.partner', res_id: 3, noupdate: true });
    this.seed('ir.model.data', { module: 'base', name: 'user_admin', model: 'res.users', res_id: 2, noupdate: true });
    for (const m of this.models.values()) {
      const modelId = this.seed('ir.model', { model: m.name, name: m.description });
      for (const [fname, f] of Object.entries(m.fields)) {
        this.seed('ir.model.fields', {
          model_id: modelId, model: m.name, name: fname, field_description: f.string, ttype: f.type,
          relation: f.relation ?? false, required: !!f.required, state: 'base',
        });
      }
    }
  }

  /** A user who can log in over RPC (uid 2 is the admin of a fresh database). */
  addUser(user: User) {
    this.users.set(user.uid, user);
    const m = this.models.get('res.users')!;
    if (!m.records.has(user.uid)) this.seed('res.users', { id: user.uid, login: user.login, name: user.login, active: true });
  }

  private define(name: string, description: string, fields: Record<string, FieldDef>) {
    this.models.set(name, { name, description, fields: { ...AUDIT, ...fields }, records: new Map(), nextId: 1 });
  }

  private seed(model: string, vals: Record<string, unknown>): number {
    const m = this.models.get(model)!;
    const id = (vals.id as number | undefined) ?? m.nextId;
    m.nextId = Math.max(m.nextId, id + 1);
    const rec: Rec = { ...this.defaults(m), ...vals, id, create_uid: 1, write_uid: 1, create_date: now(), write_date: now() };
    rec.display_name = rec.name ?? false;
    if (model === 'ir.model.data') {
      rec.complete_name = `${rec.module}.${rec.name}`;
      this.xmlids.set(rec.complete_name as string, rec);
    }
    m.records.set(id, rec);
    return id;
  }

  private defaults(m: ModelDef): Record<string, unknown> {
    let out = this.defaultsOf.get(m);
    if (!out) {
      out = {};
      for (const [k, f] of Object.entries(m.fields)) out[k] = f.default ?? false;
      this.defaultsOf.set(m, out);
    }
    return out;
  }

  model(name: string): ModelDef {
    const m = this.models.get(name);
    if (!m) throw UserError(`Object ${name} doesn't exist`);
    return m;
  }

  // ---- transactions ---------------------------------------------------------

  /** Runs one RPC call as one transaction: all of it, or (on an exception) none of it. */
  transaction<T>(fn: () => T): T {
    this.undo = [];
    this.changed = new Map();
    this.txNow = now();
    try {
      const result = fn();
      const changes = [...this.changed].map(([model, ids]) => ({ model, ids: [...ids] }));
      if (changes.length) this.onCommit?.(changes, Date.now());
      return result;
    } catch (err) {
      for (const u of this.undo.reverse()) u();
      throw err;
    } finally {
      this.undo = null;
      this.txNow = undefined;
    }
  }

  /** A savepoint inside the transaction (load() uses one per row). */
  private savepoint<T>(fn: () => T): T {
    const mark = this.undo!.length;
    try {
      return fn();
    } catch (err) {
      const undone = this.undo!.splice(mark);
      for (const u of undone.reverse()) u();
      throw err;
    }
  }

  private touch(model: string, id: number) {
    let set = this.changed.get(model);
    if (!set) this.changed.set(model, (set = new Set()));
    set.add(id);
  }

  // ---- the methods execute_kw may call -------------------------------------

  call(uid: number, modelName: string, method: string, args: unknown[], kwargs: Record<string, unknown>): unknown {
    const m = this.model(modelName);
    if (method.startsWith('_')) throw AccessError(`Private methods (such as ${modelName}.${method}) cannot be called remotely.`);
    const arg = (i: number, name: string, dflt?: unknown) => (args.length > i ? args[i] : name in kwargs ? kwargs[name] : dflt);
    switch (method) {
      case 'create': {
        const vals = arg(0, 'vals_list');
        this.checkWrite(uid, m, 'create');
        if (Array.isArray(vals)) return vals.map((v) => this.create(uid, m, asDict(v)));
        return this.create(uid, m, asDict(vals));
      }
      case 'write': {
        const ids = asIds(arg(0, 'ids'));
        this.checkWrite(uid, m, 'write');
        this.write(uid, m, ids, asDict(arg(1, 'vals')));
        return true;
      }
      case 'read': {
        const ids = asIds(arg(0, 'ids'));
        return this.read(m, ids, arg(1, 'fields', null) as string[] | null);
      }
      case 'search': {
        const ids = this.search(m, asDomain(arg(0, 'domain', [])), arg(1, 'offset', 0), arg(2, 'limit', null), arg(3, 'order', null));
        if (kwargs.count) return ids.length;
        return ids;
      }
      case 'search_count':
        return this.search(m, asDomain(arg(0, 'domain', [])), 0, null, null).length;
      case 'search_read': {
        const ids = this.search(m, asDomain(arg(0, 'domain', [])), arg(2, 'offset', 0), arg(3, 'limit', null), arg(4, 'order', null));
        return this.read(m, ids, arg(1, 'fields', null) as string[] | null);
      }
      case 'unlink': {
        this.checkWrite(uid, m, 'unlink');
        this.unlink(m, asIds(arg(0, 'ids')));
        return true;
      }
      case 'fields_get':
        return this.fieldsGet(m, arg(0, 'allfields', null) as string[] | null, arg(1, 'attributes', null) as string[] | null);
      case 'load':
        return this.load(uid, m, arg(0, 'fields') as string[], arg(1, 'data') as unknown[][]);
      case 'check_access_rights': {
        const op = String(arg(0, 'operation'));
        try {
          if (op !== 'read') this.checkWrite(uid, m, op);
          return true;
        } catch (err) {
          if (arg(1, 'raise_exception', true)) throw err;
          return false;
        }
      }
      default:
        throw PyAttributeError(`The method '${method}' does not exist on the model '${modelName}'`);
    }
  }

  private checkWrite(uid: number, m: ModelDef, op: string) {
    const user = this.users.get(uid);
    if (m.name.startsWith('ir.') && uid !== 2) {
      throw AccessError(`You are not allowed to ${op === 'unlink' ? 'delete' : op === 'write' ? 'modify' : 'create'} '${m.description}' (${m.name}) records.\n\nThis operation is allowed for the following groups:\n\t- Administration/Settings\n\nContact your administrator to request access if necessary.`);
    }
    if (user?.readonly) {
      const verb = op === 'unlink' ? 'delete' : op === 'write' ? 'modify' : 'create';
      throw AccessError(`You are not allowed to ${verb} '${m.description}' (${m.name}) records.\n\nThis operation is allowed for the following groups:\n\t- Extra Rights/Contact Creation\n\nContact your administrator to request access if necessary.`);
    }
  }

  private create(uid: number, m: ModelDef, vals: Record<string, unknown>): number {
    const at = this.txNow ?? now();
    const rec: Rec = { ...this.defaults(m), id: m.nextId++, create_uid: uid, write_uid: uid, create_date: at, write_date: at };
    for (const [k, v] of Object.entries(vals)) {
      const f = m.fields[k];
      if (!f || f.readonly) continue; // Odoo 17 ignores unknown fields in create() (with a warning in its log)
      rec[k] = this.convert(m, k, f, v);
    }
    this.validate(m, rec, Object.keys(vals));
    if (m.name === 'ir.model.fields') this.addManualField(rec);
    rec.display_name = rec.name ?? false;
    m.records.set(rec.id, rec);
    this.undo?.push(() => m.records.delete(rec.id));
    if (m.name === 'ir.model.data') {
      const key = (rec.complete_name = `${rec.module}.${rec.name}`);
      this.xmlids.set(key, rec);
      this.undo?.push(() => this.xmlids.delete(key));
    }
    this.touch(m.name, rec.id);
    return rec.id;
  }

  private write(uid: number, m: ModelDef, ids: number[], vals: Record<string, unknown>) {
    const recs = ids.map((id) => this.browse(m, id, uid));
    for (const k of Object.keys(vals)) {
      if (!m.fields[k]) throw PyValueError(`Invalid field '${k}' on model '${m.name}'`);
    }
    for (const rec of recs) {
      const before = { ...rec };
      const next: Rec = { ...rec };
      for (const [k, v] of Object.entries(vals)) {
        const f = m.fields[k]!;
        if (f.readonly) continue;
        next[k] = this.convert(m, k, f, v);
      }
      next.write_uid = uid;
      next.write_date = this.txNow ?? now();
      next.display_name = next.name ?? false;
      this.validate(m, next, Object.keys(vals));
      Object.assign(rec, next);
      this.undo?.push(() => {
        for (const key of Object.keys(rec)) delete rec[key];
        Object.assign(rec, before);
      });
      this.touch(m.name, rec.id);
    }
  }

  private browse(m: ModelDef, id: number, uid = 2): Rec {
    const rec = m.records.get(id);
    if (!rec) throw MissingError(`Record does not exist or has been deleted.\n(Record: ${m.name}(${id},), User: ${uid})`);
    return rec;
  }

  private unlink(m: ModelDef, ids: number[]) {
    for (const id of ids) {
      const rec = this.browse(m, id);
      m.records.delete(id);
      this.undo?.push(() => m.records.set(id, rec));
      this.touch(m.name, id);
      // Odoo removes the external ids of deleted records.
      const imd = this.models.get('ir.model.data')!;
      for (const x of [...imd.records.values()]) {
        if (x.model === m.name && x.res_id === id) {
          imd.records.delete(x.id);
          this.xmlids.delete(x.complete_name as string);
          this.undo?.push(() => {
            imd.records.set(x.id, x);
            this.xmlids.set(x.complete_name as string, x);
          });
        }
      }
    }
  }

  private read(m: ModelDef, ids: number[], fields: string[] | null): Rec[] {
    const names = fields && fields.length ? fields : Object.keys(m.fields);
    for (const f of names) if (!m.fields[f]) throw PyValueError(`Invalid field '${f}' on model '${m.name}'`);
    return ids.map((id) => {
      const rec = this.browse(m, id);
      const out: Rec = { id };
      for (const f of names) out[f] = this.present(m.fields[f]!, rec[f]);
      return out;
    });
  }

  /** Values as Odoo returns them: many2one as [id, display_name], empty as false. */
  private present(f: FieldDef, v: unknown): unknown {
    if (v === undefined || v === null) return false;
    if (f.type === 'many2one') {
      if (!v) return false;
      const target = this.models.get(f.relation!)!.records.get(v as number);
      return target ? [target.id, target.display_name || target.name || ''] : false;
    }
    return v;
  }

  private convert(m: ModelDef, name: string, f: FieldDef, v: unknown): unknown {
    if (v === false || v === null || v === undefined) return false;
    switch (f.type) {
      case 'integer':
        if (typeof v === 'number') return Math.trunc(v);
        if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
        throw PyValueError(`invalid literal for int() with base 10: '${String(v)}'`);
      case 'float':
        if (typeof v === 'number') return v;
        throw PyValueError(`could not convert string to float: '${String(v)}'`);
      case 'boolean':
        return !!v;
      case 'many2one': {
        const id = Array.isArray(v) ? v[0] : v;
        if (typeof id !== 'number') throw PyTypeError(`Field ${m.name}.${name}: expected an id, got ${JSON.stringify(v)}`);
        if (!this.models.get(f.relation!)!.records.has(id)) {
          throw ValidationError(`The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\nModel: ${f.relation}, Field: ${name}`);
        }
        return id;
      }
      case 'selection':
        if (!f.selection!.some(([k]) => k === v)) throw PyValueError(`Wrong value for ${m.name}.${name}: '${String(v)}'`);
        return v;
      default:
        return typeof v === 'string' ? v : String(v);
    }
  }

  private validate(m: ModelDef, rec: Rec, touched: string[]) {
    if (m.name === 'res.partner' && rec.type === 'contact' && !rec.name) {
      throw ValidationError('The operation cannot be completed: Contacts require a name');
    }
    for (const [k, f] of Object.entries(m.fields)) {
      if (f.required && (rec[k] === false || rec[k] === undefined || rec[k] === '')) {
        throw ValidationError(`The operation cannot be completed: Missing required value for the field '${f.string}' (${k})`);
      }
    }
    if (m.name === 'ir.model.data') {
      const other = this.xmlids.get(`${rec.module}.${rec.name}`);
      if (other && other.id !== rec.id) {
        throw ValidationError('The operation cannot be completed: You cannot have multiple records with the same external ID in the same module!');
      }
    }
    const rule = this.reject;
    if (rule && (rule.model ?? 'res.partner') === m.name && touched.includes(rule.field)) {
      const value = rec[rule.field];
      const hit = rule.pattern ? typeof value === 'string' && new RegExp(rule.pattern).test(value) : value !== false && value !== '';
      if (hit) throw ValidationError(rule.message ?? `Invalid value for field '${m.fields[rule.field]?.string ?? rule.field}': ${String(value)}`);
    }
  }

  private addManualField(rec: Rec) {
    const name = String(rec.name);
    if (!name.startsWith('x_')) throw ValidationError("Custom fields must have a name that starts with 'x_' !");
    const target = this.models.get('ir.model')!.records.get(rec.model_id as number);
    if (!target) throw MissingError('Record does not exist or has been deleted.');
    const model = this.models.get(String(target.model))!;
    if (model.fields[name]) throw ValidationError(`The operation cannot be completed: Field names must be unique per model.`);
    const ttype = String(rec.ttype) as FieldType;
    if (!['char', 'text', 'html', 'integer', 'float', 'boolean', 'datetime'].includes(ttype)) {
      throw ValidationError(`This stand-in only creates simple custom fields, not ${ttype}.`);
    }
    rec.model = target.model;
    rec.state = 'manual';
    model.fields[name] = { type: ttype, string: String(rec.field_description), manual: true, required: !!rec.required };
    this.defaultsOf.delete(model);
    for (const r of model.records.values()) r[name] = false;
    this.undo?.push(() => {
      delete model.fields[name];
      this.defaultsOf.delete(model);
      for (const r of model.records.values()) delete r[name];
    });
  }

  private fieldsGet(m: ModelDef, allfields: string[] | null, attributes: string[] | null) {
    const out: Record<string, Record<string, unknown>> = {};
    for (const [k, f] of Object.entries(m.fields)) {
      if (allfields && allfields.length && !allfields.includes(k)) continue;
      const desc: Record<string, unknown> = {
        type: f.type,
        string: f.string,
        required: !!f.required,
        readonly: !!f.readonly,
        store: true,
        manual: !!f.manual,
      };
      if (f.relation) desc.relation = f.relation;
      if (f.selection) desc.selection = f.selection;
      out[k] = attributes && attributes.length ? Object.fromEntries(Object.entries(desc).filter(([a]) => attributes.includes(a))) : desc;
    }
    return out;
  }

  // ---- search ---------------------------------------------------------------

  search(m: ModelDef, domain: unknown[], offset: unknown, limit: unknown, order: unknown): number[] {
    const pred = this.compileDomain(m, domain);
    let recs = [...(this.candidates(m, domain) ?? m.records.values())].filter((r) => (m.fields.active ? r.active !== false || mentionsActive(domain) : true) && pred(r));
    recs = sortRecords(m, recs, typeof order === 'string' && order ? order : 'id');
    const off = typeof offset === 'number' ? offset : 0;
    const lim = typeof limit === 'number' && limit > 0 ? limit : undefined;
    return recs.slice(off, lim === undefined ? undefined : off + lim).map((r) => r.id);
  }

  /**
   * What an index would give Postgres: for a plain AND of leaves naming ids, or external
   * ids by module and name, only those records are candidates (the full domain still
   * decides). Keeps the stand-in's cost per call proportional to the call, not the table.
   */
  private candidates(m: ModelDef, domain: unknown[]): Rec[] | undefined {
    const leaves = domain.filter((d): d is [string, string, unknown] => Array.isArray(d) && d.length === 3);
    if (leaves.length !== domain.length) return undefined; // operators: no shortcut
    const byId = leaves.find(([f, op]) => f === 'id' && (op === 'in' || op === '='));
    if (byId) {
      const ids = Array.isArray(byId[2]) ? byId[2] : [byId[2]];
      return ids.map((id) => m.records.get(id as number)).filter((r): r is Rec => !!r);
    }
    if (m.name === 'ir.model.data') {
      const mod = leaves.find(([f, op]) => f === 'module' && op === '=');
      const name = leaves.find(([f, op]) => f === 'name' && (op === 'in' || op === '='));
      if (mod && name) {
        const names = Array.isArray(name[2]) ? name[2] : [name[2]];
        return names.map((n) => this.xmlids.get(`${String(mod[2])}.${String(n)}`)).filter((r): r is Rec => !!r);
      }
    }
    return undefined;
  }

  private compileDomain(m: ModelDef, domain: unknown[]): (r: Rec) => boolean {
    if (!Array.isArray(domain)) throw PyValueError(`Invalid domain: ${JSON.stringify(domain)}`);
    let i = 0;
    const parse = (): ((r: Rec) => boolean) => {
      const tok = domain[i++];
      if (tok === '&' || tok === '|') {
        const a = parse();
        const b = parse();
        return tok === '&' ? (r) => a(r) && b(r) : (r) => a(r) || b(r);
      }
      if (tok === '!') {
        const a = parse();
        return (r) => !a(r);
      }
      if (!Array.isArray(tok) || tok.length !== 3) throw PyValueError(`Invalid leaf ${JSON.stringify(tok)}`);
      return this.leaf(m, tok as [unknown, string, unknown]);
    };
    const parts: ((r: Rec) => boolean)[] = [];
    while (i < domain.length) parts.push(parse());
    return (r) => parts.every((p) => p(r));
  }

  private leaf(m: ModelDef, [field, op, value]: [unknown, string, unknown]): (r: Rec) => boolean {
    if (field === 1 && op === '=' && value === 1) return () => true;
    if (field === 0 && op === '=' && value === 1) return () => false;
    const name = String(field);
    const f = m.fields[name];
    if (!f) throw PyValueError(`Invalid field ${m.name}.${name} in leaf ('${name}', '${op}', ${JSON.stringify(value)})`);
    const get = (r: Rec) => r[name] ?? false;
    const eq = (a: unknown, b: unknown) => (b === false ? a === false || a === '' || a === null : a === b);
    const like = (a: unknown, pattern: string, ci: boolean, anchored: boolean) => {
      if (typeof a !== 'string') return false;
      const esc = pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const body = anchored ? esc.replace(/%/g, '.*').replace(/_/g, '.') : `.*${esc}.*`;
      return new RegExp(`^${body}$`, ci ? 'is' : 's').test(a);
    };
    switch (op) {
      case '=':
        return (r) => eq(get(r), value);
      case '!=':
      case '<>':
        return (r) => !eq(get(r), value);
      case 'in':
      case 'not in': {
        if (!Array.isArray(value)) throw PyValueError(`The domain term '('${name}', '${op}', ${JSON.stringify(value)})' should use a list of values`);
        const set = new Set(value);
        return op === 'in' ? (r) => set.has(get(r)) : (r) => !set.has(get(r));
      }
      case '<':
        return (r) => get(r) !== false && (get(r) as number) < (value as number);
      case '>':
        return (r) => get(r) !== false && (get(r) as number) > (value as number);
      case '<=':
        return (r) => get(r) !== false && (get(r) as number) <= (value as number);
      case '>=':
        return (r) => get(r) !== false && (get(r) as number) >= (value as number);
      case 'like':
        return (r) => like(get(r), String(value), false, false);
      case 'ilike':
        return (r) => like(get(r), String(value), true, false);
      case 'not like':
        return (r) => !like(get(r), String(value), false, false);
      case 'not ilike':
        return (r) => !like(get(r), String(value), true, false);
      case '=like':
        return (r) => like(get(r), String(value), false, true);
      case '=ilike':
        return (r) => like(get(r), String(value), true, true);
      default:
        throw PyValueError(`Invalid operator '${op}' in leaf ('${name}', '${op}', ${JSON.stringify(value)})`);
    }
  }

  // ---- load(): the importer, create-or-update by external id ----------------

  /**
   * models.load(fields, data): values in import format (strings), an "id" column with
   * external ids. Records that exist (by external id) are updated, others created with
   * their external id, in one transaction. Errors do NOT raise: they come back in
   * `messages`, everything is rolled back and `ids` is false.
   */
  private load(uid: number, m: ModelDef, fields: string[], data: unknown[][]) {
    if (!Array.isArray(fields) || !Array.isArray(data)) throw PyTypeError('load() needs fields (list) and data (list of lists)');
    this.checkWrite(uid, m, 'create');
    const messages: Record<string, unknown>[] = [];
    const ids: number[] = [];
    const mark = this.undo!.length;
    let errors = 0;
    for (const f of fields) {
      if (f !== 'id' && f !== '.id' && !m.fields[f.replace(/\/id$/, '')]) {
        messages.push({ type: 'error', message: `Unknown field "${f}" for model ${m.description}`, record: 0, rows: { from: 0, to: 0 }, field: f });
        this.rollbackTo(mark);
        return { ids: false, messages, nextrow: 0 };
      }
    }
    for (let index = 0; index < data.length; index++) {
      const row = data[index]!;
      const info = { record: index, rows: { from: index, to: index } };
      try {
        this.savepoint(() => {
          let xmlid: string | undefined;
          const vals: Record<string, unknown> = {};
          fields.forEach((fname, col) => {
            const raw = row[col];
            const text = raw === undefined || raw === null || raw === false ? '' : String(raw);
            if (fname === 'id') {
              xmlid = text || undefined;
              return;
            }
            const base = fname.replace(/\/id$/, '');
            const f = m.fields[base]!;
            vals[base] = this.fromImport(m, base, f, text, fname.endsWith('/id'));
          });
          ids.push(this.loadRecord(uid, m, xmlid, vals));
        });
      } catch (err) {
        errors++;
        const e = err as OdooException & { field?: string };
        messages.push({ ...info, type: 'error', message: e.message, ...(e.field ? { field: e.field } : {}) });
        if (errors >= 10 && errors >= (index + 1) / 10) {
          messages.push({ type: 'warning', message: 'Found more than 10 errors and more than one error per 10 records, interrupted to avoid showing too many errors.' });
          break;
        }
      }
    }
    if (messages.some((x) => x.type === 'error')) {
      this.rollbackTo(mark);
      return { ids: false, messages, nextrow: 0 };
    }
    return { ids, messages, nextrow: 0 };
  }

  private rollbackTo(mark: number) {
    const undone = this.undo!.splice(mark);
    for (const u of undone.reverse()) u();
    this.changed = new Map();
  }

  private loadRecord(uid: number, m: ModelDef, xmlid: string | undefined, vals: Record<string, unknown>): number {
    const imd = this.models.get('ir.model.data')!;
    if (xmlid) {
      const [module, name] = xmlid.includes('.') ? [xmlid.slice(0, xmlid.indexOf('.')), xmlid.slice(xmlid.indexOf('.') + 1)] : ['__import__', xmlid];
      const existing = this.xmlids.get(`${module}.${name}`);
      if (existing && existing.model === m.name && m.records.has(existing.res_id as number)) {
        this.write(uid, m, [existing.res_id as number], vals);
        return existing.res_id as number;
      }
      const id = this.create(uid, m, vals);
      if (existing) {
        this.write(uid, imd, [existing.id], { res_id: id });
      } else {
        this.create(uid, imd, { module, name, model: m.name, res_id: id, noupdate: false });
      }
      return id;
    }
    return this.create(uid, m, vals);
  }

  /** Import format -> value: "" is empty, integers as text, many2one by name (or by external id for "field/id"). */
  private fromImport(m: ModelDef, name: string, f: FieldDef, text: string, byXmlid: boolean): unknown {
    const fail = (message: string) => Object.assign(PyValueError(message), { field: name });
    if (text === '') return false;
    switch (f.type) {
      case 'integer':
        if (!/^-?\d+$/.test(text.trim())) throw fail(`'${text}' does not seem to be an integer for field '${f.string}'`);
        return Number(text.trim());
      case 'float':
        if (Number.isNaN(Number(text))) throw fail(`'${text}' does not seem to be a number for field '${f.string}'`);
        return Number(text);
      case 'boolean': {
        const t = text.trim().toLowerCase();
        if (['1', 'true', 'yes'].includes(t)) return true;
        if (['0', 'false', 'no'].includes(t)) return false;
        throw fail(`Unknown value '${text}' for boolean field '${f.string}', assuming 'yes'`);
      }
      case 'many2one': {
        const target = this.models.get(f.relation!)!;
        if (byXmlid) {
          const [module, xname] = text.includes('.') ? text.split('.', 2) as [string, string] : ['__import__', text];
          const x = this.xmlids.get(`${module}.${xname}`);
          if (!x || x.model !== f.relation) throw fail(`No matching record found for external id '${text}' in field '${f.string}'`);
          return x.res_id;
        }
        const wanted = text.toLowerCase();
        let hit: Rec | undefined;
        for (const r of target.records.values()) {
          if (String(r.name ?? '').toLowerCase() === wanted) {
            hit = r;
            break;
          }
        }
        if (!hit) throw fail(`No matching record found for name '${text}' in field '${f.string}'`);
        return hit.id;
      }
      case 'selection': {
        const hit = f.selection!.find(([k, label]) => k === text || label.toLowerCase() === text.toLowerCase());
        if (!hit) throw fail(`Value '${text}' not found in selection field '${f.string}'`);
        return hit[0];
      }
      default:
        return text;
    }
  }
}

function mentionsActive(domain: unknown[]): boolean {
  return domain.some((t) => Array.isArray(t) && t[0] === 'active');
}

function sortRecords(m: ModelDef, recs: Rec[], order: string): Rec[] {
  const keys = order.split(',').map((part) => {
    const [field, dir] = part.trim().split(/\s+/);
    if (!field || !m.fields[field]) throw PyValueError(`Invalid "order" specified (${order}).`);
    return { field, desc: (dir ?? '').toLowerCase() === 'desc' };
  });
  return recs.sort((a, b) => {
    for (const { field, desc } of keys) {
      const x = a[field] as string | number | false;
      const y = b[field] as string | number | false;
      if (x === y) continue;
      const c = x === false ? 1 : y === false ? -1 : x < y ? -1 : 1;
      return desc ? -c : c;
    }
    return 0;
  });
}

function asIds(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return v as number[];
  throw PyTypeError(`expected a list of ids, got ${JSON.stringify(v)}`);
}

function asDict(v: unknown): Record<string, unknown> {
  if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  throw PyTypeError(`expected a dict of values, got ${JSON.stringify(v)}`);
}

function asDomain(v: unknown): unknown[] {
  if (v === null || v === undefined || v === false) return [];
  if (Array.isArray(v)) return v;
  throw PyValueError(`Invalid domain: ${JSON.stringify(v)}`);
}

/** Odoo's datetime format, UTC. */
function now(): string {
  return new Date().toISOString().slice(0, 19).replace('T', ' ');
}

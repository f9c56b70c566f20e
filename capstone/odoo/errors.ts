// Odoo's exceptions, as they travel over JSON-RPC. Odoo serialises an exception with
// odoo.http.serialize_exception(): { name: "<module>.<Class>", debug: <traceback>,
// message: str(exc), arguments: exc.args, context: {} }, inside an envelope whose HTTP
// status is 200 (Odoo 16-18: always; 14/15: 200 except NotFound).
export class OdooException extends Error {
  constructor(
    /** Python qualified class name, e.g. "odoo.exceptions.ValidationError". */
    readonly pyName: string,
    message: string,
    /** exc.args; Odoo puts the message there for its own exceptions. */
    readonly args: unknown[] = [message],
    /** JSON-RPC level error code: 200 for the exceptions /jsonrpc raises (0 from Odoo 18.1). */
    readonly code = 200,
    readonly rpcMessage = 'Odoo Server Error',
  ) {
    super(message);
  }
}

export const ValidationError = (message: string) => new OdooException('odoo.exceptions.ValidationError', message);
export const UserError = (message: string) => new OdooException('odoo.exceptions.UserError', message);
export const AccessError = (message: string) => new OdooException('odoo.exceptions.AccessError', message);
export const MissingError = (message: string) => new OdooException('odoo.exceptions.MissingError', message);
export const AccessDenied = () => new OdooException('odoo.exceptions.AccessDenied', 'Access Denied');
export const PyValueError = (message: string) => new OdooException('builtins.ValueError', message);
export const PyTypeError = (message: string) => new OdooException('builtins.TypeError', message);
export const PyAttributeError = (message: string) => new OdooException('builtins.AttributeError', message);
export const PyException = (message: string) => new OdooException('builtins.Exception', message);
export const NameError = (message: string) => new OdooException('builtins.NameError', message);
export const SerializationFailure = () =>
  new OdooException('psycopg2.errors.SerializationFailure', 'could not serialize access due to concurrent update\n');
export const DatabaseMissing = (db: string) =>
  new OdooException(
    'psycopg2.OperationalError',
    `connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: FATAL:  database "${db}" does not exist\n`,
  );

/** The `error` member of a JSON-RPC response, exactly as Odoo 17 writes it. */
export function serializeError(err: unknown, where: string): Record<string, unknown> {
  const e =
    err instanceof OdooException
      ? err
      : new OdooException(`builtins.${(err as Error)?.name === 'TypeError' ? 'TypeError' : 'Exception'}`, String((err as Error)?.message ?? err));
  const [mod, cls] = splitName(e.pyName);
  const debug = [
    'Traceback (most recent call last):',
    '  File "/usr/lib/python3/dist-packages/odoo/http.py", line 1788, in _serve_db',
    '    return service_model.retrying(self._serve_ir_http, self.env)',
    '  File "/usr/lib/python3/dist-packages/odoo/service/model.py", line 133, in retrying',
    '    result = func()',
    `  File "/usr/lib/python3/dist-packages/odoo/${where}", in dispatch`,
    `${mod === 'builtins' ? cls : e.pyName}: ${e.message}`,
    '',
  ].join('\n');
  return {
    code: e.code,
    message: e.rpcMessage,
    data: { name: e.pyName, debug, message: e.message, arguments: e.args, context: {} },
  };
}

function splitName(name: string): [string, string] {
  const i = name.lastIndexOf('.');
  return [name.slice(0, i), name.slice(i + 1)];
}

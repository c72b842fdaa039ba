// Fine's table API, translated to a PostgREST request. Pure: no I/O, so every rule of the dialect
// is a row in tests/unit-fine-translate.test.ts. PostgREST then checks columns and types and
// PostgreSQL decides access; nothing here decides who may see a row.
import { PlinthError } from '../core/errors.js';

export const OPERATORS = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'in', 'is'] as const;
export type Operator = (typeof OPERATORS)[number];

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface FineRequest {
  method: Method;
  table: string;
  /** The row id from /db/tables/:table/:id. */
  id?: string;
  /** Query parameters, in order (repeated names allowed). */
  query?: Array<[string, string]>;
  /** The parsed JSON body (POST, PATCH, DELETE). */
  body?: unknown;
}

/** What the catalog says about the table, for the caller. */
export interface TableInfo {
  /** Primary key columns; empty when the table (or view) has none. */
  primaryKey: string[];
}

export interface PostgrestRequest {
  method: Method;
  /** Path and query string for PostgREST, e.g. /todos?done=eq.false&order=id.asc. */
  path: string;
  body?: string;
  prefer?: string;
  /** How PostgREST's array answer is wrapped: `list` → {data: rows}; `one` → {data: row}, 404 when empty. */
  shape: 'list' | 'one';
  /** The status of a successful answer. */
  status: 200 | 201;
}

function badRequest(message: string, hint: string | null = null): PlinthError {
  return new PlinthError(400, message, 'PLINTH400', null, hint);
}

const OPERATOR_HINT = `Use column=value or column.op=value with op one of ${OPERATORS.join(', ')}`;

function column(name: string, param: string): string {
  if (!IDENTIFIER.test(name)) throw badRequest(`"${name}" in parameter "${param}" is not a column name`, OPERATOR_HINT);
  return name;
}

function operator(op: string, param: string): Operator {
  if (!(OPERATORS as readonly string[]).includes(op)) throw badRequest(`Unknown operator "${op}" in parameter "${param}"`, OPERATOR_HINT);
  return op as Operator;
}

/** A value inside PostgREST's in.(…) list, quoted so commas, parentheses and quotes stay part of it. */
function listItem(v: unknown): string {
  return `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * PostgREST's `op.value` for one filter. `like`/`ilike` with no wildcard (`%` or `*`) match the
 * value as a substring, as Fine's do; with a wildcard the pattern is used as written.
 */
export function filterValue(op: Operator, value: unknown, param: string): string {
  if (op === 'in') {
    if (Array.isArray(value)) {
      if (value.length === 0) throw badRequest(`Parameter "${param}" needs at least one value`);
      return `in.(${value.map(listItem).join(',')})`;
    }
    const s = scalar(value, param);
    // A query string carries the list as a,b,c or (a,b,c): PostgREST's own syntax inside.
    return s.startsWith('(') && s.endsWith(')') ? `in.${s}` : `in.(${s})`;
  }
  if (op === 'is') {
    const s = value === null ? 'null' : scalar(value, param).toLowerCase();
    if (!['null', 'true', 'false'].includes(s)) throw badRequest(`Parameter "${param}" takes null, true or false`);
    return `is.${s}`;
  }
  if (value === null) {
    if (op === 'eq') return 'is.null';
    if (op === 'neq') return 'not.is.null';
    throw badRequest(`Parameter "${param}" cannot compare with null`);
  }
  const s = scalar(value, param);
  if ((op === 'like' || op === 'ilike') && !/[%*]/.test(s)) return `${op}.*${s}*`;
  return `${op}.${s}`;
}

function scalar(value: unknown, param: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw badRequest(`Parameter "${param}" must be a string, number, boolean or null`);
}

/** `col=value` and `col.op=value` query parameters, as PostgREST filters. */
function queryFilter(name: string, value: string): [string, string] {
  const dot = name.indexOf('.');
  if (dot === -1) return [column(name, name), filterValue('eq', value, name)];
  return [column(name.slice(0, dot), name), filterValue(operator(name.slice(dot + 1), name), value, name)];
}

/** Fine's `where` object: {col: value} for equality, {col: {op: value, …}} for operators. */
export function whereFilters(where: unknown): Array<[string, string]> {
  if (where === null || typeof where !== 'object' || Array.isArray(where)) {
    throw badRequest('"where" must be an object such as {"user_id": "…"} or {"priority": {"gt": 3}}');
  }
  const out: Array<[string, string]> = [];
  for (const [name, cond] of Object.entries(where)) {
    const param = `where.${name}`;
    column(name, param);
    if (cond !== null && typeof cond === 'object' && !Array.isArray(cond)) {
      const ops = Object.entries(cond);
      if (ops.length === 0) throw badRequest(`"${param}" has no condition`);
      for (const [op, v] of ops) out.push([name, filterValue(operator(op, `${param}.${op}`), v, `${param}.${op}`)]);
    } else {
      out.push([name, filterValue('eq', cond, param)]);
    }
  }
  if (out.length === 0) throw badRequest('"where" is empty: a condition is required so that a request never touches every row');
  return out;
}

/** `order=created_at DESC, title` (or PostgREST's created_at.desc) as PostgREST's order. */
export function orderParam(value: string): string {
  const parts = value.split(',').map((p) => p.trim());
  return parts
    .map((part) => {
      const m = /^([A-Za-z_][A-Za-z0-9_$]*)(?:(?:\s+|\.)(asc|desc))?$/i.exec(part);
      if (!m) throw badRequest(`Parameter "order" has "${part}": write column, column ASC or column DESC, separated by commas`);
      return `${m[1]}.${(m[2] ?? 'asc').toLowerCase()}`;
    })
    .join(',');
}

function count(name: string, value: string): string {
  if (!/^\d{1,15}$/.test(value)) throw badRequest(`Parameter "${name}" must be a whole number, got "${value}"`);
  return value;
}

function idFilter(info: TableInfo, table: string, id: string): [string, string] {
  if (info.primaryKey.length !== 1) {
    throw badRequest(
      info.primaryKey.length === 0 ? `Table "${table}" has no primary key` : `Table "${table}" has a composite primary key (${info.primaryKey.join(', ')})`,
      'Address rows with query filters or a "where" object instead of an id',
    );
  }
  return [info.primaryKey[0], `eq.${id}`];
}

function rowObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest(`${what} must be a JSON object`);
  if (Object.keys(value).length === 0) throw badRequest(`${what} is empty`);
  return value as Record<string, unknown>;
}

function search(params: Array<[string, string]>): string {
  const qs = new URLSearchParams(params).toString();
  return qs === '' ? '' : `?${qs}`;
}

export function translate(req: FineRequest, info: TableInfo): PostgrestRequest {
  const path = `/${encodeURIComponent(req.table)}`;
  const representation = 'return=representation';
  const params: Array<[string, string]> = [];
  if (req.id !== undefined) params.push(idFilter(info, req.table, req.id));

  switch (req.method) {
    case 'GET': {
      for (const [name, value] of req.query ?? []) {
        if (name === 'select') params.push(['select', value]);
        else if (name === 'order') params.push(['order', orderParam(value)]);
        else if (name === 'limit' || name === 'offset') params.push([name, count(name, value)]);
        else if (req.id === undefined) params.push(queryFilter(name, value));
        else throw badRequest(`Parameter "${name}" does not apply to one row by id`);
      }
      return { method: 'GET', path: path + search(params), shape: req.id === undefined ? 'list' : 'one', status: 200 };
    }
    case 'POST': {
      if (req.id !== undefined) throw badRequest('POST creates rows: send it to /db/tables/:table');
      const rows = Array.isArray(req.body) ? req.body : [req.body];
      if (rows.length === 0) throw badRequest('The body is an empty array: nothing to insert');
      rows.forEach((r, i) => rowObject(r, Array.isArray(req.body) ? `Row ${i} of the body` : 'The body'));
      return { method: 'POST', path, body: JSON.stringify(req.body), prefer: representation, shape: 'list', status: 201 };
    }
    case 'PATCH': {
      if (req.id !== undefined) {
        const changes = rowObject(req.body, 'The body (the columns to change)');
        return { method: 'PATCH', path: path + search(params), body: JSON.stringify(changes), prefer: representation, shape: 'one', status: 200 };
      }
      const body = rowObject(req.body, 'The body ({"data": {…}, "where": {…}})');
      const changes = rowObject(body.data, '"data" (the columns to change)');
      if (body.where === undefined) throw badRequest('PATCH on a whole table needs "where": it never updates every row', 'Send {"data": {…}, "where": {"id": 1}}');
      params.push(...whereFilters(body.where));
      return { method: 'PATCH', path: path + search(params), body: JSON.stringify(changes), prefer: representation, shape: 'list', status: 200 };
    }
    case 'DELETE': {
      if (req.id !== undefined) return { method: 'DELETE', path: path + search(params), prefer: representation, shape: 'one', status: 200 };
      const body = req.body;
      if (body === undefined || body === null || typeof body !== 'object' || (body as { where?: unknown }).where === undefined) {
        throw badRequest('DELETE on a whole table needs a body {"where": {…}}: it never deletes every row');
      }
      params.push(...whereFilters((body as { where: unknown }).where));
      return { method: 'DELETE', path: path + search(params), prefer: representation, shape: 'list', status: 200 };
    }
  }
}

/** PostgREST's successful answer (a JSON array) in Fine's envelope; null when a single row was asked for and none came. */
export function envelope(shape: PostgrestRequest['shape'], rows: unknown[]): { data: unknown } | null {
  if (shape === 'list') return { data: rows };
  return rows.length === 0 ? null : { data: rows[0] };
}

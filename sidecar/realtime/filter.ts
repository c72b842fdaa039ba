// A subscription's row filter, in PostgREST's syntax: `user_id=eq.<uuid>`, several joined by `&`
// (all must hold). Parsed here, checked against the table's columns, then compiled to SQL that
// PostgreSQL evaluates next to RLS; TypeScript never decides whether a row matches.

export const FILTER_OPERATORS = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in', 'is'] as const;
export type FilterOperator = (typeof FILTER_OPERATORS)[number];

export interface Condition {
  column: string;
  op: FilterOperator;
  /** One value, or the list of `in.(a,b)`; for `is`: null, true, false or unknown. */
  values: string[];
}

export class FilterError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// Maps and arrays, never plain objects, are looked up with client text ("constructor" is no operator).
const SQL_OPERATORS = new Map<FilterOperator, string>([
  ['eq', '='],
  ['neq', '<>'],
  ['lt', '<'],
  ['lte', '<='],
  ['gt', '>'],
  ['gte', '>='],
]);
const IS_VALUES = ['null', 'true', 'false', 'unknown'];

export function parseFilter(text: string): Condition[] {
  if (text.length > 4096) throw new FilterError('PGRST100', 'filter is longer than 4096 characters');
  return text.split('&').map((part) => {
    const m = /^([^=&]+)=([a-z]+)\.(.*)$/s.exec(part);
    if (!m) throw new FilterError('PGRST100', `"${part}" is not a filter: write column=operator.value, e.g. user_id=eq.42`);
    const [, column, op, raw] = m;
    if (!(FILTER_OPERATORS as readonly string[]).includes(op)) {
      throw new FilterError('PGRST100', `unknown filter operator "${op}": use one of ${FILTER_OPERATORS.join(', ')}`);
    }
    if (op === 'in') return { column, op, values: parseList(raw) };
    if (op === 'is' && !IS_VALUES.includes(raw)) throw new FilterError('PGRST100', `"is" takes null, true, false or unknown, not "${raw}"`);
    return { column, op: op as FilterOperator, values: [raw] };
  });
}

/** `(a,b,"c,d")`: the list syntax of PostgREST's `in` operator; double quotes protect commas. */
function parseList(raw: string): string[] {
  if (!raw.startsWith('(') || !raw.endsWith(')')) throw new FilterError('PGRST100', `"in" takes a list in parentheses, e.g. in.(1,2,3)`);
  const body = raw.slice(1, -1);
  const values: string[] = [];
  let i = 0;
  while (i <= body.length) {
    if (body[i] === '"') {
      const end = body.indexOf('"', i + 1);
      if (end === -1) throw new FilterError('PGRST100', 'unterminated quote in "in" list');
      values.push(body.slice(i + 1, end));
      i = end + 1;
      if (i < body.length && body[i] !== ',') throw new FilterError('PGRST100', 'expected a comma after a quoted value in "in" list');
      i++;
    } else {
      const end = body.indexOf(',', i);
      const stop = end === -1 ? body.length : end;
      values.push(body.slice(i, stop));
      i = stop + 1;
    }
  }
  if (values.length === 0 || (values.length === 1 && values[0] === '')) throw new FilterError('PGRST100', '"in" needs at least one value');
  return values;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * SQL for the conditions over `alias`, values bound as parameters cast to each column's type.
 * `param` appends a value and returns its placeholder ($n).
 */
export function compileFilter(conditions: Condition[], alias: string, columnTypes: Map<string, string>, param: (v: unknown) => string): string {
  if (conditions.length === 0) return 'true';
  return conditions
    .map(({ column, op, values }) => {
      const type = columnTypes.get(column)!;
      const col = `${alias}.${quoteIdent(column)}`;
      if (op === 'is') return `(${col} is ${values[0]})`;
      if (op === 'in') return `(${col} in (${values.map((v) => `${param(v)}::${type}`).join(', ')}))`;
      return `(${col} ${SQL_OPERATORS.get(op)!} ${param(values[0])}::${type})`;
    })
    .join(' and ');
}

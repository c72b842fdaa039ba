// A table view as a PostgREST request: filters from PostgREST's operators, order, page. The same
// request is what the page sends and what "copy as curl / as postgrest-js" shows, so the two
// cannot drift apart. Pure functions, unit-tested.

export interface Filter {
  column: string;
  op: string;
  value: string;
}

export interface ViewQuery {
  table: string;
  filters: Filter[];
  order: { column: string; ascending: boolean } | null;
  limit: number;
  offset: number;
}

export const OPERATORS: Array<{ op: string; label: string; hint?: string }> = [
  { op: 'eq', label: 'equals' },
  { op: 'neq', label: 'does not equal' },
  { op: 'gt', label: 'greater than' },
  { op: 'gte', label: 'at least' },
  { op: 'lt', label: 'less than' },
  { op: 'lte', label: 'at most' },
  { op: 'contains', label: 'contains (any case)' },
  { op: 'like', label: 'matches pattern', hint: '* matches anything' },
  { op: 'ilike', label: 'matches pattern (any case)', hint: '* matches anything' },
  { op: 'in', label: 'is one of', hint: 'comma-separated' },
  { op: 'is', label: 'is', hint: 'null, true or false' },
  { op: 'not.is', label: 'is not', hint: 'null, true or false' },
];

const quote = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** The PostgREST expression of one filter, unencoded: `ilike.*milk*`, `in.("1","2")`, `not.is.null`. */
export function filterExpression(f: Filter): string {
  switch (f.op) {
    case 'contains':
      return `ilike.*${f.value}*`;
    case 'in':
      return `in.(${f.value.split(',').map((v) => quote(v.trim())).join(',')})`;
    case 'is':
    case 'not.is':
      return `${f.op}.${f.value.trim().toLowerCase()}`;
    default:
      return `${f.op}.${f.value}`;
  }
}

/** A PostgREST filter for one column, percent-encoded: `title=ilike.*milk*`. */
export function filterParam(f: Filter): string {
  return `${encodeURIComponent(f.column)}=${encodeURIComponent(filterExpression(f))}`;
}

/** The query string of a view (without `?`). */
export function viewSearch(q: ViewQuery): string {
  const params = [`limit=${q.limit}`, `offset=${q.offset}`, ...q.filters.map(filterParam)];
  if (q.order) params.push(`order=${encodeURIComponent(`${q.order.column}.${q.order.ascending ? 'asc' : 'desc'}`)}`);
  return params.join('&');
}

export function viewPath(q: ViewQuery): string {
  return `/${encodeURIComponent(q.table)}?${viewSearch(q)}`;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The same request for a terminal; the token stays a variable, never pasted into a command line. */
export function curlFor(origin: string, q: ViewQuery): string {
  return [`curl ${shellQuote(origin + viewPath(q))}`, `  -H "Authorization: Bearer $TOKEN"`, `  -H 'Prefer: count=exact'`].join(' \\\n');
}

/** A JavaScript literal in single quotes: a string, or an array of strings. */
const js = (v: string | string[]): string =>
  Array.isArray(v) ? `[${v.map(js).join(', ')}]` : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;

/** The same request with postgrest-js (supabase-js's `from()`). */
export function postgrestJsFor(q: ViewQuery): string {
  const lines = [`const { data, count, error } = await supabase`, `  .from(${js(q.table)})`, `  .select('*', { count: 'exact' })`];
  for (const f of q.filters) {
    const col = js(f.column);
    const pattern = f.value.replace(/\*/g, '%');
    switch (f.op) {
      case 'contains':
        lines.push(`  .ilike(${col}, ${js(`%${f.value}%`)})`);
        break;
      case 'like':
      case 'ilike':
        lines.push(`  .${f.op}(${col}, ${js(pattern)})`);
        break;
      case 'in':
        lines.push(`  .in(${col}, ${js(f.value.split(',').map((v) => v.trim()))})`);
        break;
      case 'is':
        lines.push(`  .is(${col}, ${f.value.trim().toLowerCase()})`);
        break;
      case 'not.is':
        lines.push(`  .not(${col}, 'is', ${f.value.trim().toLowerCase()})`);
        break;
      default:
        lines.push(`  .${f.op}(${col}, ${js(f.value)})`);
    }
  }
  if (q.order) lines.push(`  .order(${js(q.order.column)}, { ascending: ${q.order.ascending} })`);
  lines.push(`  .range(${q.offset}, ${q.offset + q.limit - 1});`);
  return lines.join('\n');
}

/** "0-24/123" → { from: 0, to: 24, total: 123 }; "*\/0" → an empty page. */
export function parseContentRange(header: string | null): { from: number; to: number; total: number | null } {
  const m = /^(\d+)-(\d+)\/(\d+|\*)$/.exec(header ?? '') ?? /^\*\/(\d+|\*)$/.exec(header ?? '');
  if (!m) return { from: 0, to: -1, total: null };
  if (m.length === 2) return { from: 0, to: -1, total: m[1] === '*' ? null : Number(m[1]) };
  return { from: Number(m[1]), to: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

// The table browser: the tables PostgREST's OpenAPI document lists for this user's token, and
// their rows through PostgREST itself (limit/offset, filters, order) — exactly what RLS lets them see.
import { ApiError, call, callJson } from '../api';
import { h, replace, uid } from '../dom';

interface OpenApi {
  paths?: Record<string, Record<string, unknown>>;
  definitions?: Record<string, { properties?: Record<string, { type?: string; format?: string; description?: string }>; description?: string }>;
}

interface Filter {
  column: string;
  op: string;
  value: string;
}

export const OPERATORS: Array<{ op: string; label: string; needsValue?: boolean; hint?: string }> = [
  { op: 'eq', label: 'equals' },
  { op: 'neq', label: 'does not equal' },
  { op: 'gt', label: 'greater than' },
  { op: 'gte', label: 'at least' },
  { op: 'lt', label: 'less than' },
  { op: 'lte', label: 'at most' },
  { op: 'contains', label: 'contains (any case)' },
  { op: 'like', label: 'matches pattern', hint: '* matches anything' },
  { op: 'in', label: 'is one of', hint: 'comma-separated' },
  { op: 'is', label: 'is', hint: 'null, true or false' },
];

const PAGE_SIZES = [10, 25, 50, 100];

/** A PostgREST filter for one column, percent-encoded: `title=ilike.*milk*`, `id=in.("1","2")`. */
export function filterParam(f: Filter): string {
  const quote = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  let expr: string;
  switch (f.op) {
    case 'contains':
      expr = `ilike.*${f.value}*`;
      break;
    case 'in':
      expr = `in.(${f.value.split(',').map((v) => quote(v.trim())).join(',')})`;
      break;
    case 'is':
      expr = `is.${f.value.trim().toLowerCase()}`;
      break;
    default:
      expr = `${f.op}.${f.value}`;
  }
  return `${encodeURIComponent(f.column)}=${encodeURIComponent(expr)}`;
}

/** "0-24/123" → { from: 0, to: 24, total: 123 }; "*\/0" → an empty page. */
export function parseContentRange(header: string | null): { from: number; to: number; total: number | null } {
  const m = /^(\d+)-(\d+)\/(\d+|\*)$/.exec(header ?? '') ?? /^\*\/(\d+|\*)$/.exec(header ?? '');
  if (!m) return { from: 0, to: -1, total: null };
  if (m.length === 2) return { from: 0, to: -1, total: m[1] === '*' ? null : Number(m[1]) };
  return { from: Number(m[1]), to: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export function tablesView(root: HTMLElement, selected: string | undefined): void {
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const tableNav = h('nav', { class: 'table-list', 'aria-label': 'Tables' }, h('p', { class: 'muted' }, 'Loading tables…'));
  const content = h('div', { class: 'table-content' });
  replace(root, h('div', { class: 'page-head' }, h('h1', {}, 'Tables')), alert, h('div', { class: 'tables-layout' }, tableNav, content));

  void (async () => {
    let doc: OpenApi;
    try {
      doc = await callJson<OpenApi>('/', { headers: { accept: 'application/openapi+json' } });
    } catch (err) {
      replace(tableNav, h('p', { class: 'muted' }, 'No tables.'));
      alert.textContent = `The table list could not be loaded. ${err instanceof ApiError ? err.message : String(err)}`;
      alert.hidden = false;
      return;
    }
    const names = Object.keys(doc.paths ?? {})
      .filter((p) => p !== '/' && !p.startsWith('/rpc/'))
      .map((p) => p.slice(1))
      .sort();
    if (names.length === 0) {
      replace(tableNav, h('p', { class: 'muted' }, 'Your account can read no tables.'));
      return;
    }
    replace(
      tableNav,
      h(
        'ul',
        {},
        names.map((n) =>
          h('li', {}, h('a', { href: `/console/tables/${encodeURIComponent(n)}`, 'data-link': '', 'aria-current': n === selected ? 'page' : null }, n)),
        ),
      ),
    );
    if (!selected || !names.includes(selected)) {
      replace(content, h('p', { class: 'card muted' }, selected ? `No table named ${selected} is visible to you.` : 'Choose a table to see its rows.'));
      return;
    }
    const columns = Object.keys(doc.definitions?.[selected]?.properties ?? {});
    rowsBrowser(content, selected, columns);
    content.append(policiesPanel(selected));
  })();
}

interface PolicyInForce {
  id: number;
  action: string;
  roles: string[];
  using_clause: string | null;
  withcheck_clause: string | null;
  policy_name: string | null;
  policy_command: string | null;
  policy_using: string | null;
  policy_withcheck: string | null;
}

/**
 * The table's _policies rows beside the PostgreSQL policies they became (admins only: the
 * function returns no rows to anyone else, and the panel then stays hidden).
 */
function policiesPanel(table: string): HTMLElement {
  const panel = h('section', { class: 'card', 'aria-labelledby': 'policies-title', hidden: true });
  void (async () => {
    let rows: PolicyInForce[];
    try {
      rows = (await callJson<Array<PolicyInForce & { table_name: string }>>('/rpc/fine_policies_in_force')).filter((r) => r.table_name === table);
    } catch {
      return;
    }
    if (rows.length === 0) return;
    const clause = (rule: string | null, real: string | null) => h('td', {}, rule === null ? '—' : h('code', {}, rule), real === null ? null : h('div', { class: 'muted' }, '→ ', h('code', {}, real)));
    replace(
      panel,
      h('h2', { id: 'policies-title' }, '_policies'),
      h('p', { class: 'muted' }, 'Each row of _policies and the PostgreSQL policy it became.'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'rows' },
          h('thead', {}, h('tr', {}, ['id', 'action', 'roles', 'using', 'with check', 'policy'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            rows.map((r) =>
              h(
                'tr',
                {},
                h('td', {}, String(r.id)),
                h('td', {}, r.action),
                h('td', {}, r.roles.join(', ')),
                clause(r.using_clause, r.policy_using),
                clause(r.withcheck_clause, r.policy_withcheck),
                h('td', {}, r.policy_name === null ? 'not in force' : `${r.policy_name} (${r.policy_command})`),
              ),
            ),
          ),
        ),
      ),
    );
    panel.hidden = false;
  })();
  return panel;
}

function rowsBrowser(root: HTMLElement, table: string, columns: string[]): void {
  let limit = 25;
  let offset = 0;
  let order: { column: string; ascending: boolean } | null = null;
  const filters: Filter[] = [];

  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const summary = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const grid = h('div', { class: 'table-wrap' });
  const chips = h('ul', { class: 'chips', 'aria-label': 'Active filters' });
  const prev = h('button', { type: 'button', class: 'secondary' }, '← Previous');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next →');
  const sizeId = uid('size');
  const size = h('select', { id: sizeId }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === limit }, String(n))));

  const colId = uid('col');
  const opId = uid('op');
  const valId = uid('val');
  const colSelect = h('select', { id: colId }, columns.map((c) => h('option', { value: c }, c)));
  const opSelect = h('select', { id: opId }, OPERATORS.map((o) => h('option', { value: o.op }, o.label)));
  const valInput = h('input', { id: valId, type: 'text', autocomplete: 'off' });
  const hint = h('small', { class: 'muted', id: uid('hint') });
  valInput.setAttribute('aria-describedby', hint.id);
  opSelect.addEventListener('change', () => (hint.textContent = OPERATORS.find((o) => o.op === opSelect.value)?.hint ?? ''));

  const filterForm = h(
    'form',
    { class: 'filters', 'aria-label': `Filter ${table}` },
    h('div', { class: 'field' }, h('label', { for: colId }, 'Column'), colSelect),
    h('div', { class: 'field' }, h('label', { for: opId }, 'Operator'), opSelect),
    h('div', { class: 'field grow' }, h('label', { for: valId }, 'Value'), valInput, hint),
    h('button', { type: 'submit', class: 'primary' }, 'Add filter'),
  );
  filterForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    filters.push({ column: colSelect.value, op: opSelect.value, value: valInput.value });
    valInput.value = '';
    offset = 0;
    void load();
  });
  prev.addEventListener('click', () => {
    offset = Math.max(0, offset - limit);
    void load();
  });
  next.addEventListener('click', () => {
    offset += limit;
    void load();
  });
  size.addEventListener('change', () => {
    limit = Number(size.value);
    offset = 0;
    void load();
  });

  const renderChips = () =>
    replace(
      chips,
      filters.map((f, i) =>
        h(
          'li',
          { class: 'chip' },
          `${f.column} ${OPERATORS.find((o) => o.op === f.op)?.label ?? f.op} ${f.value}`,
          h(
            'button',
            {
              type: 'button',
              class: 'chip-remove',
              'aria-label': `Remove filter ${f.column} ${f.op} ${f.value}`,
              onclick: () => {
                filters.splice(i, 1);
                offset = 0;
                void load();
              },
            },
            '×',
          ),
        ),
      ),
    );

  async function load(): Promise<void> {
    renderChips();
    alert.hidden = true;
    const params = [`limit=${limit}`, `offset=${offset}`, ...filters.map(filterParam)];
    if (order) params.push(`order=${encodeURIComponent(`${order.column}.${order.ascending ? 'asc' : 'desc'}`)}`);
    try {
      const res = await call(`/${encodeURIComponent(table)}?${params.join('&')}`, { headers: { prefer: 'count=exact' } });
      const rows = (await res.json()) as Array<Record<string, unknown>>;
      const range = parseContentRange(res.headers.get('content-range'));
      const total = range.total;
      summary.textContent =
        rows.length === 0 ? (offset > 0 ? 'No more rows.' : 'No rows match.') : `Rows ${offset + 1}–${offset + rows.length}${total === null ? '' : ` of ${total}`}`;
      prev.disabled = offset === 0;
      next.disabled = total === null ? rows.length < limit : offset + rows.length >= total;
      renderGrid(rows);
    } catch (err) {
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
      summary.textContent = '';
    }
  }

  function renderGrid(rows: Array<Record<string, unknown>>): void {
    const cols = columns.length > 0 ? columns : Object.keys(rows[0] ?? {});
    const head = h(
      'tr',
      {},
      cols.map((c) =>
        h(
          'th',
          { scope: 'col', 'aria-sort': order?.column === c ? (order.ascending ? 'ascending' : 'descending') : 'none' },
          h(
            'button',
            {
              type: 'button',
              class: 'sort',
              onclick: () => {
                order = order?.column === c ? { column: c, ascending: !order.ascending } : { column: c, ascending: true };
                offset = 0;
                void load().then(() => (grid.querySelector('th:not([aria-sort="none"]) button') as HTMLButtonElement | null)?.focus());
              },
            },
            c,
            h('span', { class: 'arrow', 'aria-hidden': 'true' }, order?.column === c ? (order.ascending ? ' ▲' : ' ▼') : ''),
          ),
        ),
      ),
    );
    const body = rows.map((r) =>
      h(
        'tr',
        {},
        cols.map((c) => {
          const v = r[c];
          const text = cellText(v);
          return h('td', { 'data-label': c, title: text.length > 40 ? text : null, class: v === null ? 'null' : null }, v === null ? 'null' : text);
        }),
      ),
    );
    replace(grid, h('table', { class: 'rows' }, h('caption', { class: 'visually-hidden' }, `Rows of ${table}`), h('thead', {}, head), h('tbody', {}, body)));
  }

  replace(
    root,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'table-title' },
      h('h2', { id: 'table-title' }, table),
      filterForm,
      chips,
      alert,
      grid,
      h('div', { class: 'pager' }, summary, h('div', { class: 'pager-buttons' }, h('label', { for: sizeId }, 'Rows per page'), size, prev, next)),
    ),
  );
  void load();
}

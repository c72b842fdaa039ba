// The table browser: the tables PostgREST's OpenAPI document lists for this user's token, and
// their rows through PostgREST itself (limit/offset, filters, order) — exactly what RLS lets them see.
import { ApiError, call, callJson } from '../api';
import { columnsOf, type Column, type OpenApiDefinition } from '../columns';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';
import { curlFor, OPERATORS, parseContentRange, postgrestJsFor, viewPath, type ViewQuery } from '../query';
import { rowFormDialog } from './row-form';

interface OpenApi {
  paths?: Record<string, Record<string, unknown>>;
  definitions?: Record<string, OpenApiDefinition>;
}

const PAGE_SIZES = [10, 25, 50, 100];

function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** A block of code with a button that copies it. */
export function copyBlock(label: string, text: string): HTMLElement {
  const done = h('span', { class: 'muted', role: 'status' });
  return h(
    'div',
    { class: 'copy-block' },
    h('div', { class: 'copy-head' }, h('strong', {}, label), done, h('button', {
      type: 'button',
      class: 'secondary',
      'aria-label': `Copy ${label}`,
      onclick: () => void navigator.clipboard.writeText(text).then(() => (done.textContent = 'Copied'), () => (done.textContent = 'Select the text and copy it')),
    }, 'Copy')),
    h('pre', { tabindex: 0 }, h('code', {}, text)),
  );
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
    const columns = columnsOf(doc.definitions?.[selected]);
    rowsBrowser(content, selected, columns, doc.paths?.[`/${selected}`] ?? {});
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

function rowsBrowser(root: HTMLElement, table: string, columns: Column[], operations: Record<string, unknown>): void {
  const query: ViewQuery = { table, filters: [], order: null, limit: 25, offset: 0 };
  const names = columns.map((c) => c.name);
  const keys = columns.filter((c) => c.pk);
  const writable = { insert: 'post' in operations, update: 'patch' in operations && keys.length > 0, delete: 'delete' in operations && keys.length > 0 };

  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const summary = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const done = h('p', { class: 'status done', role: 'status', 'aria-live': 'polite' });
  const grid = h('div', { class: 'table-wrap' });
  const chips = h('ul', { class: 'chips', 'aria-label': 'Active filters' });
  const request = h('div', { class: 'api-request' });
  const prev = h('button', { type: 'button', class: 'secondary' }, '← Previous');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next →');
  const sizeId = uid('size');
  const size = h('select', { id: sizeId }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === query.limit }, String(n))));

  const colId = uid('col');
  const opId = uid('op');
  const valId = uid('val');
  const colSelect = h('select', { id: colId }, names.map((c) => h('option', { value: c }, c)));
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
    query.filters.push({ column: colSelect.value, op: opSelect.value, value: valInput.value });
    valInput.value = '';
    query.offset = 0;
    void load();
  });
  prev.addEventListener('click', () => {
    query.offset = Math.max(0, query.offset - query.limit);
    void load();
  });
  next.addEventListener('click', () => {
    query.offset += query.limit;
    void load();
  });
  size.addEventListener('change', () => {
    query.limit = Number(size.value);
    query.offset = 0;
    void load();
  });

  /** The PostgREST filter that names exactly one row: its primary key. */
  const rowFilter = (r: Record<string, unknown>) => keys.map((k) => `${encodeURIComponent(k.name)}=eq.${encodeURIComponent(String(r[k.name]))}`).join('&');
  const rowName = (r: Record<string, unknown>) => keys.map((k) => String(r[k.name])).join(', ');

  const addRow = h('button', { type: 'button', class: 'primary', hidden: !writable.insert }, 'Add row');
  addRow.addEventListener('click', () => {
    void rowFormDialog(table, columns).then((saved) => {
      addRow.focus();
      if (!saved) return;
      done.textContent = `Inserted a row${keys.length ? ` (${rowName(saved)})` : ''}.`;
      void load();
    });
  });

  async function editRow(r: Record<string, unknown>, button: HTMLButtonElement): Promise<void> {
    const saved = await rowFormDialog(table, columns, r, rowFilter(r));
    if (saved) {
      done.textContent = `Saved row ${rowName(r)}.`;
      await load();
      (grid.querySelector(`button[data-edit="${CSS.escape(rowName(r))}"]`) as HTMLButtonElement | null)?.focus();
    } else button.focus();
  }

  async function deleteRow(r: Record<string, unknown>, button: HTMLButtonElement): Promise<void> {
    const sure = await confirmDialog({ title: `Delete row ${rowName(r)} of ${table}?`, body: 'The row is deleted for good, as your policies allow.', confirmLabel: 'Delete row', danger: true });
    if (!sure) return button.focus();
    alert.hidden = true;
    try {
      const res = await call(`/${encodeURIComponent(table)}?${rowFilter(r)}`, { method: 'DELETE', headers: { prefer: 'return=representation' } });
      const gone = (await res.json()) as unknown[];
      done.textContent = gone.length === 0 ? `Row ${rowName(r)} was not deleted: your policies do not allow it.` : `Deleted row ${rowName(r)}.`;
    } catch (err) {
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
    }
    await load();
    addRow.focus();
  }

  const renderChips = () =>
    replace(
      chips,
      query.filters.map((f, i) =>
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
                query.filters.splice(i, 1);
                query.offset = 0;
                void load().then(() => (chips.querySelector('button') ?? valInput).focus());
              },
            },
            '×',
          ),
        ),
      ),
    );

  const renderRequest = () => {
    const opened = (request.querySelector('details') as HTMLDetailsElement | null)?.open ?? false;
    replace(
      request,
      h(
        'details',
        { open: opened },
        h('summary', {}, 'API request for this view'),
        h('p', { class: 'muted' }, 'The page sends exactly this request, with your token. $TOKEN is a user access token (or send the anon key as apikey).'),
        copyBlock('curl', curlFor(location.origin, query)),
        copyBlock('postgrest-js', postgrestJsFor(query)),
      ),
    );
  };

  async function load(): Promise<void> {
    renderChips();
    renderRequest();
    alert.hidden = true;
    try {
      const res = await call(viewPath(query), { headers: { prefer: 'count=exact' } });
      const rows = (await res.json()) as Array<Record<string, unknown>>;
      const total = parseContentRange(res.headers.get('content-range')).total;
      const { offset, limit } = query;
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
    const cols = names.length > 0 ? names : Object.keys(rows[0] ?? {});
    const { order } = query;
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
                query.order = order?.column === c ? { column: c, ascending: !order.ascending } : { column: c, ascending: true };
                query.offset = 0;
                void load().then(() => (grid.querySelector('th:not([aria-sort="none"]) button') as HTMLButtonElement | null)?.focus());
              },
            },
            c,
            h('span', { class: 'arrow', 'aria-hidden': 'true' }, order?.column === c ? (order.ascending ? ' ▲' : ' ▼') : ''),
          ),
        ),
      ),
      writable.update || writable.delete ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Row actions')) : null,
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
        writable.update || writable.delete
          ? h(
              'td',
              { class: 'actions-cell', 'data-label': 'Actions' },
              writable.update
                ? h('button', { type: 'button', class: 'secondary', 'data-edit': rowName(r), 'aria-label': `Edit row ${rowName(r)}`, onclick: (ev: Event) => void editRow(r, ev.currentTarget as HTMLButtonElement) }, 'Edit')
                : null,
              writable.delete
                ? h('button', { type: 'button', class: 'danger', 'aria-label': `Delete row ${rowName(r)}`, onclick: (ev: Event) => void deleteRow(r, ev.currentTarget as HTMLButtonElement) }, 'Delete')
                : null,
            )
          : null,
      ),
    );
    replace(grid, h('table', { class: 'rows' }, h('caption', { class: 'visually-hidden' }, `Rows of ${table}`), h('thead', {}, head), h('tbody', {}, body)));
  }

  replace(
    root,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'table-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'table-title' }, table), addRow),
      filterForm,
      chips,
      alert,
      done,
      grid,
      h('div', { class: 'pager' }, summary, h('div', { class: 'pager-buttons' }, h('label', { for: sizeId }, 'Rows per page'), size, prev, next)),
      request,
    ),
  );
  void load();
}

// The SQL editor (admins): one statement run as anon, as a chosen user (authenticated, with the
// claims that user's token would carry) or as the service role, in a transaction the server rolls
// back unless the admin confirms a write. This is how policies are tested from the inside.
import { ApiError, callJson } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';

interface SqlResult {
  role: string;
  user_id: string | null;
  command: string | null;
  row_count: number | null;
  columns: Array<{ name: string; type: number }>;
  rows: unknown[][];
  truncated: boolean;
  committed: boolean;
}

const cell = (v: unknown) => (v === null || v === undefined ? 'null' : typeof v === 'object' ? JSON.stringify(v) : String(v));

export function sqlView(root: HTMLElement): void {
  const ids = { stmt: uid('stmt'), role: uid('role'), user: uid('user'), timeout: uid('timeout'), cap: uid('cap') };
  const statement = h('textarea', { id: ids.stmt, name: 'statement', rows: 6, spellcheck: 'false', required: true, 'aria-describedby': `${ids.stmt}-hint` }) as HTMLTextAreaElement;
  const role = h(
    'select',
    { id: ids.role, name: 'role' },
    h('option', { value: 'authenticated' }, 'a user (authenticated)'),
    h('option', { value: 'anon' }, 'anon (no token)'),
    h('option', { value: 'service_role' }, 'service role (bypasses RLS)'),
  );
  const user = h('select', { id: ids.user, name: 'user' }, h('option', { value: '' }, 'Loading users…'));
  const userField = h('div', { class: 'field' }, h('label', { for: ids.user }, 'User'), user);
  const timeout = h('input', { id: ids.timeout, type: 'number', min: 100, max: 60000, step: 100, value: 5000 });
  const cap = h('input', { id: ids.cap, type: 'number', min: 1, max: 10000, value: 1000 });
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run (rolled back)');
  const commit = h('button', { type: 'button', class: 'danger' }, 'Run and commit…');
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const results = h('div', { class: 'table-wrap' });
  role.addEventListener('change', () => (userField.hidden = role.value !== 'authenticated'));

  const form = h(
    'form',
    { class: 'sql-form', 'aria-label': 'Run a statement' },
    h('div', { class: 'field' }, h('label', { for: ids.stmt }, 'Statement'), statement, h('small', { id: `${ids.stmt}-hint` }, 'One statement. Ctrl+Enter runs it; nothing is kept unless you commit.')),
    h(
      'div',
      { class: 'options' },
      h('div', { class: 'field' }, h('label', { for: ids.role }, 'Run as'), role),
      userField,
      h('div', { class: 'field' }, h('label', { for: ids.timeout }, 'Time limit (ms)'), timeout),
      h('div', { class: 'field' }, h('label', { for: ids.cap }, 'Row cap'), cap),
    ),
    h('div', { class: 'actions' }, commit, run),
  );

  const who = () => (role.value === 'authenticated' ? `${user.selectedOptions[0]?.textContent ?? 'a user'} (authenticated)` : role.value);

  async function execute(write: boolean): Promise<void> {
    alert.hidden = true;
    status.textContent = 'Running…';
    replace(results);
    const json: Record<string, unknown> = { statement: statement.value, role: role.value, commit: write, timeout_ms: Number(timeout.value), max_rows: Number(cap.value) };
    if (role.value === 'authenticated' && user.value) json.user_id = user.value;
    try {
      const r = await callJson<SqlResult>('/console/api/sql', { method: 'POST', json });
      const count = r.truncated ? `the first ${r.rows.length} rows (more were cut off by the row cap)` : `${r.row_count ?? r.rows.length} row${(r.row_count ?? r.rows.length) === 1 ? '' : 's'}`;
      status.textContent = `${r.command ?? 'Statement'}: ${count} as ${who()} · ${r.committed ? 'committed' : 'rolled back'}`;
      if (r.columns.length > 0) {
        replace(
          results,
          h(
            'table',
            { class: 'rows sql-result' },
            h('caption', { class: 'visually-hidden' }, 'Result rows'),
            h('thead', {}, h('tr', {}, r.columns.map((c) => h('th', { scope: 'col' }, c.name)))),
            h('tbody', {}, r.rows.map((row) => h('tr', {}, row.map((v, i) => h('td', { 'data-label': r.columns[i].name, class: v === null ? 'null' : null }, cell(v)))))),
          ),
        );
      }
    } catch (err) {
      status.textContent = '';
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void execute(false);
  });
  statement.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  commit.addEventListener('click', async () => {
    if (!form.reportValidity()) return;
    const sure = await confirmDialog({
      title: 'Commit this statement?',
      body: h('div', {}, h('p', {}, `It runs as ${who()} and its changes are kept.`), h('pre', {}, statement.value)),
      confirmLabel: 'Run and commit',
      danger: true,
    });
    commit.focus();
    if (sure) await execute(true);
  });

  void callJson<Array<{ id: string; email: string; app_role: string }>>('/auth/admin/users?limit=1000')
    .then((users) => replace(user, users.map((u) => h('option', { value: u.id }, u.email))))
    .catch((err) => replace(user, h('option', { value: '' }, `Users could not be loaded: ${err instanceof ApiError ? err.message : String(err)}`)));

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'SQL editor')),
    h(
      'section',
      { class: 'card', 'aria-label': 'Editor' },
      h('p', { class: 'rule' }, 'Runs one statement as the role you choose — as a user, it sees exactly what their policies allow. The transaction is rolled back unless you choose Run and commit.'),
      form,
    ),
    h('section', { class: 'card', 'aria-label': 'Result' }, alert, status, results),
  );
}

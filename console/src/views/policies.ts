// Policies (admins): for every table the API can reach, whether row-level security is on, each
// policy's text as PostgreSQL holds it, and which of select/insert/update/delete each API role can
// reach. Tables without RLS are flagged first. Read from console.policy_coverage() on the server.
import { ApiError, callJson } from '../api';
import { h, replace } from '../dom';

type Reach = 'all' | 'policy' | 'none' | 'no grant';
interface TableCoverage {
  schema_name: string;
  table_name: string;
  kind: string;
  rls_enabled: boolean;
  policies: Array<{ name: string; command: string; roles: string[]; permissive: string; using: string | null; with_check: string | null }>;
  coverage: Record<string, Record<string, Reach>>;
}

const ROLES = ['anon', 'authenticated', 'service_role'];
const COMMANDS = ['select', 'insert', 'update', 'delete'];
const WORDS: Record<Reach, string> = { all: 'every row', policy: 'by policy', none: 'nothing', 'no grant': 'no grant' };

const qualified = (t: TableCoverage) => (t.schema_name === 'public' ? t.table_name : `${t.schema_name}.${t.table_name}`);
/** A table some API role may use: the ones whose missing RLS matters. */
const reachable = (t: TableCoverage) => ROLES.some((r) => r !== 'service_role' && COMMANDS.some((c) => t.coverage[r]?.[c] !== 'no grant'));

function tableCard(t: TableCoverage): HTMLElement {
  const name = qualified(t);
  const id = `policies-${t.schema_name}-${t.table_name}`;
  const rls = t.kind !== 'table' ? h('span', { class: 'badge' }, t.kind) : t.rls_enabled ? h('span', { class: 'ok-badge' }, 'RLS on') : h('span', { class: 'flag' }, 'RLS off');
  return h(
    'section',
    { class: 'card policy-card', 'aria-labelledby': id, 'data-table': name },
    h('div', { class: 'card-head' }, h('h2', { id }, name), rls),
    !t.rls_enabled && t.kind === 'table' && reachable(t)
      ? h('p', { class: 'alert' }, 'Row-level security is off: every role with a grant reaches every row.')
      : null,
    t.kind !== 'table'
      ? h('p', { class: 'muted' }, 'A view: the grid shows its grants; the policies of the tables it reads apply too when it is security_invoker.')
      : t.policies.length === 0
      ? h('p', { class: 'muted' }, t.rls_enabled ? 'No policies: only roles that bypass RLS reach any row.' : 'No policies.')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'rows policies' },
            h('caption', { class: 'visually-hidden' }, `Policies of ${name}`),
            h('thead', {}, h('tr', {}, ['policy', 'command', 'roles', 'kind', 'using', 'with check'].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              {},
              t.policies.map((p) =>
                h(
                  'tr',
                  {},
                  h('td', { 'data-label': 'policy' }, p.name),
                  h('td', { 'data-label': 'command' }, p.command),
                  h('td', { 'data-label': 'roles' }, p.roles.join(', ')),
                  h('td', { 'data-label': 'kind' }, p.permissive.toLowerCase()),
                  h('td', { 'data-label': 'using', title: p.using ?? '' }, p.using === null ? '—' : h('code', {}, p.using)),
                  h('td', { 'data-label': 'with check', title: p.with_check ?? '' }, p.with_check === null ? '—' : h('code', {}, p.with_check)),
                ),
              ),
            ),
          ),
        ),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'coverage' },
        h('caption', { class: 'visually-hidden' }, `What each role reaches in ${name}`),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'role'), COMMANDS.map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ROLES.map((r) =>
            h(
              'tr',
              { 'data-role': r },
              h('th', { scope: 'row' }, r),
              COMMANDS.map((c) => {
                const reach = t.coverage[r]?.[c] ?? 'no grant';
                return h('td', { class: `cov-${reach.replace(' ', '-')}`, 'data-command': c }, WORDS[reach]);
              }),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Scrolls to a table's card and moves the focus there, without touching the URL (the console routes on it). */
function jump(ev: Event): void {
  ev.preventDefault();
  const heading = document.getElementById((ev.currentTarget as HTMLAnchorElement).hash.slice(1));
  if (!heading) return;
  heading.setAttribute('tabindex', '-1');
  heading.scrollIntoView({ block: 'start' });
  heading.focus({ preventScroll: true });
}

export function policiesView(root: HTMLElement): void {
  const holder = h('div', {}, h('p', { class: 'muted' }, 'Loading policies…'));
  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Policies')),
    h(
      'p',
      { class: 'rule' },
      'For each table: whether row-level security is on, its policies, and what each API role reaches — ',
      h('em', {}, 'every row'),
      ' (a grant and no RLS, or a role that bypasses it), ',
      h('em', {}, 'by policy'),
      ', ',
      h('em', {}, 'nothing'),
      ' (RLS on and no policy for that command), or ',
      h('em', {}, 'no grant'),
      '. Test a policy in the SQL editor, as the user it is about.',
    ),
    holder,
  );
  void (async () => {
    let tables: TableCoverage[];
    try {
      tables = await callJson<TableCoverage[]>('/console/api/policies');
    } catch (err) {
      replace(holder, h('p', { class: 'alert', role: 'alert' }, `The policies could not be loaded. ${err instanceof ApiError ? err.message : String(err)}`));
      return;
    }
    const open = tables.filter((t) => t.kind === 'table' && !t.rls_enabled && reachable(t));
    replace(
      holder,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'no-rls-title' },
        h('h2', { id: 'no-rls-title' }, 'Tables without row-level security'),
        open.length === 0
          ? h('p', { class: 'ok-badge' }, 'Every table the API roles can reach has RLS on.')
          : h('ul', { class: 'no-rls' }, open.map((t) => h('li', {}, h('a', { href: `#policies-${t.schema_name}-${t.table_name}`, onclick: jump }, qualified(t)), ' ', h('span', { class: 'flag' }, 'RLS off')))),
      ),
      tables.map(tableCard),
    );
  })();
}

// Activity (admins): the audit logs through PostgREST (the admin-only views audit_activity and
// audit_requests), filtered by user, kind of action, time and failures, merged into one timeline,
// newest first. Choosing a user gives that user's timeline: what they did, and every request.
import { ApiError, call, callJson } from '../api';
import { h, replace, uid } from '../dom';
import { microsOf, shortDate } from '../format';
import { parseContentRange } from '../query';

interface ActivityRow {
  id: number;
  at: string;
  actor_id: string | null;
  actor_role: string | null;
  action: string;
  target: string | null;
  details: unknown;
}
interface RequestRow {
  id: number;
  at: string;
  user_id: string | null;
  role: string | null;
  method: string;
  path: string;
  query: string | null;
  status: number;
  duration_ms: number;
  kind: string;
}
type Entry = { at: string; kind: 'activity'; row: ActivityRow } | { at: string; kind: 'request'; row: RequestRow };

const CATEGORIES = ['auth', 'file', 'keys', 'schema', 'migration', 'backup'];
const PAGE = 50;

async function page<T>(path: string): Promise<{ rows: T[]; total: number | null }> {
  const res = await call(path, { headers: { prefer: 'count=exact' } });
  return { rows: (await res.json()) as T[], total: parseContentRange(res.headers.get('content-range')).total };
}

export function activityView(root: HTMLElement): void {
  const ids = { user: uid('act-user'), action: uid('act-action'), since: uid('act-since'), until: uid('act-until'), requests: uid('act-req'), failed: uid('act-failed') };
  const user = h('select', { id: ids.user, name: 'user' }, h('option', { value: '' }, 'Everyone'));
  const action = h('select', { id: ids.action, name: 'action' }, h('option', { value: '' }, 'Any'), CATEGORIES.map((c) => h('option', { value: c }, `${c}.*`)));
  const since = h('input', { id: ids.since, type: 'datetime-local', name: 'since' });
  const until = h('input', { id: ids.until, type: 'datetime-local', name: 'until' });
  const withRequests = h('input', { id: ids.requests, type: 'checkbox', checked: true });
  const failedOnly = h('input', { id: ids.failed, type: 'checkbox' });
  const summary = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const timeline = h('ol', { class: 'event-log timeline', 'aria-label': 'Timeline, newest first' });
  const emails = new Map<string, string>();
  const who = (id: string | null, role: string | null) => (id ? (emails.get(id) ?? id) : (role ?? 'the server'));

  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter the activity' },
    h('div', { class: 'field' }, h('label', { for: ids.user }, 'User'), user),
    h('div', { class: 'field' }, h('label', { for: ids.action }, 'Action'), action),
    h('div', { class: 'field' }, h('label', { for: ids.since }, 'From'), since),
    h('div', { class: 'field' }, h('label', { for: ids.until }, 'Until'), until),
    h('div', { class: 'field checks' }, h('label', { for: ids.requests }, withRequests, ' Include API requests'), h('label', { for: ids.failed }, failedOnly, ' Failed requests only')),
    h('button', { type: 'submit', class: 'primary' }, 'Show'),
  );

  async function load(): Promise<void> {
    alert.hidden = true;
    summary.textContent = 'Loading…';
    const time = (column: string) => [
      since.value ? `${column}=gte.${encodeURIComponent(new Date(since.value).toISOString())}` : null,
      until.value ? `${column}=lte.${encodeURIComponent(new Date(until.value).toISOString())}` : null,
    ];
    const act = [`limit=${PAGE}`, 'order=at.desc', user.value ? `actor_id=eq.${user.value}` : null, action.value ? `action=like.${action.value}.*` : null, ...time('at')].filter(Boolean);
    const req = [`limit=${PAGE}`, 'order=at.desc', 'select=id,at,user_id,role,method,path,query,status,duration_ms,kind', user.value ? `user_id=eq.${user.value}` : null, failedOnly.checked ? 'status=gte.400' : null, ...time('at')].filter(Boolean);
    // An action filter names activity kinds; requests have none, so they are left out then.
    const showRequests = withRequests.checked && !action.value;
    try {
      const [a, r] = await Promise.all([
        page<ActivityRow>(`/audit_activity?${act.join('&')}`),
        showRequests ? page<RequestRow>(`/audit_requests?${req.join('&')}`) : Promise.resolve({ rows: [] as RequestRow[], total: 0 }),
      ]);
      const entries: Entry[] = [...a.rows.map((row) => ({ at: row.at, kind: 'activity' as const, row })), ...r.rows.map((row) => ({ at: row.at, kind: 'request' as const, row }))].sort(
        (x, y) => microsOf(y.at) - microsOf(x.at),
      );
      const count = (n: number | null, shown: number, what: string) => `${n ?? shown} ${what}${(n ?? shown) === 1 ? '' : 's'}${n !== null && n > shown ? ` (newest ${shown} shown)` : ''}`;
      summary.textContent = [count(a.total, a.rows.length, 'event'), showRequests ? count(r.total, r.rows.length, 'request') : null].filter(Boolean).join(', ');
      replace(
        timeline,
        entries.map((e) =>
          e.kind === 'activity'
            ? h(
                'li',
                { class: 'activity', 'data-action': e.row.action },
                h('div', { class: 'ev-head' }, h('time', { datetime: e.at }, shortDate(e.at)), h('span', { class: 'ev-kind' }, e.row.action), h('span', {}, who(e.row.actor_id, e.row.actor_role)), e.row.target ? h('span', {}, e.row.target) : null),
                e.row.details ? h('pre', {}, h('code', {}, JSON.stringify(e.row.details))) : null,
              )
            : h(
                'li',
                { class: `request${e.row.status >= 400 ? ' failed' : ''}`, 'data-status': e.row.status },
                h(
                  'div',
                  { class: 'ev-head' },
                  h('time', { datetime: e.at }, shortDate(e.at)),
                  h('span', { class: 'ev-kind' }, `${e.row.method} ${e.row.path}${e.row.query ? `?${e.row.query}` : ''} → ${e.row.status}`),
                  h('span', {}, who(e.row.user_id, e.row.role)),
                  h('span', {}, `${Math.round(e.row.duration_ms)} ms`),
                ),
              ),
        ),
      );
      if (entries.length === 0) timeline.append(h('li', { class: 'empty' }, 'Nothing recorded for these filters.'));
    } catch (err) {
      summary.textContent = '';
      alert.textContent = err instanceof ApiError ? err.message : String(err);
      alert.hidden = false;
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Activity')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'activity-title' },
      h('h2', { id: 'activity-title' }, 'Filters'),
      h('p', { class: 'muted' }, 'From the audit log (audit_activity: sign-ins, account, file, key and schema changes; audit_requests: every API request). Choose a user for their timeline.'),
      form,
    ),
    h('section', { class: 'card', 'aria-label': 'Timeline' }, alert, summary, timeline),
  );

  void callJson<Array<{ id: string; email: string }>>('/auth/admin/users?limit=1000')
    .then((users) => {
      for (const u of users) {
        emails.set(u.id, u.email);
        user.append(h('option', { value: u.id }, u.email));
      }
    })
    .catch(() => {})
    .finally(() => void load());
}

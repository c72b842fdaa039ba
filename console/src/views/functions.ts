// Functions (admins): the deployed functions with their triggers and whether they load, and for
// one function its versions (roll back to one), its recent invocations and a box to call it with
// the signed-in user's token. The functions admin API answers; functions.assert_admin() in SQL
// decides who may ask.
import { ApiError, callJson, failureMessage } from '../api';
import { confirmDialog } from '../dialog';
import { h, replace, uid } from '../dom';
import { shortDate } from '../format';
import { freshToken } from '../session';

interface Triggers {
  http?: boolean;
  schedule?: string;
  on?: { schema?: string; table: string; events?: string[] };
}
interface Run {
  trigger: string;
  status: number;
  duration_ms: number;
  error: string | null;
  at: string;
}
interface FunctionRow {
  name: string;
  version: number;
  latest_version: number;
  pinned: boolean;
  deployed_at: string;
  triggers: Triggers;
  last_run: Run | null;
}
interface Version {
  version: number;
  sha256: string;
  deployed_at: string;
}
interface Invocation extends Run {
  version: number | null;
}
interface Failure {
  name: string;
  error: string;
}

const errorText = (err: unknown) => (err instanceof ApiError ? err.message : String(err));
const path = (name: string) => `/functions/admin/${encodeURIComponent(name)}`;

function triggerText(t: Triggers): string {
  const parts = ['HTTP'];
  if (t.schedule) parts.push(`schedule ${t.schedule}`);
  if (t.on) parts.push(`table ${t.on.schema && t.on.schema !== 'public' ? `${t.on.schema}.` : ''}${t.on.table}${t.on.events?.length ? ` (${t.on.events.join(', ')})` : ''}`);
  return parts.join(' · ');
}

const ms = (n: number) => `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;

function table(caption: string, cls: string, head: string[], rows: Array<{ attrs: Record<string, string>; cells: Array<string | Node> }>): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: `rows ${cls}` },
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', r.attrs, r.cells.map((c, i) => h('td', { 'data-label': head[i], title: typeof c === 'string' ? c : null }, c))))),
    ),
  );
}

export function functionsView(root: HTMLElement, selected: string | undefined): void {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading functions…'));
  const failuresBox = h('div', {});
  const detail = h('div', {});
  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Functions')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'functions-title' },
      h('h2', { id: 'functions-title' }, 'Deployed functions'),
      h('p', { class: 'muted' }, 'Each file functions/<name>.ts in PLINTH_FUNCTIONS_DIR. Choose one for its versions, its invocations and to call it.'),
      failuresBox,
      list,
    ),
    detail,
  );

  void (async () => {
    const [fns, failed] = await Promise.allSettled([callJson<FunctionRow[]>('/functions/admin'), callJson<Failure[]>('/console/api/functions/failures')]);
    if (fns.status === 'rejected') return replace(list, h('p', { class: 'alert', role: 'alert' }, `The functions could not be loaded. ${errorText(fns.reason)}`));
    const failures = new Map(failed.status === 'fulfilled' ? failed.value.map((f) => [f.name, f.error]) : []);
    const names = new Set(fns.value.map((f) => f.name));
    // A function whose first source never loaded has no recorded version: it is listed all the same.
    const rows = [...fns.value, ...[...failures.keys()].filter((n) => !names.has(n)).map((name) => ({ name }) as Partial<FunctionRow> & { name: string })].sort((a, b) => a.name.localeCompare(b.name));
    replace(
      failuresBox,
      failed.status === 'rejected' ? h('p', { class: 'alert', role: 'alert' }, `Which functions failed to load is unknown. ${errorText(failed.reason)}`) : null,
      [...failures].map(([name, error]) => h('p', { class: 'alert function-failure', role: 'alert', 'data-function': name }, h('strong', {}, `${name} failed to load: `), h('code', {}, error))),
    );
    if (rows.length === 0) return replace(list, h('p', { class: 'empty' }, 'No function is deployed. Add a file functions/<name>.ts (plinth new function <name> writes an example).'));
    replace(
      list,
      table(
        'Deployed functions',
        'functions',
        ['name', 'version', 'triggers', 'state', 'last run'],
        rows.map((f) => ({
          attrs: { 'data-function': f.name },
          cells: [
            h('a', { href: `/console/functions/${encodeURIComponent(f.name)}`, 'data-link': '', 'aria-current': f.name === selected ? 'page' : null }, f.name),
            f.version === undefined ? '—' : `v${f.version}${f.pinned ? ` (rolled back; latest v${f.latest_version})` : ''}`,
            f.triggers ? triggerText(f.triggers) : '—',
            failures.has(f.name) ? h('span', { class: 'badge state-failed', title: failures.get(f.name)! }, 'failed to load') : h('span', { class: 'badge state-ok' }, 'ok'),
            f.last_run ? `${f.last_run.status} · ${f.last_run.trigger} · ${shortDate(f.last_run.at)}` : 'never',
          ],
        })),
      ),
    );
  })();

  if (selected) functionDetail(detail, selected);
}

function functionDetail(root: HTMLElement, name: string): void {
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const status = h('p', { class: 'status done', role: 'status', 'aria-live': 'polite' });
  const versions = h('div', {}, h('p', { class: 'muted' }, 'Loading versions…'));
  const invocations = h('div', {}, h('p', { class: 'muted' }, 'Loading invocations…'));
  const show = (err: unknown) => {
    alert.textContent = errorText(err);
    alert.hidden = false;
  };

  const loadVersions = async () => {
    try {
      const [list, fns] = await Promise.all([callJson<Version[]>(`${path(name)}/versions`), callJson<FunctionRow[]>('/functions/admin')]);
      const running = fns.find((f) => f.name === name)?.version;
      if (list.length === 0) return replace(versions, h('p', { class: 'empty' }, 'No version recorded: the function has never loaded.'));
      replace(
        versions,
        table(
          `Versions of ${name}, newest first`,
          'versions',
          ['version', 'deployed', 'sha256', ''],
          list.map((v) => ({
            attrs: { 'data-version': String(v.version) },
            cells: [
              `v${v.version}${v.version === running ? ' (running)' : ''}`,
              shortDate(v.deployed_at),
              h('code', { title: v.sha256 }, v.sha256.slice(0, 12)),
              v.version === running ? '' : h('button', { type: 'button', class: 'secondary small', 'aria-label': `Roll back ${name} to v${v.version}`, onclick: () => void rollback(v.version) }, 'Roll back'),
            ],
          })),
        ),
      );
    } catch (err) {
      replace(versions, h('p', { class: 'alert', role: 'alert' }, `The versions could not be loaded. ${errorText(err)}`));
    }
  };

  const loadInvocations = async () => {
    try {
      const list = await callJson<Invocation[]>(`${path(name)}/invocations?limit=50`);
      if (list.length === 0) return replace(invocations, h('p', { class: 'empty' }, 'No invocation recorded yet.'));
      replace(
        invocations,
        table(
          `Recent invocations of ${name}, newest first`,
          'invocations',
          ['when', 'trigger', 'version', 'status', 'duration', 'error'],
          list.map((i) => ({
            attrs: { 'data-status': String(i.status), 'data-trigger': i.trigger },
            cells: [shortDate(i.at), i.trigger, i.version === null ? '—' : `v${i.version}`, String(i.status), ms(i.duration_ms), i.error ?? ''],
          })),
        ),
      );
    } catch (err) {
      replace(invocations, h('p', { class: 'alert', role: 'alert' }, `The invocations could not be loaded. ${errorText(err)}`));
    }
  };

  async function rollback(version: number): Promise<void> {
    const sure = await confirmDialog({
      title: `Roll ${name} back to v${version}?`,
      body: `Every sidecar runs the source recorded as v${version} from now on, until the file functions/${name}.ts changes again.`,
      confirmLabel: 'Roll back',
      danger: true,
    });
    if (!sure) return;
    alert.hidden = true;
    status.textContent = '';
    try {
      await callJson(`${path(name)}/rollback`, { method: 'POST', json: { version } });
      status.textContent = `${name} runs v${version} now.`;
    } catch (err) {
      show(err);
    }
    await loadVersions();
  }

  // Try it: the body goes to /functions/v1/<name> as the signed-in user; any answer is shown, errors too.
  const ids = { method: uid('try-method'), body: uid('try-body') };
  const method = h('select', { id: ids.method, name: 'method' }, ['POST', 'GET', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m)));
  const body = h('textarea', { id: ids.body, name: 'body', rows: 4, spellcheck: 'false' }, '{}');
  const answer = h('div', { class: 'try-answer', 'aria-live': 'polite' });
  const tryForm = h(
    'form',
    { class: 'try-form', 'aria-label': `Call ${name}` },
    h('div', { class: 'field' }, h('label', { for: ids.method }, 'Method'), method),
    h('div', { class: 'field' }, h('label', { for: ids.body }, 'JSON body'), body),
    h('button', { type: 'submit', class: 'primary' }, 'Send'),
  );
  tryForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const hasBody = method.value !== 'GET' && method.value !== 'DELETE';
    if (hasBody && body.value.trim()) {
      try {
        JSON.parse(body.value);
      } catch {
        return replace(answer, h('p', { class: 'alert', role: 'alert' }, 'The body must be valid JSON.'));
      }
    }
    replace(answer, h('p', { class: 'muted' }, 'Calling…'));
    const token = await freshToken();
    let res: Response;
    try {
      res = await fetch(`/functions/v1/${encodeURIComponent(name)}`, {
        method: method.value,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(hasBody ? { 'content-type': 'application/json' } : {}) },
        body: hasBody ? body.value || '{}' : undefined,
      });
    } catch {
      return replace(answer, h('p', { class: 'alert', role: 'alert' }, failureMessage(0)));
    }
    const text = await res.text();
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // Not JSON: shown as it came.
    }
    replace(
      answer,
      h('p', { class: `try-status ${res.ok ? 'status done' : 'alert'}`, role: 'status' }, `${res.status} ${res.statusText}`.trim()),
      h('pre', { class: 'try-response', tabindex: 0 }, h('code', {}, shown || '(empty body)')),
    );
    // The invocation log is written in batches, a moment after the call.
    setTimeout(() => void loadInvocations(), 600);
  });

  replace(
    root,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'try-title' },
      h('h2', { id: 'try-title' }, `Call ${name}`),
      h('p', { class: 'muted' }, `Sends the body to /functions/v1/${name} with your own token, as an app would.`),
      tryForm,
      answer,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'versions-title' }, h('h2', { id: 'versions-title' }, 'Versions'), alert, status, versions),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'invocations-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'invocations-title' }, 'Recent invocations'), h('button', { type: 'button', class: 'secondary', onclick: () => void loadInvocations() }, 'Refresh')),
      invocations,
    ),
  );
  void loadVersions();
  void loadInvocations();
}

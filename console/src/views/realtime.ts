// Realtime: subscribe to a published table over Plinth's own WebSocket protocol (/realtime) with
// the signed-in user's token, and watch changes arrive — exactly the changes RLS lets this user
// see. The token goes in the first message, never in the URL.
import { ApiError, callJson } from '../api';
import { h, replace, uid } from '../dom';
import { OPERATORS } from '../query';
import { freshToken } from '../session';

interface ServerMessage {
  type: string;
  id?: string;
  event?: string;
  table?: string;
  position?: number | string;
  role?: string;
  new?: unknown;
  old?: unknown;
  code?: string;
  message?: string;
  hint?: string | null;
}

const MAX_SHOWN = 200;

/** Shows the page; returns what stops it (the socket) when the console leaves it. */
export function realtimeView(root: HTMLElement): () => void {
  const ids = { table: uid('rt-table'), filter: uid('rt-filter') };
  const table = h('select', { id: ids.table, name: 'table' }, h('option', { value: '' }, 'Loading tables…'));
  const filter = h('input', { id: ids.filter, name: 'filter', type: 'text', autocomplete: 'off', placeholder: 'e.g. priority=gte.5&done=is.false', 'aria-describedby': `${ids.filter}-hint` });
  const events = ['INSERT', 'UPDATE', 'DELETE'].map((e) => ({ e, box: h('input', { type: 'checkbox', id: uid('rt-ev'), checked: true, value: e }) }));
  const subscribe = h('button', { type: 'submit', class: 'primary' }, 'Subscribe');
  const stop = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Unsubscribe');
  const clear = h('button', { type: 'button', class: 'secondary' }, 'Clear');
  const state = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' }, 'Not connected.');
  const alert = h('p', { class: 'alert', role: 'alert', hidden: true });
  const log = h('ol', { class: 'event-log', 'aria-label': 'Changes, newest first', 'aria-live': 'polite' });

  let socket: WebSocket | null = null;
  let current: string | null = null;
  let seq = 0;
  let tokenTimer: ReturnType<typeof setInterval> | undefined;
  let sentToken: string | null = null;

  const fail = (text: string) => {
    alert.textContent = text;
    alert.hidden = false;
  };

  const entry = (m: ServerMessage) => {
    const li = h(
      'li',
      { 'data-event': m.event ?? '' },
      h('div', { class: 'ev-head' }, h('span', { class: 'ev-kind' }, m.event ?? m.type), h('span', {}, m.table ?? ''), h('span', {}, `position ${m.position}`), h('span', {}, new Date().toLocaleTimeString())),
      m.new !== undefined ? h('pre', {}, h('code', {}, `new ${JSON.stringify(m.new)}`)) : null,
      m.old !== undefined ? h('pre', {}, h('code', {}, `old ${JSON.stringify(m.old)}`)) : null,
    );
    log.prepend(li);
    while (log.children.length > MAX_SHOWN) log.lastElementChild!.remove();
  };

  /** Opens the socket and authenticates with the first message; resolves once the server is ready. */
  const connect = (): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/realtime`);
      state.textContent = 'Connecting…';
      ws.addEventListener('open', async () => {
        sentToken = await freshToken();
        ws.send(JSON.stringify({ type: 'auth', token: sentToken }));
      });
      ws.addEventListener('message', (ev) => {
        const m = JSON.parse(String(ev.data)) as ServerMessage;
        if (m.type === 'ready') {
          state.textContent = `Connected as ${m.role}.`;
          resolve(ws);
        } else if (m.type === 'subscribed') {
          state.textContent = `Subscribed to ${m.table} from position ${m.position}: changes appear below as they happen.`;
          stop.disabled = false;
        } else if (m.type === 'change') entry(m);
        else if (m.type === 'error') {
          fail(`${m.message ?? 'Refused'}${m.code ? ` (${m.code})` : ''}${m.hint ? ` ${m.hint}` : ''}`);
          if (m.id && m.id === current) {
            current = null;
            stop.disabled = true;
            state.textContent = 'Not subscribed.';
          }
        } else if (m.type === 'unsubscribed') state.textContent = 'Unsubscribed.';
      });
      ws.addEventListener('close', (ev) => {
        if (socket === ws) socket = null;
        current = null;
        stop.disabled = true;
        clearInterval(tokenTimer);
        state.textContent = `Disconnected${ev.reason ? `: ${ev.reason}` : ''}.`;
        reject(new Error(ev.reason || 'The connection closed'));
      });
      ws.addEventListener('error', () => reject(new Error('The realtime connection failed')));
      // The access token is short-lived: hand the socket each new one before the old expires.
      tokenTimer = setInterval(() => {
        void freshToken().then((t) => {
          if (t && t !== sentToken && ws.readyState === WebSocket.OPEN) {
            sentToken = t;
            ws.send(JSON.stringify({ type: 'auth', token: t }));
          }
        });
      }, 15_000);
    });

  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Subscribe to a table' },
    h('div', { class: 'field' }, h('label', { for: ids.table }, 'Table'), table),
    h('div', { class: 'field grow' }, h('label', { for: ids.filter }, 'Filter (optional)'), filter, h('small', { id: `${ids.filter}-hint` }, `PostgREST syntax: column=operator.value, joined with &; operators ${OPERATORS.filter((o) => !['contains', 'like', 'ilike', 'not.is'].includes(o.op)).map((o) => o.op).join(', ')}.`)),
    h('fieldset', { class: 'field events' }, h('legend', {}, 'Events'), events.map(({ e, box }) => h('label', { for: box.id }, box, ` ${e}`))),
    h('div', { class: 'actions' }, subscribe, stop),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    alert.hidden = true;
    if (!table.value) return fail('Choose a table.');
    try {
      socket ??= await connect();
    } catch (err) {
      return fail((err as Error).message);
    }
    if (current) socket.send(JSON.stringify({ type: 'unsubscribe', id: current }));
    current = `s${++seq}`;
    const msg: Record<string, unknown> = { type: 'subscribe', id: current, table: table.value, events: events.filter((x) => x.box.checked).map((x) => x.e) };
    if (filter.value.trim()) msg.filter = filter.value.trim();
    socket.send(JSON.stringify(msg));
  });
  stop.addEventListener('click', () => {
    if (socket && current) socket.send(JSON.stringify({ type: 'unsubscribe', id: current }));
    current = null;
    stop.disabled = true;
    subscribe.focus();
  });
  clear.addEventListener('click', () => replace(log));

  void callJson<{ paths?: Record<string, unknown> }>('/', { headers: { accept: 'application/openapi+json' } })
    .then((doc) => {
      const names = Object.keys(doc.paths ?? {})
        .filter((p) => p !== '/' && !p.startsWith('/rpc/'))
        .map((p) => p.slice(1))
        .sort();
      replace(table, h('option', { value: '' }, 'Choose a table'), names.map((n) => h('option', { value: n }, n)));
    })
    .catch((err) => fail(`The table list could not be loaded. ${err instanceof ApiError ? err.message : String(err)}`));

  replace(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Realtime')),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'rt-title' },
      h('h2', { id: 'rt-title' }, 'Subscribe'),
      h('p', { class: 'muted' }, 'Changes of a published table (realtime.publish), as your account may see them: the same WebSocket protocol your apps use at /realtime.'),
      form,
      alert,
      state,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'rt-log-title' }, h('div', { class: 'card-head' }, h('h2', { id: 'rt-log-title' }, 'Changes'), clear), log),
  );

  return () => {
    clearInterval(tokenTimer);
    socket?.close(1000, 'left the page');
    socket = null;
  };
}

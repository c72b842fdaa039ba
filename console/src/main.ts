// The console's entry: routes (/console/files, /console/tables/<name>, /console/admin) to views,
// behind the sign-in screen. History-API URLs; the sidecar answers every /console/* with index.html.
import './styles.css';
import { call } from './api';
import { h, replace } from './dom';
import { onSessionChange, session, setSession } from './session';
import { adminView } from './views/admin';
import { filesView } from './views/files';
import { signInView, signInWithLinkToken } from './views/signin';
import { tablesView } from './views/tables';

const BASE = '/console/';
const main = document.getElementById('main') as HTMLElement;
const app = document.getElementById('app') as HTMLElement;

function route(): { view: 'files' | 'tables' | 'admin'; rest: string[] } {
  const parts = location.pathname.slice(BASE.length).split('/').filter(Boolean).map(decodeURIComponent);
  const [first, ...rest] = parts;
  if (first === 'tables' || first === 'admin') return { view: first, rest };
  return { view: 'files', rest };
}

async function signOut(): Promise<void> {
  const s = session();
  // The server forgets the refresh token; the page forgets everything whether or not that worked.
  if (s) await call('/auth/logout', { method: 'POST', json: {} }).catch(() => {});
  setSession(null);
  history.replaceState(null, '', BASE);
}

function header(active: string): HTMLElement {
  const s = session()!;
  const link = (path: string, label: string) =>
    h('a', { href: BASE + path, 'data-link': '', 'aria-current': active === path.split('/')[0] ? 'page' : null }, label);
  return h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: BASE, 'data-link': '' }, 'Plinth'),
    h(
      'nav',
      { 'aria-label': 'Console sections' },
      link('files', 'Files'),
      link('tables', 'Tables'),
      s.user.app_role === 'admin' ? link('admin', 'Admin') : null,
    ),
    h(
      'div',
      { class: 'who' },
      h('span', { class: 'email', title: s.user.email }, s.user.email),
      h('span', { class: `badge role-${s.user.app_role}` }, s.user.app_role),
      h('button', { type: 'button', class: 'secondary', onclick: () => void signOut() }, 'Sign out'),
    ),
  );
}

let renderedFor: string | null = null;

function render(): void {
  const s = session();
  const existing = app.querySelector('header.topbar');
  if (!s) {
    existing?.remove();
    renderedFor = null;
    document.title = 'Sign in · Plinth console';
    signInView(main);
    return;
  }
  const { view, rest } = route();
  const bar = header(view);
  if (existing) existing.replaceWith(bar);
  else app.prepend(bar);
  renderedFor = s.user.id;
  replace(main);
  if (view === 'admin' && s.user.app_role !== 'admin') {
    replace(main, h('section', { class: 'card' }, h('h1', {}, 'Admin'), h('p', { class: 'alert', role: 'alert' }, 'Not allowed: this page is for accounts with the admin app role.')));
  } else if (view === 'admin') adminView(main);
  else if (view === 'tables') tablesView(main, rest[0]);
  else filesView(main);
  document.title = `${view[0].toUpperCase()}${view.slice(1)} · Plinth console`;
  // Keyboard and screen-reader users start at the new content (after sign-in or navigation).
  main.focus({ preventScroll: true });
}

document.addEventListener('click', (ev) => {
  const a = (ev.target as Element | null)?.closest?.('a[data-link]') as HTMLAnchorElement | null;
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  ev.preventDefault();
  history.pushState(null, '', a.pathname);
  render();
});
window.addEventListener('popstate', render);
onSessionChange(() => render());

/** /console/verify?token=… (a sign-in link pointed at the console) signs in, then shows the files. */
async function takeSessionFromVerifyLink(): Promise<string> {
  const token = location.pathname === `${BASE}verify` ? new URLSearchParams(location.search).get('token') : null;
  if (!token) return '';
  history.replaceState(null, '', BASE);
  try {
    await signInWithLinkToken(token);
    return '';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

const s = session();
if (s && !s.refreshToken && s.expiresAt < Date.now()) setSession(null);
void takeSessionFromVerifyLink().then((problem) => {
  if (problem && !session()) signInView(main, problem);
  else render();
});

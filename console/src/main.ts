// The console's entry: routes (/console/files, /console/tables/<name>, /console/sql, /console/admin, …) to views,
// behind the sign-in screen. History-API URLs; the sidecar answers every /console/* with index.html.
import './styles.css';
import { call } from './api';
import { confirmDialog } from './dialog';
import { h, replace } from './dom';
import { COOKIE_SESSION, onSessionChange, restoreSession, session, setSession } from './session';
import { accountView } from './views/account';
import { activityView } from './views/activity';
import { adminView } from './views/admin';
import { backupsView } from './views/backups';
import { bucketsView } from './views/buckets';
import { LINK_PAGES, linkPageView, type LinkPage } from './views/links';
import { filesView } from './views/files';
import { functionsView } from './views/functions';
import { linkAccountEmail, signInView, signInWithLinkToken } from './views/signin';
import { keysView } from './views/keys';
import { policiesView } from './views/policies';
import { realtimeView } from './views/realtime';
import { sqlView } from './views/sql';
import { tablesView } from './views/tables';

const BASE = '/console/';
const main = document.getElementById('main') as HTMLElement;
const app = document.getElementById('app') as HTMLElement;

const VIEWS = ['files', 'buckets', 'tables', 'realtime', 'sql', 'policies', 'keys', 'activity', 'functions', 'backups', 'admin', 'account'] as const;
type View = (typeof VIEWS)[number];
/** Pages only for the admin app role; the server refuses their calls to anyone else as well. */
const ADMIN_VIEWS: readonly View[] = ['sql', 'policies', 'keys', 'activity', 'functions', 'backups', 'admin'];
const TITLES: Record<View, string> = { files: 'Files', buckets: 'Buckets', tables: 'Tables', realtime: 'Realtime', sql: 'SQL', policies: 'Policies', keys: 'Keys', activity: 'Activity', functions: 'Functions', backups: 'Backups', admin: 'Admin', account: 'Account' };
/** The pages, in the navigation's order. */
const NAV: readonly View[] = ['files', 'buckets', 'tables', 'realtime', 'sql', 'policies', 'keys', 'activity', 'functions', 'backups', 'admin', 'account'];

function route(): { view: View; rest: string[] } {
  const parts = location.pathname.slice(BASE.length).split('/').filter(Boolean).map(decodeURIComponent);
  const [first, ...rest] = parts;
  const view = (VIEWS as readonly string[]).includes(first) && NAV.includes(first as View) ? (first as View) : 'files';
  return { view, rest };
}

/** What the page on screen must stop (a socket) before another replaces it. */
let leaveView: (() => void) | null = null;

async function signOut(): Promise<void> {
  const s = session();
  // The server ends the session and clears the refresh cookie; the page forgets everything whether or not that worked.
  if (s) await call('/auth/logout', { method: 'POST', headers: COOKIE_SESSION, json: {} }).catch(() => {});
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
      NAV.filter((v) => s.user.app_role === 'admin' || !ADMIN_VIEWS.includes(v)).map((v) => link(v, TITLES[v])),
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
  leaveView?.();
  leaveView = null;
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
  if (ADMIN_VIEWS.includes(view) && s.user.app_role !== 'admin') {
    replace(main, h('section', { class: 'card' }, h('h1', {}, TITLES[view]), h('p', { class: 'alert', role: 'alert' }, 'Not allowed: this page is for accounts with the admin app role.')));
  } else if (view === 'admin') adminView(main);
  else if (view === 'account') accountView(main);
  else if (view === 'tables') tablesView(main, rest[0]);
  else if (view === 'buckets') bucketsView(main, rest[0], rest.length > 1 ? `${rest.slice(1).join('/')}/` : '');
  else if (view === 'sql') sqlView(main);
  else if (view === 'policies') policiesView(main);
  else if (view === 'keys') keysView(main);
  else if (view === 'realtime') leaveView = realtimeView(main);
  else if (view === 'activity') activityView(main);
  else if (view === 'functions') functionsView(main, rest[0]);
  else if (view === 'backups') backupsView(main);
  else filesView(main);
  document.title = `${TITLES[view]} · Plinth console`;
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

/**
 * /console/verify?token=… (a sign-in link pointed at the console) signs in, then shows the files.
 * A browser already signed in asks first, naming both accounts: anyone can mail someone their own
 * link, and a user switched silently would go on working, and uploading, in the sender's account.
 * Staying leaves the link unspent.
 */
async function followVerifyLink(token: string): Promise<string> {
  const signedIn = session();
  try {
    if (!signedIn) {
      await signInWithLinkToken(token);
      return '';
    }
    const linkEmail = await linkAccountEmail(token);
    const current = signedIn.user.email;
    if (linkEmail === current) return `You are already signed in as ${current}; the sign-in link was not used.`;
    const switchAccounts = await confirmDialog({
      title: 'Switch to another account?',
      body: h(
        'div',
        {},
        h('p', {}, 'You are signed in as ', h('strong', { class: 'current-account' }, current), '.'),
        h('p', {}, 'This sign-in link is for ', h('strong', { class: 'link-account' }, linkEmail), '.'),
        h('p', {}, 'Switch only if you asked for this link: a link someone else sent you would have you work in their account.'),
      ),
      cancelLabel: `Stay signed in as ${current}`,
      confirmLabel: `Switch to ${linkEmail}`,
    });
    if (!switchAccounts) return '';
    await signInWithLinkToken(token);
    // The new session's cookie replaced the old one; end the old session on the server too (without
    // X-Plinth-Session, so the new cookie stays).
    void fetch('/auth/logout', { method: 'POST', headers: { authorization: `Bearer ${signedIn.token}`, 'content-type': 'application/json' }, body: '{}' }).catch(() => {});
    return '';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

void (async () => {
  await restoreSession();
  // A mailed account link (reset, confirmation, invitation): its page first, then the console.
  const page = location.pathname.slice(BASE.length) as LinkPage;
  const linkToken = new URLSearchParams(location.search).get('token');
  if ((LINK_PAGES as readonly string[]).includes(page) && linkToken) {
    history.replaceState(null, '', BASE);
    return linkPageView(main, page, linkToken, (message) => {
      if (!session()) return signInView(main, message);
      render();
      if (message) main.prepend(h('p', { class: 'notice', role: 'status' }, message));
    });
  }
  const token = location.pathname === `${BASE}verify` ? new URLSearchParams(location.search).get('token') : null;
  if (!token) return render();
  history.replaceState(null, '', BASE);
  // The console the user already has shows behind the question.
  if (session()) render();
  const problem = await followVerifyLink(token);
  if (problem && !session()) return signInView(main, problem);
  if (!session()) return render();
  if (problem) main.prepend(h('p', { class: 'alert', role: 'alert' }, problem));
})();

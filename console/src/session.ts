// The signed-in session. The console signs in with `X-Plinth-Session: cookie`: the server keeps
// the refresh token in an HttpOnly cookie that no script can read (not this page's, nor one that
// another file on the API's origin might smuggle in), sent only to /auth. The access token lives in
// this page's memory alone; localStorage only says who is signed in (no token), so a reload or
// another tab knows to ask /auth/refresh for an access token of its own.
import { isUser, sessionFrom, type Session, type User } from './session-body';

type Raw = Record<string, unknown>;

export { sessionFrom, sessionFromLogin, type Session, type User } from './session-body';

/** Asks the accounts routes to keep the refresh token in the cookie rather than in the JSON. */
export const COOKIE_SESSION = { 'x-plinth-session': 'cookie' } as const;

const ACCOUNT_KEY = 'plinth.console.account';
/** Where earlier consoles kept the whole session, refresh token included. */
const LEGACY_KEY = 'plinth.console.session';

/**
 * Refresh this long before expiry, so a request never leaves with a token about to lapse: a
 * minute, or half the lifetime of a short-lived token (never a refresh loop).
 */
const margin = (s: Session) => Math.min(60_000, Math.max(1000, (s.expiresAt - s.issuedAt) / 2));

let current: Session | null = null;
const listeners = new Set<(s: Session | null) => void>();
let timer: ReturnType<typeof setTimeout> | undefined;
let refreshing: Promise<Session | null> | null = null;

/** Who this browser's console is signed in as, per localStorage (shared by its tabs). */
function storedAccount(): User | null {
  try {
    const u = JSON.parse(localStorage.getItem(ACCOUNT_KEY) ?? 'null') as unknown;
    return isUser(u) ? u : null;
  } catch {
    return null;
  }
}

export function session(): Session | null {
  return current;
}

export function onSessionChange(fn: (s: Session | null) => void): void {
  listeners.add(fn);
}

export function setSession(s: Session | null): void {
  const wasUser = current?.user.id;
  current = s;
  if (s) {
    const { id, email, app_role } = s.user;
    localStorage.setItem(ACCOUNT_KEY, JSON.stringify({ id, email, app_role }));
  } else localStorage.removeItem(ACCOUNT_KEY);
  schedule();
  // Listeners re-render on sign-in and sign-out; a refreshed token for the same user changes nothing visible.
  if (wasUser !== s?.user.id) for (const fn of listeners) fn(s);
}

/**
 * Tabs of one browser share one refresh cookie, and a refresh token works once (the server
 * revokes the whole session when a used one comes back), so tabs must not refresh in parallel:
 * a Web Lock makes them take turns. The browser stores the rotated cookie before the answer
 * reaches the page, so the next tab's request already carries the new token. Where Web Locks are
 * missing (plain HTTP on a host other than localhost), the server forgives a token one rotation
 * behind presented again within seconds (PLINTH_REFRESH_TOKEN_REUSE_INTERVAL).
 */
const LOCK = 'plinth.console.refresh';

function exclusively<T>(fn: () => Promise<T>): Promise<T> {
  const locks = (navigator as { locks?: LockManager }).locks;
  return locks ? (locks.request(LOCK, fn) as Promise<T>) : fn();
}

const ENDED = 'Your session ended (signed out elsewhere, or it expired): sign in again.';

async function askForAccessToken(body: Raw): Promise<Response> {
  return fetch('/auth/refresh', {
    method: 'POST',
    headers: { ...COOKIE_SESSION, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
}

/**
 * A new access token for the cookie's session (the cookie is rotated on the way). Concurrent
 * callers share one request. Resolves with null, and signs out, when the server refuses.
 */
export function refresh(): Promise<Session | null> {
  if (refreshing) return refreshing;
  const before = current;
  refreshing = exclusively(async () => {
    const res = await askForAccessToken({});
    if (res.status === 400 || res.status === 401 || res.status === 403) {
      // Only a browser that believed it was signed in is told its session ended.
      if (current === before) endSession(before || storedAccount() ? ENDED : '');
      return null;
    }
    if (!res.ok) throw new Error(`refresh answered ${res.status}`);
    const next = sessionFrom(await res.json());
    if (!next) throw new Error('refresh answered without a session');
    // A sign-out (here or in another tab) while the request was out wins.
    if (current === before && (before || storedAccount())) setSession(next);
    return current === next ? next : null;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/**
 * At page load: an access token for the signed-in account, if this browser has one. A session
 * an earlier console left in localStorage is moved into the cookie (and out of script reach).
 */
export async function restoreSession(): Promise<void> {
  const legacy = localStorage.getItem(LEGACY_KEY);
  if (legacy !== null) {
    localStorage.removeItem(LEGACY_KEY);
    try {
      const old = JSON.parse(legacy) as Raw;
      if (typeof old.refreshToken === 'string') {
        const res = await askForAccessToken({ refresh_token: old.refreshToken });
        const next = res.ok ? sessionFrom(await res.json()) : null;
        if (next) {
          setSession(next);
          return;
        }
      }
    } catch {
      /* the user signs in again */
    }
  }
  if (!storedAccount()) return;
  await refresh().catch(() => null);
}

// Another tab signed in (its cookie is this tab's too: fetch an access token) or signed out.
window.addEventListener('storage', (ev) => {
  if (ev.key !== ACCOUNT_KEY && ev.key !== null) return;
  const account = storedAccount();
  if (!account) {
    if (!current) return;
    current = null;
    schedule();
    for (const fn of listeners) fn(null);
  } else if (account.id !== current?.user.id) {
    void refresh().catch(() => null);
  }
});

/** A notice the sign-in screen shows once (e.g. why the user was signed out). */
let expiredNotice = '';

/** Signs the browser out because the server no longer accepts the session, saying so. */
export function endSession(notice: string): void {
  expiredNotice = notice;
  setSession(null);
}

export function takeNotice(): string {
  const n = expiredNotice;
  expiredNotice = '';
  return n;
}

function schedule(): void {
  clearTimeout(timer);
  const s = current;
  if (!s) return;
  const delay = Math.max(0, s.expiresAt - Date.now() - margin(s));
  // setTimeout overflows above 2^31 ms; a long-lived token is simply re-checked later.
  timer = setTimeout(() => {
    refresh().catch(() => {
      // Offline: try again shortly; the token may still be valid for a while.
      timer = setTimeout(schedule, 10_000);
    });
  }, Math.min(delay, 2 ** 31 - 1));
}

/** A token good for at least the margin, refreshing first when it is about to expire. */
export async function freshToken(): Promise<string | null> {
  const s = current;
  if (!s) return null;
  if (s.expiresAt - Date.now() < margin(s) / 2) {
    const next = await refresh().catch(() => s);
    return next?.token ?? null;
  }
  return s.token;
}

// The signed-in session: kept in localStorage so a reload stays signed in, refreshed before the
// access token expires, cleared on sign-out or when the refresh token is refused.

export interface User {
  id: string;
  email: string;
  app_role: string;
}

export interface Session {
  token: string;
  refreshToken: string | null;
  /** Epoch milliseconds when the access token was issued and when it stops being accepted. */
  issuedAt: number;
  expiresAt: number;
  user: User;
}

const STORAGE_KEY = 'plinth.console.session';
/**
 * Refresh this long before expiry, so a request never leaves with a token about to lapse: a
 * minute, or half the lifetime of a short-lived token (never a refresh loop).
 */
const margin = (s: Session) => Math.min(60_000, Math.max(1000, (s.expiresAt - (s.issuedAt || s.expiresAt - 120_000)) / 2));

let current: Session | null = load();
const listeners = new Set<(s: Session | null) => void>();
let timer: ReturnType<typeof setTimeout> | undefined;
let refreshing: Promise<Session | null> | null = null;

function load(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    return typeof s.token === 'string' && s.user ? s : null;
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
  if (s) localStorage.setItem(STORAGE_KEY, JSON.stringify(s));
  else localStorage.removeItem(STORAGE_KEY);
  schedule();
  // Listeners re-render on sign-in and sign-out; a refreshed token for the same user changes nothing visible.
  if (wasUser !== s?.user.id) for (const fn of listeners) fn(s);
}

/** The payload of a JWT, without verifying it (the server verifies; the page only reads exp and claims). */
export function jwtClaims(token: string): Record<string, unknown> {
  try {
    const part = token.split('.')[1] ?? '';
    const binary = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const json = new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    return JSON.parse(json) as Record<string, unknown>;
  } catch {
    return {};
  }
}

type Raw = Record<string, unknown>;

/**
 * A session from whatever shape an accounts endpoint answers with: `[{token, ...}]` (POST
 * /rpc/login), `{token | access_token, refresh_token, expires_in, user}`, or the same
 * nested under `session`.
 */
export function sessionFrom(body: unknown, previous?: Session | null): Session | null {
  let o = (Array.isArray(body) ? body[0] : body) as Raw | undefined;
  if (!o || typeof o !== 'object') return null;
  if (o.session && typeof o.session === 'object') o = { user: o.user, ...(o.session as Raw) };
  const token = (o.token ?? o.access_token) as string | undefined;
  if (typeof token !== 'string' || !token) return null;
  const claims = jwtClaims(token);
  const u = (o.user ?? {}) as Raw;
  const expSeconds = typeof claims.exp === 'number' ? claims.exp : undefined;
  const expiresIn = Number(o.expires_in);
  const expiresAt = expSeconds ? expSeconds * 1000 : Date.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000;
  const issuedAt = typeof claims.iat === 'number' ? claims.iat * 1000 : Date.now();
  return {
    token,
    issuedAt,
    refreshToken: (o.refresh_token as string | undefined) ?? previous?.refreshToken ?? null,
    expiresAt,
    user: {
      id: String(u.id ?? claims.sub ?? previous?.user.id ?? ''),
      email: String(u.email ?? claims.email ?? previous?.user.email ?? ''),
      app_role: String(u.app_role ?? claims.app_role ?? previous?.user.app_role ?? 'editor'),
    },
  };
}

/**
 * Every tab of the console shares one session (localStorage). A refresh token works once (the
 * server revokes the whole session when a used one comes back), so tabs must not refresh in
 * parallel: a Web Lock makes them take turns, and a tab that finds a newer session stored by
 * another tab adopts it instead of spending the old refresh token.
 * The lock and localStorage are separate channels, though: Chromium hands a tab the lock before
 * the other tab's write reaches it (seen: 4-12 ms late, on a busy machine), and the tab would then
 * spend the token the other tab has just spent. So a tab that had to queue for the lock (another
 * tab was refreshing) first waits briefly for that tab's session to arrive. Should it still be
 * late, the server forgives a token one rotation behind presented again within seconds
 * (PLINTH_REFRESH_TOKEN_REUSE_INTERVAL) with a new token of the same session.
 */
const LOCK = 'plinth.console.refresh';

function exclusively<T>(fn: (queued: boolean) => Promise<T>): Promise<T> {
  // navigator.locks exists only in secure contexts (HTTPS, localhost); elsewhere tabs fall back
  // to adopting each other's stored session.
  const locks = (navigator as { locks?: LockManager }).locks;
  if (!locks) return fn(false);
  return locks.request(LOCK, { ifAvailable: true }, (lock) =>
    lock ? fn(false) : locks.request(LOCK, () => fn(true)),
  ) as Promise<T>;
}

/** Resolves on the next change of the stored session (another tab's write), or after `ms`. */
function storageChange(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (ev?: StorageEvent) => {
      if (ev && ev.key !== STORAGE_KEY && ev.key !== null) return;
      clearTimeout(t);
      window.removeEventListener('storage', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    window.addEventListener('storage', done);
  });
}

/**
 * Trades the refresh token for a new access token. Concurrent callers share one request.
 * Resolves with null (and signs out) when the server refuses the refresh token.
 */
export function refresh(): Promise<Session | null> {
  if (refreshing) return refreshing;
  const s = current;
  if (!s?.refreshToken) return Promise.resolve(s);
  refreshing = exclusively(async (queued) => {
    if (queued && load()?.token === s.token) await storageChange(1000);
    const stored = load();
    if (stored?.user.id === s.user.id && stored.token !== s.token && stored.expiresAt >= s.expiresAt) {
      setSession(stored);
      return stored;
    }
    const res = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ refresh_token: s.refreshToken }),
    });
    if (res.status === 400 || res.status === 401 || res.status === 403) {
      if (current === s) endSession('Your session ended (signed out elsewhere, or it expired): sign in again.');
      return null;
    }
    if (!res.ok) throw new Error(`refresh answered ${res.status}`);
    const next = sessionFrom(await res.json(), s);
    if (next && current?.user.id === s.user.id) setSession(next);
    return next;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// Another tab signed in, refreshed or signed out: follow it.
window.addEventListener('storage', (ev) => {
  if (ev.key !== STORAGE_KEY && ev.key !== null) return;
  const next = load();
  const before = current?.user.id;
  current = next;
  schedule();
  if (before !== next?.user.id) for (const fn of listeners) fn(next);
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
  if (!s?.refreshToken) return;
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
  if (s.refreshToken && s.expiresAt - Date.now() < margin(s) / 2) {
    const next = await refresh().catch(() => s);
    return next?.token ?? null;
  }
  return s.token;
}

schedule();

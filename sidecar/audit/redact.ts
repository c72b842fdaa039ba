// What the request log may keep of a request target: the path and query with every credential
// replaced. Pure, so it can be tested alone; the writer calls it off the request path.

/** Query parameter names whose values are secrets (tokens, keys, passwords, signatures). */
const SECRET_NAME = /token|apikey|api_key|api-key|password|passwd|secret|signature|credential|jwt|authorization|^sig$|^key$|^code$|^otp$/i;
/** A JWT or an opaque token anywhere in a value or a path segment. */
const JWT = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

export const REDACTED = '[redacted]';

/** Splits a request target into its path and redacted query (null when there is none). */
export function redactTarget(url: string): { path: string; query: string | null } {
  const q = url.indexOf('?');
  let path = q === -1 ? url : url.slice(0, q);
  path = path.replace(JWT, REDACTED);
  if (q === -1 || q === url.length - 1) return { path, query: null };
  const parts = url.slice(q + 1).split('&');
  for (let i = 0; i < parts.length; i++) {
    const eq = parts[i].indexOf('=');
    let name = eq === -1 ? parts[i] : parts[i].slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch {
      /* a malformed escape: judged as sent */
    }
    if (eq !== -1 && SECRET_NAME.test(name)) parts[i] = `${parts[i].slice(0, eq)}=${REDACTED}`;
    else parts[i] = parts[i].replace(JWT, REDACTED);
  }
  return { path, query: parts.join('&') };
}

/** The kind of API a path belongs to, for the log and the metrics' labels. */
export function routeKind(path: string): string {
  if (path.startsWith('/rpc/')) return 'rpc';
  if (path.startsWith('/auth/') || path === '/auth' || path.startsWith('/.well-known/')) return 'accounts';
  if (path.startsWith('/storage/') || path.startsWith('/files/')) return 'files';
  if (path.startsWith('/buckets')) return 'buckets';
  if (path.startsWith('/functions/')) return 'functions';
  if (path === '/realtime' || path.startsWith('/realtime/')) return 'realtime';
  if (path.startsWith('/console')) return 'console';
  if (path === '/health' || path === '/version' || path === '/metrics') return 'operator';
  if (path.startsWith('/db/')) return 'policies';
  return 'tables';
}

/** Rows returned or affected, from PostgREST's Content-Range (`0-24/*`, `*\/3`); null when it says none. */
export function rowsFromContentRange(value: string | undefined): number | null {
  if (value === undefined) return null;
  const slash = value.indexOf('/');
  const range = slash === -1 ? value : value.slice(0, slash);
  const dash = range.indexOf('-');
  if (dash !== -1) {
    const a = Number(range.slice(0, dash));
    const b = Number(range.slice(dash + 1));
    if (Number.isInteger(a) && Number.isInteger(b) && b >= a) return b - a + 1;
  }
  if (range === '*' && slash !== -1) {
    const total = Number(value.slice(slash + 1));
    if (Number.isInteger(total)) return total;
  }
  return null;
}

// The session in the accounts routes' answers, read strictly: exactly the shape Plinth sends in
// cookie mode, nothing else signs anyone in. No DOM here, so it is unit-tested on its own.

export interface User {
  id: string;
  email: string;
  app_role: string;
}

export interface Session {
  token: string;
  /** Epoch milliseconds when the access token was issued and when it stops being accepted. */
  issuedAt: number;
  expiresAt: number;
  user: User;
}

/** The payload of a JWT, without verifying it (the server verifies; the page only reads iat and exp). */
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

export function isUser(u: unknown): u is User {
  const o = u as Raw | null;
  return !!o && typeof o === 'object' && typeof o.id === 'string' && typeof o.email === 'string' && typeof o.app_role === 'string';
}

/**
 * The session in an answer of POST /rpc/signup, /auth/verify or /auth/refresh in cookie mode:
 * `{token, expires_in, user}`. Anything else is not Plinth answering, and signs nobody in.
 */
export function sessionFrom(body: unknown): Session | null {
  const o = body as Raw | null;
  if (!o || typeof o !== 'object' || Array.isArray(o)) return null;
  if (typeof o.token !== 'string' || typeof o.expires_in !== 'number' || !isUser(o.user)) return null;
  // A refresh token in the body means cookie mode was not honoured: the session would not survive
  // a reload, and the token would sit where scripts can read it.
  if ('refresh_token' in o) return null;
  const claims = jwtClaims(o.token);
  const now = Date.now();
  // The token's own iat/exp when it has them; the page's clock and expires_in otherwise.
  const issuedAt = typeof claims.iat === 'number' ? claims.iat * 1000 : now;
  const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : now + o.expires_in * 1000;
  const { id, email, app_role } = o.user;
  return { token: o.token, issuedAt, expiresAt, user: { id, email, app_role } };
}

/** The session in an answer of POST /rpc/login: the same object, alone in an array. */
export function sessionFromLogin(body: unknown): Session | null {
  return Array.isArray(body) && body.length === 1 ? sessionFrom(body[0]) : null;
}

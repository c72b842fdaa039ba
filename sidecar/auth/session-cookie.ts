// Sessions for pages of this origin (the console): the refresh token travels in an HttpOnly
// cookie instead of the JSON body, so no script running on the API's origin can read it and carry
// a 30-day session away. A client opts in per request with `X-Plinth-Session: cookie`; every other
// client keeps receiving and sending refresh_token in JSON, and its requests never touch the cookie.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../core/config.js';
import { PlinthError } from '../core/errors.js';
import type { Session } from './sessions.js';

export const REFRESH_COOKIE = 'plinth_refresh';
/** Sent by /auth/refresh and /auth/logout only; the token is never sent to the REST API or file routes. */
const COOKIE_PATH = '/auth';

/**
 * True when the request asks for a cookie session. The header itself is the CSRF guard: a form or
 * a link from another site cannot set it, and a cross-origin fetch that does needs a CORS preflight
 * Plinth never grants for it. Browsers also say where a request comes from (Sec-Fetch-Site): only
 * the API's own origin may use the cookie, not even a sibling subdomain (SameSite=Strict alone
 * would let a page on another host of the same site through).
 */
export function wantsCookieSession(req: FastifyRequest): boolean {
  const mode = req.headers['x-plinth-session'];
  if (mode === undefined) return false;
  if (mode !== 'cookie') throw new PlinthError(400, 'X-Plinth-Session must be "cookie" (the refresh token then travels in an HttpOnly cookie), or be left out');
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') {
    throw new PlinthError(403, 'Cookie sessions are only for pages of this origin; other clients send refresh_token in the JSON body');
  }
  return true;
}

/** The refresh token of the cookie, if the request carries one. */
export function refreshTokenFromCookie(req: FastifyRequest): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== REFRESH_COOKIE) continue;
    const value = part.slice(eq + 1).trim();
    // The same bounds as a refresh_token in a body.
    return value.length > 0 && value.length <= 256 ? value : undefined;
  }
  return undefined;
}

function cookie(req: FastifyRequest, config: Config, value: string, maxAge: number): string {
  // Secure whenever the console is reached over HTTPS, directly or through a proxy Plinth trusts;
  // plain HTTP (localhost in development) would never send a Secure cookie back.
  const secure = config.publicUrl.startsWith('https:') || req.protocol === 'https';
  return `${REFRESH_COOKIE}=${value}; Path=${COOKIE_PATH}; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** The Set-Cookie header that forgets the refresh token. */
export function clearedRefreshCookie(req: FastifyRequest, config: Config): string {
  return cookie(req, config, '', 0);
}

/**
 * The body of a sign-in or refresh answer. In cookie mode the refresh token goes into the cookie
 * (lasting as long as the token) and is left out of the JSON.
 */
export function deliverSession(req: FastifyRequest, reply: FastifyReply, config: Config, session: Session): Session | Omit<Session, 'refresh_token'> {
  if (!wantsCookieSession(req)) return session;
  const { refresh_token, ...rest } = session;
  reply.header('set-cookie', cookie(req, config, refresh_token, config.auth.refreshTokenTtl));
  return rest;
}

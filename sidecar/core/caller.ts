// Who is calling. The one place a request's token is read (Authorization, else apikey, else the
// query parameters a route allows) and verified; HTTP routes, the proxy and realtime all use it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { ApiRole, Claims } from './db.js';
import { PlinthError, unauthorized } from './errors.js';
import type { KeyRing } from './keys.js';

export interface Caller {
  token: string;
  claims: Claims;
}

/** How a route accepts callers. Every route that needs a caller says so in its config. */
export interface CallerRule {
  /** Query parameters read when no header carries a token, for clients that cannot send headers (`<img src>`, WebSocket). */
  query?: readonly string[];
  /** Roles a token from the query may have: a user token or the service key in a URL ends up in logs and history. */
  queryRoles?: readonly ApiRole[];
  /** A request without any token passes with `request.caller` null (it may authenticate later). */
  optional?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set before the handler on routes whose config has `caller`; null on every other route. */
    caller: Caller | null;
  }
  interface FastifyContextConfig {
    caller?: CallerRule;
  }
}

const NO_KEY = 'No API key found in request: send the anon key in an apikey header, or a user token as Authorization: Bearer <token>';

/**
 * The token a request presents: Authorization wins; an apikey header stands in when it is absent;
 * then the allowed query parameters, in order. Null when there is none; 401 when Authorization is malformed.
 */
export function readToken(req: IncomingMessage, query: readonly string[] = []): { token: string; fromQuery: boolean } | null {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer +([^\s]+)\s*$/i.exec(auth);
    if (!m) throw unauthorized('Authorization header must be "Bearer <token>"');
    return { token: m[1], fromQuery: false };
  }
  const apikey = req.headers.apikey;
  if (typeof apikey === 'string' && apikey !== '') return { token: apikey, fromQuery: false };
  if (query.length > 0) {
    const q = req.url!.indexOf('?');
    if (q !== -1) {
      const params = new URLSearchParams(req.url!.slice(q + 1));
      for (const name of query) {
        const value = params.get(name);
        if (value) return { token: value, fromQuery: true };
      }
    }
  }
  return null;
}

/**
 * The token a request presents, else `fallback` (the development user's under BYPASS_AUTH), or
 * 401: every request to the REST API must carry one.
 */
export function presentedToken(req: IncomingMessage, fallback?: string): string {
  const found = readToken(req);
  if (found) return found.token;
  if (fallback !== undefined) return fallback;
  throw unauthorized(NO_KEY);
}

/**
 * The caller, when its token (or the fallback) was verified recently: identify() without waiting,
 * for hot paths. Undefined: call identify(). 401 when no token is presented or Authorization is malformed.
 */
export function knownCaller(keys: KeyRing, req: IncomingMessage): Caller | undefined {
  const token = presentedToken(req, keys.fallbackToken);
  const claims = keys.claimsOf(token);
  return claims === undefined ? undefined : { token, claims };
}

/** Reads and verifies the caller under `rule`; null only when the rule allows no token. */
export async function identify(keys: KeyRing, req: IncomingMessage, rule: CallerRule = {}): Promise<Caller | null> {
  const found = readToken(req, rule.query) ?? (keys.fallbackToken === undefined ? null : { token: keys.fallbackToken, fromQuery: false });
  if (!found) {
    if (rule.optional) return null;
    throw unauthorized(NO_KEY);
  }
  const claims = await keys.verify(found.token);
  if (found.fromQuery && rule.queryRoles && !rule.queryRoles.includes(claims.role)) {
    throw new PlinthError(401, `Only the ${rule.queryRoles.join(' or ')} key may be passed in the URL; send tokens in the Authorization header`, 'PGRST301');
  }
  return { token: found.token, claims };
}

/**
 * Sets `request.caller` on every route that declares `config.caller`, before anything else runs
 * for it: a route opts in where it is declared, and a request without a valid token never reaches
 * its handler.
 */
export function callerPlugin(keys: KeyRing) {
  async function plugin(app: FastifyInstance) {
    app.decorateRequest('caller', null);
    app.addHook('onRoute', (route) => {
      const rule = route.config?.caller;
      if (!rule) return;
      const guard = async (request: FastifyRequest) => {
        request.caller = await identify(keys, request.raw, rule);
      };
      const existing = route.onRequest;
      route.onRequest = existing === undefined ? [guard] : [guard, ...(Array.isArray(existing) ? existing : [existing])];
    });
  }
  // Not encapsulated: the hook must see the routes of every feature plugin registered after it.
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
  return plugin;
}

/** The caller of a route that declared `config.caller` (without `optional`). */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error(`route ${request.routeOptions.url} reads its caller without declaring config.caller`);
  return request.caller;
}

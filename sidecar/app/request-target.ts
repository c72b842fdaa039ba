// Request targets other than a path. HTTP/1.1 also allows the absolute form (`GET http://host/todos`,
// what clients send to proxies) and `*` (`OPTIONS *`, about the server as a whole). Both are turned
// into the origin form once, before anything decides where the request goes, so ownership and the
// proxied path are decided on the same string.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PlinthError, sendError } from '../core/errors.js';

const ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/** The origin form (`/path?query`) of an absolute-form target; null when the target is neither form. */
export function originForm(target: string): string | null {
  if (target.charCodeAt(0) === 47 /* / */) return target;
  const m = /^https?:\/\/[^/?#\s]*/i.exec(target);
  if (!m) return null;
  const rest = target.slice(m[0].length);
  if (rest === '') return '/';
  if (rest.charCodeAt(0) === 63 /* ? */) return `/${rest}`;
  return rest.charCodeAt(0) === 47 ? rest : null;
}

/**
 * Rewrites `req.url` to the origin form when it is not already; answers the request itself (and
 * returns false) when it cannot be routed: `OPTIONS *` gets the methods the API accepts.
 */
export function toOriginForm(req: IncomingMessage, res: ServerResponse): boolean {
  const target = req.url!;
  if (target === '*') {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { allow: ALLOW });
      res.end();
    } else {
      sendError(res, new PlinthError(400, `The request target * is only meaningful for OPTIONS, not ${req.method}`));
    }
    return false;
  }
  const path = originForm(target);
  if (path === null) {
    sendError(res, new PlinthError(400, 'The request target must be a path (/todos) or an absolute http(s) URL'));
    return false;
  }
  req.url = path;
  return true;
}

/** Where Supabase clients look for the table API: the same API as the root paths. */
export const REST_PREFIX = '/rest/v1';

/** A request that arrived under REST_PREFIX, which `restPath` removed. */
export interface RestPrefixed extends IncomingMessage {
  viaRestPrefix?: boolean;
}

/**
 * The root-path form of a target under `/rest/v1` (`/rest/v1/todos?x` → `/todos?x`,
 * `/rest/v1/` and `/rest/v1` → `/`); null for any other target.
 */
export function restPath(target: string): string | null {
  if (!target.startsWith(REST_PREFIX)) return null;
  const rest = target.slice(REST_PREFIX.length);
  if (rest === '') return '/';
  const c = rest.charCodeAt(0);
  if (c === 47 /* / */) return rest;
  if (c === 63 /* ? */) return `/${rest}`;
  return null;
}

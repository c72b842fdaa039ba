// Who is calling: a bearer token, else the apikey header (anon or service key), else refused.
import type { IncomingMessage } from 'node:http';
import type { KeyRing } from '../auth/keys.js';
import { unauthorized } from '../auth/keys.js';
import type { Claims } from '../db/sql.js';

export interface Caller {
  token: string;
  claims: Claims;
}

/** The token the request presents: Authorization wins; an apikey stands in when it is absent. */
export function presentedToken(req: IncomingMessage): string {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer +([^\s]+)\s*$/i.exec(auth);
    if (!m) throw unauthorized('Authorization header must be "Bearer <token>"');
    return m[1];
  }
  const apikey = req.headers.apikey;
  if (typeof apikey === 'string' && apikey !== '') return apikey;
  throw unauthorized('No API key found in request: send the anon key in an apikey header, or a user token as Authorization: Bearer <token>');
}

export async function authenticate(keys: KeyRing, req: IncomingMessage): Promise<Caller> {
  const token = presentedToken(req);
  return { token, claims: await keys.verify(token) };
}

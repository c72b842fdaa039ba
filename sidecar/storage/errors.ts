// How database refusals met by storage requests become HTTP errors, the way PostgREST maps them.
import type { Claims } from '../db/sql.js';
import { PlinthError } from '../http/errors.js';

interface PgError {
  code?: string;
  message?: string;
}

/** The exact body of seed 003 for a file that is absent or not the caller's. */
export const FILE_NOT_FOUND = { message: 'File not found.' } as const;

export function refusal(err: unknown, claims: Claims): unknown {
  const code = (err as PgError)?.code;
  const message = (err as PgError)?.message ?? '';
  // Insufficient privilege: 401 for the anonymous role (sign in), 403 for a signed-in one.
  if (code === '42501') {
    return claims.role === 'anon'
      ? new PlinthError(401, message, '42501', null, 'Sign in and send the user token as Authorization: Bearer <token>', { 'www-authenticate': 'Bearer' })
      : new PlinthError(403, message, '42501');
  }
  if (code === '22P02' || code === '22003') return new PlinthError(400, message, code);
  if (code === '55000') return new PlinthError(409, message, code);
  return err;
}

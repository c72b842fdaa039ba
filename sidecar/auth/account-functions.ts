// Account operations whose permission is decided in SQL: each calls one SECURITY DEFINER function
// in the auth schema under the caller's role and claims (asCaller). The function checks
// auth.role() / auth.app_role() and raises 42501 when the caller may not; TypeScript only maps
// the SQL error to an HTTP status.
import type { Plinth } from '../context.js';
import { asCaller, type Claims, type Tx } from '../db/sql.js';
import { PlinthError } from '../http/errors.js';
import { unauthorized } from './keys.js';
import type { UserProfile } from './users.js';

const STATUS_BY_SQLSTATE: Record<string, number> = {
  '42501': 403, // insufficient_privilege: the function refused this caller
  P0002: 404, // no_data_found
  '22023': 400, // invalid_parameter_value
  '23514': 400, // check_violation (an app role that does not exist)
};

async function inSql<T>(plinth: Plinth, claims: Claims, query: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return await asCaller(plinth.sql, claims, query);
  } catch (err) {
    const e = err as { code?: string; message: string; hint?: string };
    const status = e.code ? STATUS_BY_SQLSTATE[e.code] : undefined;
    if (status) throw new PlinthError(status, e.message, e.code, null, e.hint ?? null);
    throw err;
  }
}

/** The caller's own account; 401 once their session has ended or the account is gone. */
export async function callerProfile(plinth: Plinth, claims: Claims): Promise<UserProfile> {
  const [me] = await inSql(plinth, claims, (tx) => tx<UserProfile[]>`select * from auth.me()`);
  if (!me) throw unauthorized('This session has ended or its account no longer exists; sign in again');
  return me;
}

export async function endSession(plinth: Plinth, claims: Claims, everywhere: boolean): Promise<number> {
  const [{ ended }] = await inSql(plinth, claims, (tx) => tx<{ ended: number }[]>`select auth.end_session(${everywhere}) as ended`);
  return ended;
}

export function listUsers(plinth: Plinth, claims: Claims, limit: number, offset: number): Promise<UserProfile[]> {
  return inSql(plinth, claims, (tx) => tx<UserProfile[]>`select * from auth.list_users(${limit}, ${offset})`);
}

export async function setAppRole(plinth: Plinth, claims: Claims, userId: string, appRole: string): Promise<UserProfile> {
  const [user] = await inSql(plinth, claims, (tx) => tx<UserProfile[]>`select * from auth.set_app_role(${userId}, ${appRole})`);
  return user;
}

// Account operations whose permission is decided in SQL: each calls one SECURITY DEFINER function
// in the auth schema under the caller's role and claims (asCaller). The function checks
// auth.role() / auth.app_role() and refuses the caller itself; asCaller turns that into HTTP.
import type { Plinth } from '../core/context.js';
import { asCaller, type Claims } from '../core/db.js';
import { unauthorized } from '../core/errors.js';
import type { UserProfile } from './users.js';

/** The caller's own account; 401 once their session has ended or the account is gone. */
export async function callerProfile(plinth: Plinth, claims: Claims): Promise<UserProfile> {
  const [me] = await asCaller(plinth.callerSql, claims, (tx) => tx<UserProfile[]>`select * from auth.me()`);
  if (!me) throw unauthorized('This session has ended or its account no longer exists; sign in again');
  return me;
}

export async function endSession(plinth: Plinth, claims: Claims, everywhere: boolean): Promise<number> {
  const [{ ended }] = await asCaller(plinth.callerSql, claims, (tx) => tx<{ ended: number }[]>`select auth.end_session(${everywhere}) as ended`);
  return ended;
}

export function listUsers(plinth: Plinth, claims: Claims, limit: number, offset: number): Promise<UserProfile[]> {
  return asCaller(plinth.callerSql, claims, (tx) => tx<UserProfile[]>`select * from auth.list_users(${limit}, ${offset})`);
}

export async function setAppRole(plinth: Plinth, claims: Claims, userId: string, appRole: string): Promise<UserProfile> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<UserProfile[]>`select * from auth.set_app_role(${userId}, ${appRole})`);
  return user;
}

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

export async function setAppRole(plinth: Plinth, claims: Claims, userId: string, appRole: string): Promise<UserProfile> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<UserProfile[]>`select * from auth.set_app_role(${userId}, ${appRole})`);
  return user;
}

/** What an admin sees of a user (auth.admin_user). */
export interface AdminUser extends UserProfile {
  disabled_at: Date | null;
  has_password: boolean;
  active_sessions: number;
}

export async function searchUsers(plinth: Plinth, claims: Claims, query: string, limit: number, offset: number): Promise<{ users: AdminUser[]; total: number }> {
  return asCaller(plinth.callerSql, claims, async (tx) => {
    const users = await tx<AdminUser[]>`select * from auth.admin_search_users(${query}, ${limit}, ${offset})`;
    const [{ total }] = await tx<{ total: string }[]>`select auth.admin_count_users(${query}) as total`;
    return { users, total: Number(total) };
  });
}

export async function adminCreateUser(plinth: Plinth, claims: Claims, email: string, passwordHash: string | null, confirmed: boolean): Promise<AdminUser> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<AdminUser[]>`select * from auth.admin_create_user(${email}, ${passwordHash}, ${confirmed})`);
  return user;
}

export async function adminInviteUser(plinth: Plinth, claims: Claims, email: string, tokenHash: Buffer): Promise<AdminUser> {
  const ttl = plinth.config.auth.accountLinkTtl;
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<AdminUser[]>`select * from auth.admin_invite_user(${email}, ${tokenHash}, ${ttl})`);
  return user;
}

export async function adminSetDisabled(plinth: Plinth, claims: Claims, userId: string, disabled: boolean): Promise<AdminUser> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<AdminUser[]>`select * from auth.admin_set_disabled(${userId}, ${disabled})`);
  return user;
}

export async function adminEndSessions(plinth: Plinth, claims: Claims, userId: string): Promise<number> {
  const [{ ended }] = await asCaller(plinth.callerSql, claims, (tx) => tx<{ ended: number }[]>`select auth.admin_end_sessions(${userId}) as ended`);
  return ended;
}

export async function adminDeleteUser(plinth: Plinth, claims: Claims, userId: string): Promise<AdminUser> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<AdminUser[]>`select * from auth.admin_delete_user(${userId})`);
  return user;
}

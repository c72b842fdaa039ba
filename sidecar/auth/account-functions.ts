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

/** Ends every session of the caller but the one their token names. */
export async function endOtherSessions(plinth: Plinth, claims: Claims): Promise<number> {
  const [{ ended }] = await asCaller(plinth.callerSql, claims, (tx) => tx<{ ended: number }[]>`select auth.end_other_sessions() as ended`);
  return ended;
}

/** Merges a patch into the caller's own user_metadata (null removes a key); returns the result. */
export async function updateOwnMetadata(plinth: Plinth, claims: Claims, patch: Record<string, unknown>): Promise<Record<string, unknown>> {
  const [{ merged }] = await asCaller(plinth.callerSql, claims, (tx) => tx<{ merged: Record<string, unknown> }[]>`select auth.update_my_metadata(${tx.json(patch as never)}) as merged`);
  return merged;
}

export async function adminGetUser(plinth: Plinth, claims: Claims, userId: string): Promise<AdminUser> {
  const [user] = await asCaller(plinth.callerSql, claims, (tx) => tx<AdminUser[]>`select * from auth.admin_get_user(${userId})`);
  return user;
}

/** What an admin may change on a user at once; each field only when given. */
export interface AdminUserChanges {
  email?: string;
  passwordHash?: string;
  confirmed?: boolean;
  userMetadata?: Record<string, unknown>;
  disabled?: boolean;
  appRole?: string;
}

/** Applies the changes in one transaction, each through the SQL function that rules on it. */
export async function adminUpdateUser(plinth: Plinth, claims: Claims, userId: string, changes: AdminUserChanges): Promise<AdminUser> {
  return asCaller(plinth.callerSql, claims, async (tx) => {
    const { email, passwordHash, confirmed, userMetadata, disabled, appRole } = changes;
    let [user] = await tx<AdminUser[]>`
      select * from auth.admin_update_user(${userId}, ${email ?? null}, ${passwordHash ?? null}, ${confirmed ?? null},
                                           ${userMetadata === undefined ? null : tx.json(userMetadata as never)})`;
    if (appRole !== undefined) await tx`select * from auth.set_app_role(${userId}, ${appRole})`;
    if (disabled !== undefined) [user] = await tx<AdminUser[]>`select * from auth.admin_set_disabled(${userId}, ${disabled})`;
    if (appRole !== undefined && disabled === undefined) [user] = await tx<AdminUser[]>`select * from auth.admin_get_user(${userId})`;
    return user;
  });
}

/** Creates a user and, in the same transaction, gives it user_metadata. */
export async function adminCreateUserWithMetadata(
  plinth: Plinth,
  claims: Claims,
  email: string,
  passwordHash: string | null,
  confirmed: boolean,
  userMetadata: Record<string, unknown>,
): Promise<AdminUser> {
  return asCaller(plinth.callerSql, claims, async (tx) => {
    let [user] = await tx<AdminUser[]>`select * from auth.admin_create_user(${email}, ${passwordHash}, ${confirmed})`;
    if (Object.keys(userMetadata).length > 0) {
      [user] = await tx<AdminUser[]>`select * from auth.admin_update_user(${user.id}, null, null, null, ${tx.json(userMetadata as never)})`;
    }
    return user;
  });
}

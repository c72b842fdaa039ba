// Accounts in auth.users: creation, lookup by email, and the admin account from the environment.
// Emails are stored lower-cased and trimmed; the unique index on lower(email) guards duplicates.
import type { Plinth } from '../core/context.js';
import type { Sql } from '../core/db.js';
import { ConfigError } from '../core/config.js';
import { AccountRefusal } from './refusals.js';
import { assertAcceptablePassword, hashPassword, verifyPassword } from './passwords.js';

/** What the API shows of a user (auth.user_profile): never the password hash. */
export interface UserProfile {
  id: string;
  email: string;
  app_role: 'editor' | 'admin';
  email_confirmed_at: Date | null;
  last_sign_in_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export const PROFILE_COLUMNS = ['id', 'email', 'app_role', 'email_confirmed_at', 'last_sign_in_at', 'created_at', 'updated_at'] as const;

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Creates an account; 409 when the email (in any case) is taken. */
export async function createUser(sql: Sql, email: string, passwordHash: string | null, userMetadata: Record<string, unknown> = {}): Promise<UserProfile> {
  const [user] = await sql<UserProfile[]>`
    insert into auth.users (email, password_hash, user_metadata) values (${normalizeEmail(email)}, ${passwordHash}, ${sql.json(userMetadata as never)})
    on conflict ((lower(email))) do nothing
    returning ${sql(PROFILE_COLUMNS)}`;
  if (!user) {
    throw new AccountRefusal('email_taken', 409, 'An account with this email already exists', '23505', 'Sign in instead, or ask for a magic link');
  }
  return user;
}

export type StoredUser = UserProfile & { password_hash: string | null; disabled_at: Date | null };

/** The statement reading an email's account with what a password sign-in checks (also usable as a fragment). */
export function storedUserByEmail(sql: Sql, email: string) {
  return sql<StoredUser[]>`select ${sql(PROFILE_COLUMNS)}, password_hash, disabled_at from auth.users where lower(email) = ${normalizeEmail(email)}`;
}

export async function findUserByEmail(sql: Sql, email: string): Promise<StoredUser | undefined> {
  const [user] = await storedUserByEmail(sql, email);
  return user;
}

/**
 * PLINTH_ADMIN_EMAIL / PLINTH_ADMIN_PASSWORD: the account is created on first start, and on later
 * starts made an admin again and given the configured password if it changed. Never duplicated:
 * the upsert rides on the unique index, so concurrent sidecars agree.
 *
 * Signing up proves nothing about an address, so an account with that address that Plinth did not
 * create as the admin, and that is not an admin, may be anyone's: it is promoted only with
 * PLINTH_ADMIN_ADOPT=true. Either change ends the account's sessions (a trigger on auth.users).
 */
export async function bootstrapAdmin(plinth: Plinth): Promise<void> {
  const { adminEmail, adminPassword, adminAdopt } = plinth.config.auth;
  if (!adminEmail || !adminPassword) return;
  try {
    assertAcceptablePassword(adminPassword);
  } catch (err) {
    throw new ConfigError(`PLINTH_ADMIN_PASSWORD is not acceptable: ${(err as Error).message}`);
  }
  const email = normalizeEmail(adminEmail);
  const existing = await findUserByEmail(plinth.sql, email);
  if (existing && existing.app_role === 'admin' && (await verifyPassword(existing.password_hash, adminPassword))) return;
  const passwordHash = await hashPassword(adminPassword);
  const [row] = await plinth.sql<{ created: boolean }[]>`
    insert into auth.users (email, password_hash, app_role, email_confirmed_at, created_as_env_admin)
    values (${email}, ${passwordHash}, 'admin', now(), true)
    on conflict ((lower(email))) do update
      set password_hash = excluded.password_hash, app_role = 'admin',
          email_confirmed_at = coalesce(auth.users.email_confirmed_at, now())
      where auth.users.app_role = 'admin' or auth.users.created_as_env_admin or ${adminAdopt}
    returning xmax = 0 as created`;
  if (!row) {
    throw new ConfigError(
      `an account with PLINTH_ADMIN_EMAIL ${email} already exists and is not an admin; anyone may have signed up with that address, so it is not promoted: set PLINTH_ADMIN_ADOPT=true to make it the admin anyway (its password is replaced and its sessions end)`,
    );
  }
  plinth.log.info(`admin account ${email} ${row.created ? 'created' : 'updated'} from PLINTH_ADMIN_EMAIL`);
}

/** The stored password hash of an account, or null when it has none or is gone. */
export async function passwordHashOf(sql: Sql, userId: string): Promise<string | null> {
  const [row] = await sql<{ password_hash: string | null }[]>`select password_hash from auth.users where id = ${userId}`;
  return row?.password_hash ?? null;
}

/**
 * Sets a new password hash. Every session of the user ends (a trigger), except `keepSession`: the
 * session that changed it, when it goes on (see the credential trigger).
 */
export async function setPasswordHash(sql: Sql, userId: string, passwordHash: string, keepSession: string | null = null): Promise<void> {
  await sql.begin(async (tx) => {
    if (keepSession !== null) await tx`select set_config('plinth.keep_session', ${keepSession}, true)`;
    await tx`update auth.users set password_hash = ${passwordHash} where id = ${userId}`;
  });
}

/** The user_metadata of some accounts, by id (GoTrue's user objects show it). */
export async function userMetadataOf(sql: Sql, ids: string[]): Promise<Map<string, Record<string, unknown>>> {
  if (ids.length === 0) return new Map();
  const rows = await sql<{ id: string; user_metadata: Record<string, unknown> }[]>`select id, user_metadata from auth.users where id = any(${ids}::uuid[])`;
  return new Map(rows.map((r) => [r.id, r.user_metadata]));
}

// The database connections, and the one helper that runs SQL as the caller so that RLS decides.
// Two pools: the owner's, for the sidecar's own bookkeeping, and the caller pool, logged in as
// plinth_caller, the only one SQL runs on as a caller: it holds no rights of its own, so a
// statement that escapes the caller's role (RESET ROLE) finds nothing there.
import postgres from 'postgres';
import { fromDatabase } from './errors.js';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;
/** A pool logged in as plinth_caller: what asCaller needs, so the types keep the owner pool out of it. */
export type CallerSql = Sql & { readonly __loggedInAs: 'plinth_caller' };

export const CALLER_LOGIN = 'plinth_caller';

export const API_ROLES = ['anon', 'authenticated', 'service_role'] as const;
export type ApiRole = (typeof API_ROLES)[number];

/** Verified JWT claims, as PostgREST would put them in request.jwt.claims. */
export interface Claims {
  role: ApiRole;
  sub?: string;
  email?: string;
  app_role?: string;
  [claim: string]: unknown;
}

export function connect(url: string, max = 10, applicationName = 'plinth'): Sql {
  return postgres(url, {
    max,
    onnotice: () => {},
    connection: { application_name: applicationName },
    // While the database is away, a new connection is tried at least every second (postgres.js
    // waits up to 20 s by default), so work resumes within about a second of its return.
    backoff: (attempts: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** attempts, 1),
    // An address that does not answer fails in 10 s rather than 30.
    connect_timeout: 10,
  });
}

/**
 * plinth_caller's password: a secret kept in the database (auth.secrets), so every sidecar of
 * one database agrees on it, however each spells the database's address.
 */
export async function callerPassword(owner: Sql): Promise<string> {
  const [row] = await owner<{ value: Buffer }[]>`select value from auth.secrets where name = 'plinth_caller_password'`;
  if (!row) throw new Error('auth.secrets has no plinth_caller_password: are the migrations applied?');
  return row.value.toString('base64url');
}

export function callerUrl(ownerUrl: string, password: string): string {
  const u = new URL(ownerUrl);
  u.username = CALLER_LOGIN;
  u.password = password;
  return u.toString();
}

/** Sets plinth_caller's password (as the owner) and opens the caller pool. */
export async function connectCaller(owner: Sql, ownerUrl: string, max: number): Promise<CallerSql> {
  const password = await callerPassword(owner);
  // Base64url: nothing to escape in the literal (ALTER ROLE takes no bind parameters).
  await owner.unsafe(`alter role ${CALLER_LOGIN} with login password '${password}'`);
  return connect(callerUrl(ownerUrl, password), max, 'plinth caller') as CallerSql;
}

/**
 * Switches an open transaction to the caller's role and claims (SET LOCAL ROLE +
 * request.jwt.claims), exactly as PostgREST does, until the transaction ends or the next switch.
 * Returns the query unawaited, so callers may pipeline it with the statements that follow.
 */
export function becomeCaller(tx: Tx, claims: Claims) {
  if (!(API_ROLES as readonly string[]).includes(claims.role)) {
    throw new Error(`refusing to run SQL as unknown role ${JSON.stringify(claims.role)}`);
  }
  return tx`select set_config('role', ${claims.role}, true), set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
}

/**
 * Runs `fn` in one transaction as the caller, so every policy applies as it would through
 * PostgREST. A refusal by the database comes out as the HTTP error PostgREST would answer.
 */
export async function asCaller<T>(sql: CallerSql, claims: Claims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return (await sql.begin(async (tx) => {
      await becomeCaller(tx, claims);
      return fn(tx);
    })) as T;
  } catch (err) {
    throw fromDatabase(err, claims);
  }
}

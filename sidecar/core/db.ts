// The database connection, and the one helper that runs SQL as the caller so that RLS decides.
import postgres from 'postgres';
import { fromDatabase } from './errors.js';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

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

export function connect(url: string, max = 10): Sql {
  return postgres(url, {
    max,
    onnotice: () => {},
    connection: { application_name: 'plinth' },
  });
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
export async function asCaller<T>(sql: Sql, claims: Claims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return (await sql.begin(async (tx) => {
      await becomeCaller(tx, claims);
      return fn(tx);
    })) as T;
  } catch (err) {
    throw fromDatabase(err, claims);
  }
}

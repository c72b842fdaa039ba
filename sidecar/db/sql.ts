// The database connection, and the one helper that runs SQL as the caller so that RLS decides.
import postgres from 'postgres';

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
 * Runs `fn` in one transaction under the caller's role and claims (SET LOCAL ROLE +
 * request.jwt.claims), exactly as PostgREST does, so every policy applies as it would there.
 */
export async function asCaller<T>(sql: Sql, claims: Claims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  if (!(API_ROLES as readonly string[]).includes(claims.role)) {
    throw new Error(`refusing to run SQL as unknown role ${JSON.stringify(claims.role)}`);
  }
  return sql.begin(async (tx) => {
    await tx`select set_config('role', ${claims.role}, true), set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
    return fn(tx);
  }) as Promise<T>;
}

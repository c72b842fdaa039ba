// The database connections, and the one helper that runs SQL as the caller so that RLS decides.
// Two pools: the owner's, for the sidecar's own bookkeeping, and the caller pool, logged in as
// plinth_caller, the only one SQL runs on as a caller: it holds no rights of its own, so a
// statement that escapes the caller's role (RESET ROLE) finds nothing there.
import postgres from 'postgres';
import { fromDatabase } from './errors.js';

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;
/**
 * A pool logged in as plinth_caller: what asCaller needs, so the types keep the owner pool out of
 * it. It carries the statement timeout of anon and authenticated callers ('' for none).
 */
export type CallerSql = Sql & { readonly __loggedInAs: 'plinth_caller'; readonly statementTimeout: string };

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
    // During an outage requests wait on reconnection, so both are kept short: a connection attempt
    // gives up after 5 s, and retries come 0.1 s to 1 s apart (jittered) instead of backing off to 20 s.
    connect_timeout: 5,
    backoff: (attempts: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** attempts, 1),
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
export async function connectCaller(owner: Sql, ownerUrl: string, max: number, statementTimeoutMs = 0): Promise<CallerSql> {
  const password = await callerPassword(owner);
  // Base64url: nothing to escape in the literal (ALTER ROLE takes no bind parameters).
  await owner.unsafe(`alter role ${CALLER_LOGIN} with login password '${password}'`);
  const sql = connect(callerUrl(ownerUrl, password), max, 'plinth caller');
  return Object.assign(sql, { statementTimeout: statementTimeoutMs > 0 ? `${statementTimeoutMs}ms` : '' }) as CallerSql;
}

/** The roles whose statements are bounded by PLINTH_STATEMENT_TIMEOUT (service_role is the operator's). */
const TIMED_ROLES = ['anon', 'authenticated'] as const;

/**
 * Gives anon and authenticated their statement timeout as role settings, which PostgREST applies
 * to each request it impersonates them for (it reads them when it loads its configuration); 0
 * removes it. SET ROLE alone does not apply role settings, so asCaller sets the same value itself.
 */
export async function setStatementTimeout(owner: Sql, ms: number): Promise<void> {
  for (const role of TIMED_ROLES) {
    await owner.unsafe(ms > 0 ? `alter role ${role} set statement_timeout = '${Math.floor(ms)}ms'` : `alter role ${role} reset statement_timeout`);
  }
}

/**
 * Switches an open transaction to the caller's role and claims (SET LOCAL ROLE +
 * request.jwt.claims), exactly as PostgREST does, until the transaction ends or the next switch;
 * for anon and authenticated, also the statement timeout PostgREST would apply.
 * Returns the query unawaited, so callers may pipeline it with the statements that follow.
 */
export function becomeCaller(tx: Tx, claims: Claims, statementTimeout = '') {
  if (!(API_ROLES as readonly string[]).includes(claims.role)) {
    throw new Error(`refusing to run SQL as unknown role ${JSON.stringify(claims.role)}`);
  }
  const json = JSON.stringify(claims);
  const timeout =
    statementTimeout !== '' && (TIMED_ROLES as readonly string[]).includes(claims.role) ? tx`, set_config('statement_timeout', ${statementTimeout}, true)` : tx``;
  // The subject and role also go where auth.uid() and auth.role() read them without parsing the
  // claims for every row, beside the claims text they came from (as auth.pre_request() does for
  // PostgREST).
  return tx`select set_config('role', ${claims.role}, true), set_config('request.jwt.claims', ${json}, true), set_config('request.jwt.claim.sub', ${claims.sub ?? ''}, true), set_config('request.jwt.claim.role', ${claims.role}, true), set_config('plinth.split_claims', ${json}, true)${timeout}`;
}

/**
 * Runs `fn` in one transaction as the caller, so every policy applies as it would through
 * PostgREST. A refusal by the database comes out as the HTTP error PostgREST would answer.
 */
export async function asCaller<T>(sql: CallerSql, claims: Claims, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return (await sql.begin(async (tx) => {
      // Not awaited: the switch and fn's first statement travel together (one round trip less).
      // The connection runs them in order, so fn's statements run as the caller or not at all.
      const switched = becomeCaller(tx, claims, sql.statementTimeout);
      switched.catch(() => {});
      let out: T;
      try {
        out = await fn(tx);
      } catch (err) {
        // If the switch failed, that is the error to report, not the aborted statement after it.
        await switched;
        throw err;
      }
      await switched;
      return out;
    })) as T;
  } catch (err) {
    throw fromDatabase(err, claims);
  }
}

/**
 * asCaller for a transaction whose statements are all known up front: BEGIN, the switch to the
 * caller, the statements and COMMIT leave together and come back in one round trip (asCaller
 * takes one for BEGIN, one per awaited statement, one for COMMIT). If any statement fails, the
 * transaction is aborted, so the COMMIT behind it only rolls back; that first error is thrown.
 * `statements` must create its queries synchronously: nothing may be sent after the COMMIT.
 */
export async function asCallerAtOnce(sql: CallerSql, claims: Claims, statements: (tx: Sql) => postgres.PendingQuery<postgres.Row[]>[]): Promise<postgres.RowList<postgres.Row[]>[]> {
  let tx: postgres.ReservedSql;
  try {
    tx = await sql.reserve();
  } catch (err) {
    throw fromDatabase(err, claims);
  }
  try {
    // Queries go out in the order they are executed; each has its own Sync, so one that fails
    // leaves the protocol in step and the ones after it fail as "transaction aborted".
    // All are created before any is sent: a throw here leaves no transaction open on the connection.
    const queries = [tx`begin`, becomeCaller(tx as unknown as Tx, claims, sql.statementTimeout), ...statements(tx), tx`commit`];
    const settled = await Promise.allSettled(queries.map((q) => q.execute()));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.slice(2, -1).map((s) => (s as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value);
  } catch (err) {
    throw fromDatabase(err, claims);
  } finally {
    tx.release();
  }
}

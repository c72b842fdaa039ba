// The admin API's reads and the rollback, run as the caller: functions.assert_admin() in SQL
// decides who may (the service key, or an admin), so a refusal comes back as 401/403 from there.
import { asCaller, type CallerSql, type Claims } from '../core/db.js';

export function listFunctions(sql: CallerSql, claims: Claims): Promise<unknown> {
  return asCaller(sql, claims, async (tx) => (await tx<{ r: unknown }[]>`select functions.admin_list() as r`)[0].r);
}

export function listVersions(sql: CallerSql, claims: Claims, name: string): Promise<unknown> {
  return asCaller(sql, claims, async (tx) => (await tx<{ r: unknown }[]>`select functions.admin_versions(${name}) as r`)[0].r);
}

export function listInvocations(sql: CallerSql, claims: Claims, name: string, limit: number): Promise<unknown> {
  return asCaller(sql, claims, async (tx) => (await tx<{ r: unknown }[]>`select functions.admin_invocations(${name}, ${limit}) as r`)[0].r);
}

export function rollback(sql: CallerSql, claims: Claims, name: string, version: number): Promise<void> {
  return asCaller(sql, claims, async (tx) => {
    await tx`select functions.admin_rollback(${name}, ${version})`;
  });
}

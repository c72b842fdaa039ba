// Which changes a group of subscribers (same role and claims) may receive: decided by PostgreSQL,
// in one transaction as those subscribers (asCaller), one query per kind of change per batch.
//
// INSERT / UPDATE: the row is read back from the table itself, by primary key, under the
//   subscriber's role and claims, so the table's RLS and grants apply exactly as they would to a
//   SELECT through PostgREST; the subscriber's filter is evaluated in the same query. What is sent
//   is the row as that SELECT returns it now. A row that an UPDATE made invisible is simply not
//   returned, so nothing about it leaks; one that became visible is returned and delivered.
// DELETE: the row is gone, and RLS applies to tables, not to values, so it cannot be asked. The
//   old row image (kept in the change log) is instead tested against the table's SELECT policies
//   for that role (realtime.visibility_predicate: the policy expressions themselves, combined as
//   PostgreSQL combines them), evaluated by PostgreSQL as the subscriber over
//   jsonb_populate_record(null::<table>, old_row). Only the primary key is ever sent.
import { asCaller, type Claims, type Sql } from '../db/sql.js';
import { compileFilter, quoteIdent, type Condition } from './filter.js';
import type { PublishedTable, Tables } from './tables.js';

export interface Change {
  position: number;
  relid: number;
  event: 'INSERT' | 'UPDATE' | 'DELETE';
  key: Record<string, unknown>;
  oldKey: Record<string, unknown> | null;
  oldRow: Record<string, unknown> | null;
}

export interface Verdict {
  /** INSERT/UPDATE: the row as the subscriber may read it; DELETE: {} when it could see the old row. */
  row: Record<string, unknown> | null;
  /** One entry per filter passed in: did the row match it. */
  matches: boolean[];
}

/**
 * For each change (same table), the verdict for subscribers with these claims and these filters.
 * A change missing from the result is visible to none of them.
 */
export async function judge(
  sql: Sql,
  tables: Tables,
  table: PublishedTable,
  claims: Claims,
  changes: Change[],
  filters: Condition[][],
): Promise<Map<number, Verdict>> {
  const verdicts = new Map<number, Verdict>();
  const upserts = changes.filter((c) => c.event !== 'DELETE');
  const deletes = changes.filter((c) => c.event === 'DELETE');
  const predicate = deletes.length > 0 ? await tables.predicate(table, claims.role) : null;

  await asCaller(sql, claims, async (tx) => {
    if (upserts.length > 0) {
      const params: unknown[] = [];
      const param = (v: unknown) => `$${params.push(v)}`;
      const keys = param(JSON.stringify(upserts.map((c) => ({ ...c.key, _plinth_position: c.position }))));
      const keyDecl = table.keyColumns.map((k) => `${quoteIdent(k)} ${table.columns.get(k)}`).join(', ');
      const keyJoin = table.keyColumns.map((k) => `${table.alias}.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' and ');
      const matchCols = filters.map((f, i) => `, ${compileFilter(f, table.alias, table.columns, param)} as m${i}`).join('');
      const rows = await tx.unsafe(
        `select k._plinth_position as position, to_jsonb(${table.alias}) as row${matchCols}
         from jsonb_to_recordset(${keys}::text::jsonb) as k(_plinth_position int8, ${keyDecl})
         join ${table.qualified} as ${table.alias} on ${keyJoin}`,
        params as never[],
      );
      for (const r of rows) {
        verdicts.set(Number(r.position), { row: r.row, matches: filters.map((_, i) => r[`m${i}`] === true) });
      }
    }
    if (deletes.length > 0 && predicate !== null) {
      const params: unknown[] = [];
      const param = (v: unknown) => `$${params.push(v)}`;
      const images = param(JSON.stringify(deletes.map((c) => c.oldRow)));
      const positions = param(JSON.stringify(deletes.map((c) => c.position)));
      const matchCols = filters.map((f, i) => `, ${compileFilter(f, table.alias, table.columns, param)} as m${i}`).join('');
      const rows = await tx.unsafe(
        `select p._plinth_position as position${matchCols}
         from jsonb_array_elements(${images}::text::jsonb) with ordinality as e(_plinth_image, _plinth_n)
         join jsonb_array_elements_text(${positions}::text::jsonb) with ordinality as p(_plinth_position, _plinth_n) using (_plinth_n)
         cross join lateral jsonb_populate_record(null::${table.qualified}, e._plinth_image) as ${table.alias}
         where ${predicate}`,
        params as never[],
      );
      for (const r of rows) {
        verdicts.set(Number(r.position), { row: {}, matches: filters.map((_, i) => r[`m${i}`] === true) });
      }
    }
  });
  return verdicts;
}

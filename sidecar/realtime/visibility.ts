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
import { asCaller, becomeCaller, type CallerSql, type Claims } from '../core/db.js';
import { compileFilter, quoteIdent, type Condition } from './filter.js';
import type { PublishedTable, Tables } from './tables.js';

export interface Change {
  position: number;
  relid: number;
  event: 'INSERT' | 'UPDATE' | 'DELETE';
  key: Record<string, unknown>;
  oldKey: Record<string, unknown> | null;
  oldRow: Record<string, unknown> | null;
  /** When the change was numbered, just after its commit (epoch ms): delivery lag and commit_timestamp. */
  at: number;
}

export interface Verdict {
  /** INSERT/UPDATE: the row as the subscriber may read it; DELETE: {} when it could see the old row. */
  row: Record<string, unknown> | null;
  /** One entry per filter passed in: did the row match it. */
  matches: boolean[];
}

/** Subscribers that share claims: one set of verdicts for all of them. */
export interface Group {
  claims: Claims;
  filters: Condition[][];
}

interface Query {
  text: string;
  params: unknown[];
  kind: 'upsert' | 'delete';
  /**
   * Run as a named prepared statement: every group of a batch (and every later batch) runs the
   * same text, so PostgreSQL parses it once per connection. It re-applies RLS whenever the role
   * differs from the one the statement was last rewritten and planned for. Only without filters:
   * their shapes are the clients' choice, and each would stay prepared on the connection.
   */
  prepare: boolean;
}

/** The (at most two) queries that judge `changes` for one group, to run as that group. */
function queriesFor(table: PublishedTable, changes: Change[], filters: Condition[][], predicate: string | null): Query[] {
  const queries: Query[] = [];
  const upserts = changes.filter((c) => c.event !== 'DELETE');
  const deletes = changes.filter((c) => c.event === 'DELETE');
  if (upserts.length > 0) {
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const keys = param(JSON.stringify(upserts.map((c) => ({ ...c.key, _plinth_position: c.position }))));
    const keyDecl = table.keyColumns.map((k) => `${quoteIdent(k)} ${table.columns.get(k)}`).join(', ');
    const keyJoin = table.keyColumns.map((k) => `${table.alias}.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' and ');
    const matchCols = filters.map((f, i) => `, ${compileFilter(f, table.alias, table.columns, param)} as m${i}`).join('');
    queries.push({
      kind: 'upsert',
      prepare: filters.length === 0,
      params,
      text: `select k._plinth_position as position, to_jsonb(${table.alias}) as row${matchCols}
         from jsonb_to_recordset(${keys}::text::jsonb) as k(_plinth_position int8, ${keyDecl})
         join ${table.qualified} as ${table.alias} on ${keyJoin}`,
    });
  }
  if (deletes.length > 0 && predicate !== null) {
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    const images = param(JSON.stringify(deletes.map((c) => c.oldRow)));
    const positions = param(JSON.stringify(deletes.map((c) => c.position)));
    const matchCols = filters.map((f, i) => `, ${compileFilter(f, table.alias, table.columns, param)} as m${i}`).join('');
    queries.push({
      kind: 'delete',
      prepare: filters.length === 0,
      params,
      text: `select p._plinth_position as position${matchCols}
         from jsonb_array_elements(${images}::text::jsonb) with ordinality as e(_plinth_image, _plinth_n)
         join jsonb_array_elements_text(${positions}::text::jsonb) with ordinality as p(_plinth_position, _plinth_n) using (_plinth_n)
         cross join lateral jsonb_populate_record(null::${table.qualified}, e._plinth_image) as ${table.alias}
         where ${predicate}`,
    });
  }
  return queries;
}

function collect(results: Array<{ query: Query; rows: Record<string, unknown>[] }>, filters: Condition[][]): Map<number, Verdict> {
  const verdicts = new Map<number, Verdict>();
  for (const { query, rows } of results) {
    for (const r of rows) {
      const row = query.kind === 'upsert' ? (r.row as Record<string, unknown>) : {};
      verdicts.set(Number(r.position), { row, matches: filters.map((_, i) => r[`m${i}`] === true) });
    }
  }
  return verdicts;
}

/**
 * For each change (same table), the verdict for subscribers with these claims and these filters,
 * run through asCaller. A change missing from the result is visible to none of them.
 */
export async function judge(sql: CallerSql, tables: Tables, table: PublishedTable, group: Group, changes: Change[]): Promise<Map<number, Verdict>> {
  const hasDeletes = changes.some((c) => c.event === 'DELETE');
  const predicate = hasDeletes ? await tables.predicate(table, group.claims.role) : null;
  const queries = queriesFor(table, changes, group.filters, predicate);
  if (queries.length === 0) return new Map();
  return asCaller(sql, group.claims, async (tx) => {
    const results = [];
    for (const query of queries) results.push({ query, rows: await tx.unsafe(query.text, query.params as never[], { prepare: query.prepare }) });
    return collect(results, group.filters);
  });
}

/**
 * The same for many groups in ONE transaction and one network round trip: for each group in turn,
 * the transaction switches to that group's role and claims (set_config(..., true), exactly what
 * asCaller does) and runs its queries; PostgreSQL executes the pipelined statements in order, so
 * each query sees only its own group's role and claims. If anything fails, each group is judged
 * again on its own, so one bad group cannot hide the others' changes.
 */
export async function judgeGroups(sql: CallerSql, tables: Tables, table: PublishedTable, groups: Group[], changes: Change[]): Promise<Array<Map<number, Verdict> | Error>> {
  const hasDeletes = changes.some((c) => c.event === 'DELETE');
  const plans: Array<{ group: Group; queries: Query[] }> = [];
  for (const group of groups) {
    const predicate = hasDeletes ? await tables.predicate(table, group.claims.role) : null;
    plans.push({ group, queries: queriesFor(table, changes, group.filters, predicate) });
  }
  try {
    return await sql.begin(async (tx) => {
      const pending: Array<Promise<unknown>> = [];
      const perGroup = plans.map(({ group, queries }) => {
        pending.push(becomeCaller(tx, group.claims));
        return queries.map((query) => {
          const rows = tx.unsafe(query.text, query.params as never[], { prepare: query.prepare }) as unknown as Promise<Record<string, unknown>[]>;
          pending.push(rows);
          return { query, rows };
        });
      });
      await Promise.all(pending);
      const out: Array<Map<number, Verdict>> = [];
      for (let i = 0; i < plans.length; i++) {
        const results = [];
        for (const { query, rows } of perGroup[i]) results.push({ query, rows: await rows });
        out.push(collect(results, plans[i].group.filters));
      }
      return out;
    });
  } catch {
    return Promise.all(groups.map((g) => judge(sql, tables, table, g, changes).catch((err: Error) => err)));
  }
}

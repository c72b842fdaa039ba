// What the sidecar knows about published tables, read from the catalog: key columns, column
// types, and whether a role may read the table. Cached briefly; a migration that changes a
// published table is picked up within CACHE_MS.
import type { Claims, Sql } from '../core/db.js';
import { FilterError, parseFilter, quoteIdent, type Condition } from './filter.js';

const CACHE_MS = 10_000;

export interface PublishedTable {
  relid: number;
  schema: string;
  name: string;
  /** schema.table, quoted, for SQL. */
  qualified: string;
  /** The alias rows are read under: the table's own name, so policy text may qualify columns with it. */
  alias: string;
  keyColumns: string[];
  /** column name → SQL type (format_type, without modifiers). */
  columns: Map<string, string>;
  /** Every column in table order with its type's name (`int8`, `text`, `_uuid`), as Supabase clients expect them. */
  columnList: { name: string; type: string }[];
}

export class SubscribeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint: string | null = null,
  ) {
    super(message);
  }
}

interface Cached<T> {
  value: T;
  at: number;
}

export class Tables {
  private byName = new Map<string, Cached<PublishedTable | null>>();
  private predicates = new Map<string, Cached<string | null>>();

  constructor(private readonly sql: Sql) {}

  /** A published table by name (`todos` or `schema.todos`), or a SubscribeError saying why not. */
  async find(name: string): Promise<PublishedTable> {
    const dot = name.indexOf('.');
    const schema = dot === -1 ? 'public' : name.slice(0, dot);
    const table = dot === -1 ? name : name.slice(dot + 1);
    const cacheKey = `${schema}\u0000${table}`;
    let hit = this.byName.get(cacheKey);
    if (!hit || Date.now() - hit.at > CACHE_MS) {
      hit = { value: await this.load(schema, table), at: Date.now() };
      this.byName.set(cacheKey, hit);
    }
    if (!hit.value) {
      throw new SubscribeError('42P01', `table "${name}" is not published for realtime`, 'Publish it in a migration with SELECT realtime.publish(\'<table>\'), or check the name.');
    }
    return hit.value;
  }

  private async load(schema: string, table: string): Promise<PublishedTable | null> {
    const rows = await this.sql<{ relid: number; key_columns: string[]; columns: Record<string, string>; column_list: { name: string; type: string }[] }[]>`
      select p.relid::int8 as relid, p.key_columns,
             (select jsonb_object_agg(a.attname, format_type(a.atttypid, null))
                from pg_attribute a where a.attrelid = p.relid and a.attnum > 0 and not a.attisdropped) as columns,
             (select jsonb_agg(jsonb_build_object('name', a.attname, 'type', t.typname) order by a.attnum)
                from pg_attribute a join pg_type t on t.oid = a.atttypid
                where a.attrelid = p.relid and a.attnum > 0 and not a.attisdropped) as column_list
      from realtime.publications p
      join pg_class c on c.oid = p.relid
      join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${schema} and c.relname = ${table}`;
    if (rows.length === 0) return null;
    const r = rows[0];
    return {
      relid: Number(r.relid),
      schema,
      name: table,
      qualified: `${quoteIdent(schema)}.${quoteIdent(table)}`,
      alias: quoteIdent(table),
      keyColumns: r.key_columns,
      columns: new Map(Object.entries(r.columns)),
      columnList: r.column_list,
    };
  }

  /** The subscriber's role may SELECT the table (the grant; rows are RLS's business). */
  async assertReadable(table: PublishedTable, claims: Claims): Promise<void> {
    if ((await this.predicate(table, claims.role)) === null) {
      throw new SubscribeError('42501', `permission denied for table ${table.name}`, `The ${claims.role} role has no SELECT grant on it.`);
    }
  }

  /**
   * realtime.visibility_predicate (see the migration): the table's SELECT policies for `role` as
   * SQL text over its columns, or null without the SELECT grant. Used only for DELETE, whose row
   * is gone from the table by the time it is delivered.
   */
  async predicate(table: PublishedTable, role: string): Promise<string | null> {
    const key = `${table.relid}\u0000${role}`;
    let hit = this.predicates.get(key);
    if (!hit || Date.now() - hit.at > CACHE_MS) {
      const [row] = await this.sql<{ predicate: string | null }[]>`select realtime.visibility_predicate(${table.relid}::oid, ${role}) as predicate`;
      hit = { value: row?.predicate ?? null, at: Date.now() };
      this.predicates.set(key, hit);
    }
    return hit.value;
  }

  /** Parses and checks a filter: known columns the role may read, values of the column's type. */
  async checkFilter(table: PublishedTable, text: string, claims: Claims): Promise<Condition[]> {
    let conditions: Condition[];
    try {
      conditions = parseFilter(text);
    } catch (err) {
      if (err instanceof FilterError) throw new SubscribeError(err.code, `invalid filter: ${err.message}`);
      throw err;
    }
    for (const c of conditions) {
      const type = table.columns.get(c.column);
      if (!type) throw new SubscribeError('42703', `column "${c.column}" of table "${table.name}" does not exist`, 'Filter on one of its columns.');
      if (c.op === 'is') {
        if (c.values[0] !== 'null' && type !== 'boolean') throw new SubscribeError('22P02', `"is.${c.values[0]}" needs a boolean column; "${c.column}" is ${type}`);
        continue;
      }
      for (const v of c.values) {
        const [{ ok }] = await this.sql<{ ok: boolean }[]>`select pg_input_is_valid(${v}, ${type}) as ok`;
        if (!ok) throw new SubscribeError('22P02', `invalid input for column "${c.column}" of type ${type}: ${JSON.stringify(v)}`);
      }
    }
    const columns = conditions.map((c) => c.column);
    const [{ ok }] = await this.sql<{ ok: boolean }[]>`
      select coalesce(bool_and(has_column_privilege(${claims.role}, ${table.relid}::oid, col, 'SELECT')), true) as ok
      from unnest(${columns}::text[]) as col`;
    if (!ok) throw new SubscribeError('42501', `permission denied for a column in the filter on table ${table.name}`);
    return conditions;
  }
}

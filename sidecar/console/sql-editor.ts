// The console's SQL editor: one statement, run as a chosen role (anon, a chosen user as
// authenticated, the service role) on a dedicated connection, in a transaction that is rolled back
// unless the admin confirmed a write, with a time limit and a cap on the rows fetched. Whether the
// caller may use it at all is decided in SQL (console.sql_editor_claims refuses non-admins).
import { becomeCaller, type Claims, type Tx } from '../core/db.js';
import { fromDatabase, PlinthError } from '../core/errors.js';
import type { Plinth } from '../core/context.js';

export interface SqlRequest {
  statement: string;
  role: 'anon' | 'authenticated' | 'service_role';
  user_id?: string;
  commit: boolean;
  timeout_ms: number;
  max_rows: number;
}

export interface SqlResult {
  role: string;
  user_id: string | null;
  command: string | null;
  row_count: number | null;
  columns: Array<{ name: string; type: number }>;
  rows: unknown[][];
  truncated: boolean;
  committed: boolean;
}

interface Batch extends Array<Record<string, unknown>> {
  command?: string;
  count?: number | null;
  columns?: Array<{ name: string; type: number }>;
}

/** Runs the statement; a database error comes back as PostgREST's error JSON (a statement error is a 400). */
export async function runStatement(plinth: Plinth, admin: Claims, req: SqlRequest): Promise<SqlResult> {
  const conn = await plinth.callerSql.reserve();
  try {
    await conn`begin`;
    const tx = conn as unknown as Tx;
    await becomeCaller(tx, admin);
    // The admin check and the claims of the chosen role, both from SQL.
    const [{ claims: chosen }] = await conn<{ claims: Claims }[]>`select console.sql_editor_claims(${req.role}, ${req.user_id ?? null}) as claims`;
    await becomeCaller(tx, chosen);
    await conn`select set_config('statement_timeout', ${`${req.timeout_ms}ms`}, true)`;
    // Extended protocol (simple: false): one statement only, so nothing can end the transaction
    // and then run outside it. The cursor fetches at most max_rows + 1 rows, to know there were more.
    let first: Batch | null = null;
    const query = conn.unsafe(req.statement, [], { simple: false, prepare: false } as never);
    const done = (await query.cursor(req.max_rows + 1, (batch: Batch) => {
      first ??= batch;
      return plinth.callerSql.CLOSE;
    })) as unknown as Batch;
    first ??= done;
    const rows = [...first];
    const truncated = rows.length > req.max_rows;
    if (truncated) rows.length = req.max_rows;
    const columns = (first.columns ?? done.columns ?? []).map((c) => ({ name: c.name, type: c.type }));
    const result: SqlResult = {
      role: chosen.role,
      user_id: chosen.sub ?? null,
      command: done.command ?? first.command ?? null,
      row_count: truncated ? null : (done.count ?? first.count ?? rows.length),
      columns,
      rows: rows.map((r) => columns.map((c) => r[c.name])),
      truncated,
      committed: req.commit,
    };
    await conn.unsafe(req.commit ? 'commit' : 'rollback');
    return result;
  } catch (err) {
    await conn.unsafe('rollback').catch(() => {});
    // Mapped as the admin's error: a refusal of anon is still the signed-in admin's 403, not a 401.
    throw statementError(err, admin, req.timeout_ms);
  } finally {
    // A committed statement may have changed the session itself (a plain SET, LISTEN, a temporary
    // table, an advisory lock): the connection goes back to the caller pool only without them.
    await conn
      .unsafe('reset all')
      .then(() => conn.unsafe('unlisten *'))
      .then(() => conn.unsafe('select pg_advisory_unlock_all()'))
      .then(() => conn.unsafe('discard temp'))
      .catch(() => {});
    conn.release();
  }
}

/** The one error map first; what it leaves (a syntax error, an unknown table) is the statement's fault: 400. */
function statementError(err: unknown, claims: Claims, timeoutMs: number): unknown {
  const e = err as { code?: string; message?: string; detail?: string; hint?: string };
  if (e?.code === '57014') return new PlinthError(400, e.message ?? 'canceling statement due to statement timeout', e.code, null, `The statement ran longer than the editor's limit of ${timeoutMs} ms`);
  const mapped = fromDatabase(err, claims);
  if (mapped instanceof PlinthError) return mapped;
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.message === 'string') {
    return new PlinthError(400, e.message, e.code, e.detail ?? null, e.hint ?? null);
  }
  return mapped;
}

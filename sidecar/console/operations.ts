// What the console's Backups and Functions pages read beyond the functions admin API. Each call
// runs as the caller (asCaller); the console.* SQL functions decide whether an admin is asking.
import { asCaller, type Claims } from '../core/db.js';
import type { Plinth } from '../core/context.js';

export interface BackupRun {
  started_at: Date;
  finished_at: Date | null;
  kind: 'scheduled' | 'manual';
  status: 'running' | 'ok' | 'failed';
  bytes: number | null;
  duration_ms: number | null;
  location: string | null;
  error: string | null;
}

export async function backupRuns(plinth: Plinth, claims: Claims, limit: number): Promise<BackupRun[]> {
  const rows = await asCaller(plinth.callerSql, claims, (tx) => tx<Array<Omit<BackupRun, 'bytes'> & { bytes: string | null }>>`select * from console.backup_runs(${limit})`);
  // bigint arrives as text; archive sizes fit a double.
  return rows.map((r) => ({ ...r, bytes: r.bytes === null ? null : Number(r.bytes) }));
}

/** This sidecar's functions whose module does not load, each with its one-line reason. */
export type FunctionLoadFailures = () => ReadonlyMap<string, string>;

export async function functionLoadFailures(plinth: Plinth, claims: Claims, failures: FunctionLoadFailures): Promise<Array<{ name: string; error: string }>> {
  await asCaller(plinth.callerSql, claims, (tx) => tx`select console.require_admin('The functions page')`);
  return [...failures()].map(([name, error]) => ({ name, error })).sort((a, b) => a.name.localeCompare(b.name));
}

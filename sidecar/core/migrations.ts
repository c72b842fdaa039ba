// Migrations with dbmate: Plinth's own (sql/migrations) then the app's (PLINTH_APP_MIGRATIONS).
// dbmate reads only flags and env, so the settings in dbmate.toml are passed on as flags here.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { Sql } from './db.js';
import { REPO_ROOT } from './paths.js';

export class MigrationError extends Error {}

function dbmateBinary(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('@dbmate/linux-x64/package.json')), 'bin', 'dbmate');
}

interface DbmateSettings {
  migrations_dir: string;
  migrations_table: string;
  schema_file: string;
  no_dump_schema: boolean;
}

function readSettings(): DbmateSettings {
  const toml = parseToml(fs.readFileSync(path.join(REPO_ROOT, 'dbmate.toml'), 'utf8')) as unknown as { dbmate: DbmateSettings };
  return toml.dbmate;
}

/** The flags for dbmate: Plinth's migrations dir, the app's if it exists, the table, the schema file. */
export function dbmateFlags(appDir: string | null): string[] {
  const s = readSettings();
  const flags = ['--migrations-dir', path.resolve(REPO_ROOT, s.migrations_dir)];
  if (appDir && fs.existsSync(appDir)) flags.push('--migrations-dir', appDir);
  flags.push('--migrations-table', s.migrations_table, '--schema-file', path.resolve(REPO_ROOT, s.schema_file));
  // `dbmate dump` needs a pg_dump matching the server; Debian's is older and refuses it.
  if (s.no_dump_schema) flags.push('--no-dump-schema');
  return flags;
}

/** dbmate needs sslmode spelled out; embedded Postgres has no TLS. */
export function dbmateUrl(databaseUrl: string): string {
  const u = new URL(databaseUrl);
  if (!u.searchParams.has('sslmode') && ['127.0.0.1', 'localhost', '::1'].includes(u.hostname)) u.searchParams.set('sslmode', 'disable');
  return u.toString();
}

export interface DbmateResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runDbmate(databaseUrl: string, appDir: string | null, args: string[], inherit = false): Promise<DbmateResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(dbmateBinary(), ['--url', dbmateUrl(databaseUrl), ...dbmateFlags(appDir), ...args], {
      // Keep a developer's .env (read by dbmate by default) from changing what Plinth migrates.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: inherit ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * Applies every pending migration. Each runs in its own transaction, so a failing one leaves
 * the database as it was before that file; the error names the file and the statement.
 */
export async function migrateUp(databaseUrl: string, appDir: string | null): Promise<string[]> {
  const r = await runDbmate(databaseUrl, appDir, ['migrate']);
  const applied = [...r.stdout.matchAll(/^Applying: (.+)$/gm)].map((m) => m[1].trim());
  if (r.code !== 0) throw new MigrationError(describeFailure(r, applied, appDir));
  return applied.map((f) => path.basename(f));
}

/**
 * migrateUp under a database-wide advisory lock, so sidecars starting together on one database
 * apply each migration once (the others wait, then find nothing pending).
 */
export async function migrateUpLocked(sql: Sql, databaseUrl: string, appDir: string | null): Promise<string[]> {
  const conn = await sql.reserve();
  try {
    await conn`select pg_advisory_lock(hashtext('plinth.migrations'))`;
    return await migrateUp(databaseUrl, appDir);
  } finally {
    await conn`select pg_advisory_unlock(hashtext('plinth.migrations'))`.catch(() => {});
    conn.release();
  }
}

function describeFailure(r: DbmateResult, applying: string[], appDir: string | null): string {
  const file = applying.at(-1);
  const raw = r.stderr.replace(/^Error:\s*/m, '').trim().split('\n').join(' ');
  if (!file) return `migrations failed: ${raw}`;
  // dbmate reports "line: L, column: C, position: P: pq: <message> at position L:C (<sqlstate>)".
  const m = /line: (\d+), column: \d+, position: \d+: pq: (.*?)(?: at position \d+:\d+)? \((\w{5})\)$/.exec(raw);
  if (!m) return `migration ${path.basename(file)} failed: ${raw}`;
  const line = Number(m[1]);
  const source = [path.resolve(REPO_ROOT, readSettings().migrations_dir), appDir]
    .map((dir) => dir && path.join(dir, path.basename(file)))
    .find((candidate) => candidate && fs.existsSync(candidate));
  const statement = source && fs.readFileSync(source, 'utf8').split('\n')[line - 1]?.trim();
  return `migration ${path.basename(file)} failed at line ${line}${statement ? ` (${statement})` : ''}: ${m[2]} [${m[3]}]; nothing of this file was applied`;
}

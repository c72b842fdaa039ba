// `plinth backup` and `plinth restore`: configuration in, one line out.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { Sql } from '../core/db.js';
import { REPO_ROOT } from '../core/paths.js';
import { createBackend } from '../storage/backends/index.js';
import { ArchiveError } from './archive.js';
import { BackupError, backupToFile } from './backup.js';
import { RestoreError, restoreFromFile } from './restore.js';

export const BACKUP_HELP = `Usage: plinth backup [--out FILE] [--no-files]

Writes one tar archive (mode 0600) holding a manifest, every table's rows (taken in one consistent
snapshot; writers are not blocked) and every stored file (from disk or S3, each checked against
the SHA-256 the database recorded). Plinth may be running or stopped.
  --out FILE    where to write (default ./plinth-backup-<UTC time>.tar, .tar.enc when encrypted)
  --no-files    rows only; the files' bytes must then already be in the store a restore uses
The archive holds password hashes and signing keys: set PLINTH_BACKUP_PASSPHRASE to encrypt it.`;

export const RESTORE_HELP = `Usage: plinth restore FILE [--force]

Restores an archive from \`plinth backup\` into this Plinth (DATABASE_URL or the embedded database,
files into the configured store, disk or S3). The target must be empty unless --force is given,
which replaces its users, files and rows. It replays the migrations the backup lists, loads every
row in one transaction and checks every file's SHA-256; on any error nothing is changed.
An encrypted archive needs PLINTH_BACKUP_PASSPHRASE.`;

/** Runs fn with the owner's connection to Plinth's database (the CLI's withDatabase). */
export type WithDatabase = <T>(fn: (sql: Sql) => Promise<T>) => Promise<T>;

export function isBackupError(err: unknown): boolean {
  return err instanceof ArchiveError || err instanceof BackupError || err instanceof RestoreError;
}

export function plinthVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

export function migrationDirs(config: Config) {
  return { plinth: path.join(REPO_ROOT, 'sql', 'migrations'), app: config.migrations.appDir };
}

/** Database errors met mid-way come out as one line, like every other refusal. */
async function oneLine<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isBackupError(err)) throw err;
    const e = err as Error & { code?: string };
    const message = String(e.message ?? err).replace(/\s+/g, ' ').trim();
    throw new (what === 'backup' ? BackupError : RestoreError)(`${what} failed: ${message}${e.code && /^[0-9A-Z]{5}$/.test(e.code) ? ` [${e.code}]` : ''}`);
  }
}

/** An activity row for a backup or restore; its absence (an old schema, a lost connection) never fails either. */
async function recordActivity(sql: Sql, action: string, target: string, details: Record<string, unknown>): Promise<void> {
  try {
    const [{ has }] = await sql<{ has: boolean }[]>`select to_regprocedure('audit.log(text,text,jsonb,uuid)') is not null as has`;
    if (has) await sql`select audit.log(${action}, ${target}, ${sql.json(details as never)}, null)`;
  } catch {
    /* the archive is what matters */
  }
}

export async function backupCommand(config: Config, opts: { out?: string; files: boolean }, withDatabase: WithDatabase): Promise<number> {
  const passphrase = config.backup.passphrase;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const file = path.resolve(opts.out ?? `plinth-backup-${stamp}.tar${passphrase ? '.enc' : ''}`);
  if (fs.existsSync(file)) throw new BackupError(`${file} already exists: choose another --out`);
  const backend = opts.files ? await createBackend(config.storage) : null;
  try {
    const manifest = await oneLine('backup', () =>
      withDatabase(async (sql: Sql) => {
        const written = await backupToFile({ sql, backend, dirs: migrationDirs(config), plinthVersion: plinthVersion() }, file, passphrase);
        await recordActivity(sql, 'backup.done', file, { tables: written.tables.length, files: written.objects.count, bytes: written.objects.bytes, encrypted: Boolean(passphrase) });
        return written;
      }),
    );
    const rows = Object.values(manifest.rowCounts).reduce((a, b) => a + b, 0);
    console.log(
      `backup written to ${file}: ${manifest.tables.length} tables, ${rows} rows, ${manifest.objects.count} files ` +
        `(${(manifest.objects.bytes / 1024 ** 2).toFixed(1)} MiB)${passphrase ? ', encrypted' : ''}`,
    );
    if (!passphrase) console.error('note: the archive is not encrypted and holds password hashes and signing keys; set PLINTH_BACKUP_PASSPHRASE to encrypt it');
    return 0;
  } finally {
    await backend?.close();
  }
}

export async function restoreCommand(config: Config, opts: { file?: string; force: boolean }, withDatabase: WithDatabase): Promise<number> {
  if (!opts.file) throw new RestoreError('plinth restore needs the archive: plinth restore FILE');
  const file = path.resolve(opts.file);
  // Before the database is touched (or the embedded one started).
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (err) {
    throw new RestoreError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
  const backend = await createBackend(config.storage);
  try {
    const summary = await oneLine('restore', () =>
      withDatabase(async (sql: Sql) => {
        const restored = await restoreFromFile({ sql, backend, dirs: migrationDirs(config), plinthVersion: plinthVersion(), force: opts.force }, file, config.backup.passphrase);
        await recordActivity(sql, 'backup.restored', file, { tables: restored.tables, rows: restored.rows, files: restored.objects });
        return restored;
      }),
    );
    console.log(`restored ${file}: ${summary.tables} tables, ${summary.rows} rows, ${summary.objects} files (${(summary.bytes / 1024 ** 2).toFixed(1)} MiB)`);
    return 0;
  } finally {
    await backend.close();
  }
}

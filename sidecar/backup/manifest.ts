// What a backup archive holds, member by member, and how its migrations are found again.
//
//   plinth-backup.json    first: format, versions, migrations, tables (load order), sequences
//   data/<t>.<n>          each table's rows as COPY text, in parts of at most 8 MiB
//   objects/<id>          each stored object's bytes
//   manifest.json         last: the header again plus row counts and the SHA-256 of every member
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ArchiveError } from './archive.js';

export const FORMAT = 1;
export const HEADER_MEMBER = 'plinth-backup.json';
export const MANIFEST_MEMBER = 'manifest.json';

export interface MigrationEntry {
  version: string;
  file: string;
  /** Which folder holds it: Plinth's own sql/migrations, or the app's PLINTH_APP_MIGRATIONS. */
  source: 'plinth' | 'app';
  sha256: string;
}

export interface TableEntry {
  schema: string;
  name: string;
  columns: string[];
}

export interface Header {
  format: number;
  plinthVersion: string;
  serverVersion: string;
  createdAt: string;
  files: boolean;
  migrations: MigrationEntry[];
  /** In load order: a table comes after the tables its foreign keys point to (cycles aside). */
  tables: TableEntry[];
  sequences: { schema: string; name: string; lastValue: string }[];
  /** Tables that stream their changes over realtime: re-published after a restore (oids change). */
  publications: { schema: string; name: string }[];
  /** The stored objects whose bytes follow (none with --no-files): a restore reserves them first. */
  objects?: { id: string; key: string }[];
}

export interface Manifest extends Omit<Header, 'objects'> {
  rowCounts: Record<string, number>;
  objects: { count: number; bytes: number };
  members: Record<string, { size: number; sha256: string }>;
}

export const tableId = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;
export const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;
export const qualified = (t: { schema: string; name: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** dbmate's version of a migration file: the digits its name starts with. */
export function versionOf(file: string): string | null {
  return /^(\d+)_.*\.sql$/.exec(file)?.[1] ?? null;
}

export interface MigrationDirs {
  plinth: string;
  app: string | null;
}

/** Every migration file known here, by version. */
export function migrationFiles(dirs: MigrationDirs): Map<string, { file: string; source: 'plinth' | 'app'; full: string }> {
  const out = new Map<string, { file: string; source: 'plinth' | 'app'; full: string }>();
  for (const [source, dir] of [['plinth', dirs.plinth], ['app', dirs.app]] as const) {
    if (!dir || !fs.existsSync(dir)) continue;
    for (const file of fs.readdirSync(dir).sort()) {
      const version = versionOf(file);
      if (version && !out.has(version)) out.set(version, { file, source, full: path.join(dir, file) });
    }
  }
  return out;
}

/** -1, 0 or 1, comparing dotted numeric versions (pre-release tags ignored). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[-+]/)[0].split('.').map(Number);
  const pb = b.split(/[-+]/)[0].split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d) return Math.sign(d);
  }
  return 0;
}

/** Checks a header read from an archive before anything in the target is touched. */
export function checkHeader(raw: unknown, plinthVersion: string): Header {
  const h = raw as Header;
  if (!h || typeof h !== 'object' || typeof h.format !== 'number' || !Array.isArray(h.migrations) || !Array.isArray(h.tables)) {
    throw new ArchiveError('archive is not a Plinth backup: its header is missing or malformed');
  }
  if (h.format > FORMAT || compareVersions(h.plinthVersion, plinthVersion) > 0) {
    throw new ArchiveError(`backup is from a newer Plinth (${h.plinthVersion}, format ${h.format}); this is Plinth ${plinthVersion}: upgrade Plinth, then restore`);
  }
  return h;
}

/** A dbmate migration file's two sections. */
export function migrationSections(text: string, file: string): { up: string; down: string } {
  const up = /^--\s*migrate:up\b(.*)$/m.exec(text);
  const down = /^--\s*migrate:down\b.*$/m.exec(text);
  if (!up) throw new ArchiveError(`migration ${file} has no "-- migrate:up" section`);
  if (/transaction:false/.test(up[1])) throw new ArchiveError(`migration ${file} runs outside a transaction (transaction:false), which a restore cannot undo`);
  const upEnd = down && down.index > up.index ? down.index : text.length;
  return { up: text.slice(up.index + up[0].length, upEnd), down: down ? text.slice(down.index + down[0].length) : '' };
}

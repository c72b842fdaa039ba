// `plinth backup`: the database's rows and every stored object, in one tar archive.
//
// No pg_dump of PostgreSQL 17 exists here (Debian ships 15, which refuses a 17 server), so rows are
// taken with COPY … TO STDOUT (text format: portable across server versions and architectures),
// table by table inside one REPEATABLE READ READ ONLY transaction: one consistent snapshot, and
// no writer waits for it. The schema is not dumped: it is whatever the recorded migrations make,
// so a restore replays them. Objects are immutable versions under new keys, so the bytes of the
// objects in the snapshot do not change while they are read; each is hashed as it streams and
// checked against the SHA-256 the database recorded.
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Sql, Tx } from '../core/db.js';
import type { StorageBackend } from '../storage/backends/adapter.js';
import { TarWriter } from './archive.js';
import { encryptStream } from './crypto.js';
import {
  FORMAT,
  HEADER_MEMBER,
  MANIFEST_MEMBER,
  migrationFiles,
  qualified,
  quoteIdent,
  sha256File,
  tableId,
  type Header,
  type Manifest,
  type MigrationDirs,
  type TableEntry,
} from './manifest.js';

export class BackupError extends Error {}

/**
 * Rows that are not the app's state, or that a restore rebuilds: migration bookkeeping (the replay
 * writes it), the scheduled backups' own log, the realtime change log and its positions (transient, and keyed by table oids that
 * differ in the target), realtime publications (re-published by name), the deletion queue, and
 * the installation's internal credentials (PostgREST's HS256 secret, plinth_caller's password),
 * which running sidecars of the target already use, and grants derived from `_policies` rows.
 */
export const SKIPPED_TABLES = new Set([
  'plinth.schema_migrations',
  'plinth.backup_runs',
  'realtime.changes',
  'realtime.state',
  'realtime.publications',
  // Who is connected to which running sidecar now: the target's own sidecars keep theirs.
  'realtime.sidecars',
  'realtime.presences',
  'storage.deletions',
  // Signed URLs are short-lived grants tied to blob versions; a restore starts without any.
  'storage.signed_urls',
  'auth.postgrest_secret',
  'auth.secrets',
  // Derived from public._policies by its triggers: rebuilt when the restore re-applies those rows.
  'fine_private.granted',
  // The audit trail is the installation's own history, not the app's state: a restore keeps the target's.
  'audit.requests',
  'audit.activity',
]);
/** Objects still being written, or queued for deletion, have no bytes to keep. */
const LIVE_OBJECTS = `state = 'ready' and id not in (select object_id from storage.deletions)`;
const PART_BYTES = 8 * 1024 * 1024;

export interface BackupSource {
  sql: Sql;
  /** The configured store; null leaves the objects' bytes out (--no-files). */
  backend: StorageBackend | null;
  dirs: MigrationDirs;
  plinthVersion: string;
}

/** The ordinary tables of every non-system schema, parents before children of each foreign key. */
export async function listTables(tx: Tx | Sql): Promise<TableEntry[]> {
  const rows = await tx<{ schema: string; name: string; oid: string; columns: string[] }[]>`
    select n.nspname as schema, c.relname as name, c.oid::int8::text as oid,
      array(select a.attname::text from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
            order by a.attnum) as columns
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relkind = 'r' and c.relpersistence <> 't'
      and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
      and not exists (select from pg_catalog.pg_depend d where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
    order by n.nspname, c.relname`;
  const fks = await tx<{ child: string; parent: string }[]>`
    select conrelid::int8::text as child, confrelid::int8::text as parent from pg_catalog.pg_constraint where contype = 'f'`;
  const parents = new Map<string, string[]>();
  for (const fk of fks) if (fk.child !== fk.parent) parents.set(fk.child, [...(parents.get(fk.child) ?? []), fk.parent]);
  const byOid = new Map(rows.map((r) => [r.oid, r]));
  const ordered: TableEntry[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (oid: string) => {
    if (state.has(oid)) return; // done, or a cycle: left to the explicit foreign key check
    state.set(oid, 'visiting');
    for (const p of parents.get(oid) ?? []) if (byOid.has(p)) visit(p);
    state.set(oid, 'done');
    const r = byOid.get(oid)!;
    ordered.push({ schema: r.schema, name: r.name, columns: r.columns });
  };
  for (const r of rows) visit(r.oid);
  return ordered.filter((t) => !SKIPPED_TABLES.has(tableId(t)));
}

function countRows(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  return n;
}

/** Writes the archive (plain tar) to `out`; returns the manifest also written as its last member. */
export async function writeBackup(src: BackupSource, out: Writable): Promise<Manifest> {
  const tar = new TarWriter(out);
  const members: Manifest['members'] = {};
  const add = async (name: string, size: number, body: AsyncIterable<Buffer> | Buffer, mismatch?: (n: number) => Error) => {
    members[name] = { size, sha256: await tar.add(name, size, body, mismatch) };
  };

  const manifest = (await src.sql.begin('isolation level repeatable read read only', async (tx) => {
    const [{ server_version }] = await tx<{ server_version: string }[]>`show server_version`;
    const known = migrationFiles(src.dirs);
    const applied = await tx<{ version: string }[]>`select version from plinth.schema_migrations order by version`;
    const migrations = applied.map(({ version }) => {
      const m = known.get(version);
      if (!m) throw new BackupError(`migration ${version} is applied but its file is in neither ${src.dirs.plinth} nor ${src.dirs.app}: a restore could not replay it`);
      return { version, file: m.file, source: m.source, sha256: sha256File(m.full) };
    });
    const tables = await listTables(tx);
    const sequences = (
      await tx<{ schema: string; name: string; last_value: string | null; owner: string | null }[]>`
        select s.schemaname as schema, s.sequencename as name, s.last_value::text,
          (select n2.nspname || '.' || c2.relname from pg_catalog.pg_depend d
             join pg_catalog.pg_class c2 on c2.oid = d.refobjid join pg_catalog.pg_namespace n2 on n2.oid = c2.relnamespace
           where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.refclassid = 'pg_catalog.pg_class'::regclass
             and d.deptype in ('a', 'i') limit 1) as owner
        from pg_catalog.pg_sequences s
        join pg_catalog.pg_namespace n on n.nspname = s.schemaname
        join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = s.sequencename
        where s.schemaname not in ('pg_catalog', 'information_schema')`
    )
      .filter((s) => s.last_value !== null && !(s.owner && SKIPPED_TABLES.has(s.owner)))
      .map((s) => ({ schema: s.schema, name: s.name, lastValue: s.last_value! }));
    const hasRealtime = tables.length > 0 && (await tx`select from pg_catalog.pg_namespace where nspname = 'realtime'`).length > 0;
    const publications = hasRealtime ? await tx<{ schema: string; name: string }[]>`select table_schema as schema, table_name as name from realtime.publications order by 1, 2` : [];

    const withFiles = src.backend !== null && tables.some((t) => tableId(t) === 'storage.blobs');
    const objectList = withFiles ? await tx<{ id: string; key: string }[]>`select id, key from storage.blobs where ${tx.unsafe(LIVE_OBJECTS)} order by id` : [];
    const header: Header = {
      format: FORMAT,
      plinthVersion: src.plinthVersion,
      serverVersion: server_version,
      createdAt: new Date().toISOString(),
      files: src.backend !== null,
      migrations,
      tables,
      sequences,
      publications: publications.map((p) => ({ schema: p.schema, name: p.name })),
      objects: objectList.map((o) => ({ id: o.id, key: o.key })),
    };
    const headerBytes = Buffer.from(JSON.stringify(header, null, 2));
    await add(HEADER_MEMBER, headerBytes.length, headerBytes);

    const rowCounts: Record<string, number> = {};
    for (const [index, table] of tables.entries()) {
      const cols = table.columns.map(quoteIdent).join(', ');
      const query = tableId(table) === 'storage.blobs'
        ? `copy (select ${cols} from storage.blobs where ${LIVE_OBJECTS}) to stdout`
        : `copy ${qualified(table)} (${cols}) to stdout`;
      const stream = await tx.unsafe(query).readable();
      let rows = 0;
      let part = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        const body = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await add(`data/${index}.${part++}`, body.length, body);
      };
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        rows += countRows(chunk);
        if (pendingBytes >= PART_BYTES) await flush();
      }
      if (pendingBytes > 0) await flush();
      // postgres.js 3.4.9 pauses the socket when the stream's buffer fills and resumes it only
      // from the stream's read(); a copy that ends while paused would leave the connection
      // deaf to every later reply. Resume it once more.
      (stream as unknown as { _read(size: number): void })._read(0);
      rowCounts[tableId(table)] = rows;
    }

    const objects = { count: 0, bytes: 0 };
    if (withFiles && src.backend) {
      const backend = src.backend;
      const cursor = tx<{ id: string; key: string; backend: string; size: string; sha256: string; name: string | null }[]>`
        select o.id, o.key, o.backend, o.size::text, o.sha256,
          coalesce(f.path, e.table_name || '/' || e.row_id || '/' || e.field || '/' || e.filename, bo.bucket_id || '/' || bo.name) as name
        from storage.blobs o
        left join storage.file_links l on l.object_id = o.id left join public.files f on f.id = l.file_id
        left join storage.entity_files e on e.object_id = o.id
        left join storage.objects bo on bo.blob_id = o.id
        where o.state = 'ready' and o.id not in (select object_id from storage.deletions) order by o.id`.cursor(64);
      for await (const batch of cursor) {
        for (const o of batch) {
          const what = `object ${o.id}${o.name ? ` (${o.name})` : ''}`;
          if (o.backend !== backend.name) throw new BackupError(`${what} is recorded on the ${o.backend} store, but this Plinth is configured for ${backend.name}`);
          const size = Number(o.size);
          const name = `objects/${o.id}`;
          const sha = await tar.add(name, size, streamObject(backend, o.key, what), (n) => new BackupError(`${what}: the store holds ${n}${n > size ? '+' : ''} bytes, the database recorded ${size}`));
          if (sha !== o.sha256) throw new BackupError(`${what}: the SHA-256 of the stored bytes (${sha}) differs from the one the database recorded (${o.sha256})`);
          members[name] = { size, sha256: sha };
          objects.count++;
          objects.bytes += size;
        }
      }
    }
    const { objects: _list, ...rest } = header;
    return { ...rest, rowCounts, objects, members } satisfies Manifest;
  })) as Manifest;

  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2));
  await tar.add(MANIFEST_MEMBER, manifestBytes.length, manifestBytes);
  await tar.finish();
  return manifest;
}

async function* streamObject(backend: StorageBackend, key: string, what: string): AsyncGenerator<Buffer> {
  let body;
  try {
    body = await backend.get(key);
  } catch (err) {
    throw new BackupError(`${what} could not be read from the ${backend.name} store: ${(err as Error).message}`);
  }
  for await (const chunk of body) yield chunk as Buffer;
}

/**
 * Writes the archive to `file` (mode 0600: it holds password hashes and signing keys), through
 * passphrase encryption when one is given. The file appears only once complete.
 */
export async function backupToFile(src: BackupSource, file: string, passphrase?: string): Promise<Manifest> {
  const partial = path.join(path.dirname(file), `.${path.basename(file)}.partial`);
  const sink = fs.createWriteStream(partial, { mode: 0o600, flags: 'wx' });
  try {
    const manifest = await writeStream(src, sink, passphrase);
    await fs.promises.chmod(partial, 0o600);
    await fs.promises.rename(partial, file);
    return manifest;
  } catch (err) {
    sink.destroy();
    await fs.promises.rm(partial, { force: true });
    throw err;
  }
}

/** The archive into any byte sink (a file, an S3 upload), encrypted when a passphrase is given. */
export async function writeStream(src: BackupSource, sink: Writable, passphrase?: string): Promise<Manifest> {
  const tarOut = new PassThrough({ highWaterMark: 1024 * 1024 });
  const piping = passphrase ? pipeline(tarOut, encryptStream(passphrase), sink) : pipeline(tarOut, sink);
  piping.catch(() => {}); // observed below
  try {
    const manifest = await writeBackup(src, tarOut);
    tarOut.end();
    await piping;
    return manifest;
  } catch (err) {
    tarOut.destroy();
    await piping.catch(() => {});
    throw err;
  }
}


// `plinth restore`: an archive from `plinth backup` into an empty Plinth (or, with force, over one).
//
// Everything in the database happens in one transaction: the migrations the backup lists are
// replayed (their -- migrate:up sections, as dbmate runs them, and recorded in dbmate's table),
// the rows are loaded with COPY … FROM STDIN, sequences are set, realtime tables re-published.
// Triggers stay silent during the load (session_replication_role = replica), so no change-log,
// session or deletion trigger fires for restored rows; foreign keys, which that also silences,
// are then checked explicitly. Objects are written to the configured store while the transaction
// is open and checked against their SHA-256; on any error the transaction rolls back and the
// objects written so far are removed, so the target is left as it was.
import fs from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Sql, Tx } from '../core/db.js';
import type { StorageBackend } from '../storage/backends/adapter.js';
import { ArchiveError, readTar, type TarMember } from './archive.js';
import { listTables } from './backup.js';
import { decryptStream, isEncrypted } from './crypto.js';
import {
  checkHeader,
  HEADER_MEMBER,
  MANIFEST_MEMBER,
  migrationFiles,
  migrationSections,
  qualified,
  quoteIdent,
  sha256File,
  tableId,
  type Header,
  type Manifest,
  type MigrationDirs,
} from './manifest.js';


/** Tables whose rows are applied by triggers (a Fine-style `_policies` row is a real policy). */
const APPLIED_BY_TRIGGERS = new Set(['public._policies']);

export class RestoreError extends Error {}

export interface RestoreTarget {
  sql: Sql;
  backend: StorageBackend;
  dirs: MigrationDirs;
  plinthVersion: string;
  /** Replace a target that already holds users, files or app rows. */
  force: boolean;
}

export interface RestoreSummary {
  tables: number;
  rows: number;
  objects: number;
  bytes: number;
}

const PLINTH_SCHEMAS = ['auth', 'storage', 'realtime', 'plinth', 'audit'];

/** The archive's plaintext bytes: decrypted when it starts with the encryption header. */
export async function openArchive(file: string, passphrase?: string): Promise<AsyncIterable<Buffer>> {
  let start: Buffer;
  try {
    const fh = await fs.promises.open(file, 'r');
    try {
      start = Buffer.alloc(8);
      const { bytesRead } = await fh.read(start, 0, 8, 0);
      start = start.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new RestoreError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const raw = fs.createReadStream(file, { highWaterMark: 256 * 1024 });
  if (!isEncrypted(start)) return raw;
  if (!passphrase) throw new RestoreError('archive is encrypted: set PLINTH_BACKUP_PASSPHRASE to its passphrase');
  return decryptStream(passphrase)(raw);
}

async function readAll(member: TarMember, limit: number): Promise<Buffer> {
  if (member.size > limit) throw new ArchiveError(`archive is corrupted: ${member.name} is implausibly large`);
  const parts: Buffer[] = [];
  for await (const chunk of member.body) parts.push(chunk);
  return Buffer.concat(parts);
}

function parseJson(bytes: Buffer, name: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ArchiveError(`archive is corrupted: ${name} is not valid JSON`);
  }
}

/** Why the target is not empty, or null when it is. */
export async function whyNotEmpty(sql: Sql): Promise<string | null> {
  const schemas = new Set((await sql<{ nspname: string }[]>`select nspname from pg_catalog.pg_namespace`).map((r) => r.nspname));
  const reasons: string[] = [];
  if (schemas.has('auth')) {
    const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from auth.users`;
    if (n) reasons.push(`${n} user${n === 1 ? '' : 's'}`);
  }
  if (schemas.has('storage')) {
    const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from storage.blobs where state = 'ready'`;
    if (n) reasons.push(`${n} stored object${n === 1 ? '' : 's'}`);
  }
  for (const t of await listTables(sql)) {
    if (PLINTH_SCHEMAS.includes(t.schema)) continue;
    if ((await sql.unsafe(`select from ${qualified(t)} limit 1`)).length) reasons.push(`rows in ${tableId(t)}`);
  }
  return reasons.length ? reasons.join(', ') : null;
}

/**
 * COPY FROM STDIN of one member. postgres.js drops an error the server reports after the last
 * CopyData was sent (the copy's promise has already resolved with the stream), so a probe query
 * queued behind the copy surfaces it: it fails when the copy aborted the transaction.
 */
async function copyIn(tx: Tx, query: string, body: AsyncIterable<Buffer>, what: string): Promise<void> {
  const w = (await tx.unsafe(query).writable()) as Writable;
  const original = w._final.bind(w);
  w._final = (cb: (err?: Error | null) => void) => {
    let called = false;
    const once = (err?: Error | null) => {
      if (!called) (called = true), cb(err);
    };
    original(once);
    tx`select 1`.then(
      () => {},
      () => once(new ArchiveError(`archive is corrupted: the rows of ${what} could not be loaded`)),
    );
  };
  try {
    await pipeline(Readable.from(body), w);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    throw new ArchiveError(`archive is corrupted: the rows of ${what} could not be loaded (${(err as Error).message})`);
  }
}

function countRows(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  return n;
}

async function replayMigrations(tx: Tx, header: Header, dirs: MigrationDirs): Promise<void> {
  const known = migrationFiles(dirs);
  await tx.unsafe(`create schema if not exists plinth; create table if not exists plinth.schema_migrations (version varchar(128) primary key)`).simple();
  const applied = (await tx<{ version: string }[]>`select version from plinth.schema_migrations order by version`).map((r) => r.version);
  const wanted = new Set(header.migrations.map((m) => m.version));
  for (const version of applied.filter((v) => !wanted.has(v)).reverse()) {
    const m = known.get(version);
    if (!m) throw new RestoreError(`the target has migration ${version} applied, which the backup lacks, and its file is missing: it cannot be rolled back`);
    const { down } = migrationSections(fs.readFileSync(m.full, 'utf8'), m.file);
    if (down.trim()) await tx.unsafe(down).simple();
    await tx`delete from plinth.schema_migrations where version = ${version}`;
  }
  const done = new Set(applied);
  for (const m of header.migrations) {
    if (done.has(m.version)) continue;
    const file = known.get(m.version)!;
    try {
      await tx.unsafe(migrationSections(fs.readFileSync(file.full, 'utf8'), file.file).up).simple();
    } catch (err) {
      throw new RestoreError(`migration ${file.file} failed during the restore: ${(err as Error).message}`);
    }
    await tx`insert into plinth.schema_migrations (version) values (${m.version})`;
  }
}

/** Rows whose foreign keys point nowhere: replica mode does not check them during the load. */
async function checkForeignKeys(tx: Tx): Promise<void> {
  const fks = await tx<{ name: string; cs: string; ct: string; ps: string; pt: string; ccols: string[]; pcols: string[] }[]>`
    select con.conname as name, cn.nspname as cs, cc.relname as ct, pn.nspname as ps, pc.relname as pt,
      array(select a.attname::text from unnest(con.conkey) with ordinality k(n, o)
            join pg_catalog.pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.o) as ccols,
      array(select a.attname::text from unnest(con.confkey) with ordinality k(n, o)
            join pg_catalog.pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n order by k.o) as pcols
    from pg_catalog.pg_constraint con
    join pg_catalog.pg_class cc on cc.oid = con.conrelid join pg_catalog.pg_namespace cn on cn.oid = cc.relnamespace
    join pg_catalog.pg_class pc on pc.oid = con.confrelid join pg_catalog.pg_namespace pn on pn.oid = pc.relnamespace
    where con.contype = 'f' and cn.nspname !~ '^pg_'`;
  for (const fk of fks) {
    const notNull = fk.ccols.map((c) => `c.${quoteIdent(c)} is not null`).join(' and ');
    const match = fk.ccols.map((c, i) => `p.${quoteIdent(fk.pcols[i])} = c.${quoteIdent(c)}`).join(' and ');
    const bad = await tx.unsafe(
      `select from ${qualified({ schema: fk.cs, name: fk.ct })} c where ${notNull} and not exists (select from ${qualified({ schema: fk.ps, name: fk.pt })} p where ${match}) limit 1`,
    );
    if (bad.length) throw new ArchiveError(`archive is corrupted: rows of ${fk.cs}.${fk.ct} break foreign key ${fk.name}`);
  }
}

export async function restoreArchive(target: RestoreTarget, source: AsyncIterable<Buffer>): Promise<RestoreSummary> {
  const members = readTar(source);
  const first = await members.next();
  if (first.done || first.value.name !== HEADER_MEMBER) throw new ArchiveError('archive is not a Plinth backup: it does not start with plinth-backup.json');
  const headerBytes = await readAll(first.value, 64 * 1024 * 1024);
  const header = checkHeader(parseJson(headerBytes, HEADER_MEMBER), target.plinthVersion);
  const seen: Record<string, { size: number; sha256: string }> = { [HEADER_MEMBER]: { size: first.value.size, sha256: first.value.sha256() } };

  const known = migrationFiles(target.dirs);
  for (const m of header.migrations) {
    const here = known.get(m.version);
    if (!here) throw new RestoreError(`migration ${m.file} (listed in the backup) is missing from ${m.source === 'app' ? `the app's migrations folder ${target.dirs.app}` : `Plinth's ${target.dirs.plinth}`}`);
    if (sha256File(here.full) !== m.sha256) throw new RestoreError(`migration ${here.file} differs from the one the backup was taken with: restore with the app's migrations as they were`);
  }
  if (!target.force) {
    const why = await whyNotEmpty(target.sql);
    if (why) throw new RestoreError(`the target Plinth is not empty (${why}): restore into a fresh one, or pass --force to replace its contents`);
  }

  const { backend } = target;
  const before = new Map<string, { key: string; sha256: string }>();
  const hasStorage = (await target.sql`select from pg_catalog.pg_namespace where nspname = 'storage'`).length > 0;
  if (hasStorage) {
    for (const r of await target.sql<{ id: string; key: string; sha256: string }[]>`select id, key, sha256 from storage.blobs where state = 'ready' and backend = ${backend.name}`) {
      before.set(r.id, { key: r.key, sha256: r.sha256 });
    }
  }
  const written: string[] = [];
  const summary: RestoreSummary = { tables: header.tables.length, rows: 0, objects: 0, bytes: 0 };
  const restoredIds = new Set<string>();
  const reserved: string[] = [];

  try {
    // Reserve every object to be written as an upload in progress ('writing'), committed before the
    // first byte is stored: if the restore dies (killed, power lost), the sweeper finds the bytes it
    // left through these rows and removes them, as it does for any interrupted upload. The restore's
    // transaction replaces the reservations with the real rows; a failure deletes them.
    if (hasStorage) {
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
      const list = (header.objects ?? []).filter((o) => uuid.test(String(o.id)) && uuid.test(String(o.key)));
      for (let i = 0; i < list.length; i += 1000) {
        const batch = list.slice(i, i + 1000);
        const rows = await target.sql<{ id: string }[]>`
          insert into storage.blobs (id, backend, key)
          select (o->>'id')::uuid, ${backend.name}, o->>'key' from jsonb_array_elements(${target.sql.json(batch)}) o
          on conflict do nothing returning id`;
        reserved.push(...rows.map((r) => r.id));
      }
    }
    await target.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('plinth.migrations'))`;
      await replayMigrations(tx, header, target.dirs);

      const present = new Map((await listTables(tx)).map((t) => [tableId(t), t]));
      for (const t of header.tables) {
        const here = present.get(tableId(t));
        if (!here) throw new RestoreError(`table ${tableId(t)} from the backup does not exist after replaying its migrations`);
        const missing = t.columns.filter((c) => !here.columns.includes(c));
        if (missing.length) throw new RestoreError(`table ${tableId(t)} has no column ${missing.join(', ')} after replaying the migrations`);
      }
      const hasRealtime = (await tx`select from pg_catalog.pg_namespace where nspname = 'realtime'`).length > 0;
      if (hasRealtime) await tx`select realtime.unpublish(relid::regclass) from realtime.publications where to_regclass(format('%I.%I', table_schema, table_name)) is not null`;
      // Rows that become policies and grants through their triggers are deleted with the triggers
      // on (dropping what they made), loaded like any row, then applied again once triggers are back.
      const applied = header.tables.filter((t) => APPLIED_BY_TRIGGERS.has(tableId(t)) && present.has(tableId(t)));
      for (const t of applied) await tx.unsafe(`delete from ${qualified(t)}`);
      const truncated = header.tables.filter((t) => !applied.includes(t));
      if (truncated.length) await tx.unsafe(`truncate table ${truncated.map(qualified).join(', ')} cascade`);

      // Triggers off for the load (superuser only); without it, each table's own triggers are
      // disabled instead and foreign keys are checked row by row in load order.
      let replica = true;
      try {
        // In a savepoint: a refusal (42501) must not abort the whole transaction. The setting
        // outlives the released savepoint.
        await tx.savepoint((sp) => sp`set local session_replication_role = replica`);
      } catch {
        replica = false;
        for (const t of header.tables) await tx.unsafe(`alter table ${qualified(t)} disable trigger user`);
      }

      const rowCounts: Record<string, number> = {};
      let manifest: Manifest | null = null;
      for await (const member of { [Symbol.asyncIterator]: () => members }) {
        if (manifest) throw new ArchiveError(`archive is corrupted: ${member.name} follows the manifest`);
        if (seen[member.name]) throw new ArchiveError(`archive is corrupted: ${member.name} appears twice`);
        const data = /^data\/(\d+)\.\d+$/.exec(member.name);
        const object = /^objects\/([0-9a-f-]{36})$/.exec(member.name);
        if (data) {
          const table = header.tables[Number(data[1])];
          if (!table) throw new ArchiveError(`archive is corrupted: ${member.name} names no table`);
          const id = tableId(table);
          let rows = 0;
          const counted = (async function* () {
            for await (const chunk of member.body) {
              rows += countRows(chunk);
              yield chunk;
            }
          })();
          await copyIn(tx, `copy ${qualified(table)} (${table.columns.map(quoteIdent).join(', ')}) from stdin`, counted, id);
          rowCounts[id] = (rowCounts[id] ?? 0) + rows;
          summary.rows += rows;
        } else if (object) {
          const id = object[1];
          const [row] = await tx<{ key: string; sha256: string; size: string }[]>`select key, sha256, size::text from storage.blobs where id = ${id}`;
          if (!row) throw new ArchiveError(`archive is corrupted: object ${id} has bytes but no row`);
          if (Number(row.size) !== member.size) throw new ArchiveError(`archive is corrupted: object ${id} has ${member.size} bytes, its row says ${row.size}`);
          const kept = before.get(id);
          if (kept && kept.key === row.key && kept.sha256 === row.sha256) {
            // The target already holds these very bytes (a forced restore over itself): keep them.
            for await (const _ of member.body);
          } else {
            written.push(row.key);
            await backend.delete(row.key); // a stale partial upload from an interrupted restore
            await backend.put(row.key, Readable.from(member.body));
          }
          if (member.sha256() !== row.sha256) throw new ArchiveError(`checksum mismatch: object ${id} in the archive does not have the SHA-256 its row records`);
          restoredIds.add(id);
          summary.objects++;
          summary.bytes += member.size;
        } else if (member.name === MANIFEST_MEMBER) {
          manifest = parseJson(await readAll(member, 256 * 1024 * 1024), MANIFEST_MEMBER) as Manifest;
          continue;
        } else {
          throw new ArchiveError(`archive is corrupted: unexpected member ${member.name}`);
        }
        seen[member.name] = { size: member.size, sha256: member.sha256() };
      }
      if (!manifest || typeof manifest.members !== 'object') throw new ArchiveError('archive is truncated: its manifest is missing');

      for (const [name, m] of Object.entries(manifest.members)) {
        const got = seen[name];
        if (!got) throw new ArchiveError(`archive is truncated: ${name} is missing`);
        if (got.sha256 !== m.sha256 || got.size !== m.size) throw new ArchiveError(`checksum mismatch: ${name} does not have the SHA-256 the manifest records`);
      }
      for (const name of Object.keys(seen)) if (!manifest.members[name]) throw new ArchiveError(`archive is corrupted: ${name} is not in the manifest`);
      for (const t of header.tables) {
        const id = tableId(t);
        if ((rowCounts[id] ?? 0) !== (manifest.rowCounts[id] ?? 0)) throw new ArchiveError(`archive is corrupted: ${id} has ${rowCounts[id] ?? 0} rows, the manifest says ${manifest.rowCounts[id]}`);
      }
      if (header.files && present.has('storage.blobs')) {
        const [{ n }] = await tx<{ n: number }[]>`select count(*)::int as n from storage.blobs`;
        if (n !== summary.objects) throw new ArchiveError(`archive is corrupted: ${n} objects have rows but ${summary.objects} have bytes`);
        await tx`update storage.blobs set backend = ${backend.name} where backend <> ${backend.name}`;
      }

      if (replica) {
        await checkForeignKeys(tx);
        await tx`set local session_replication_role = origin`;
      } else {
        for (const t of header.tables) await tx.unsafe(`alter table ${qualified(t)} enable trigger user`);
      }
      for (const t of applied) await tx.unsafe(`update ${qualified(t)} set ${quoteIdent(t.columns[0])} = ${quoteIdent(t.columns[0])}`);
      for (const p of header.publications) await tx`select realtime.publish(format('%I.%I', ${p.schema}::text, ${p.name}::text)::regclass)`;
      for (const s of header.sequences) {
        await tx`select setval(r, ${s.lastValue}::bigint, true) from to_regclass(format('%I.%I', ${s.schema}::text, ${s.name}::text)) r where r is not null`;
      }
      // Running sidecars and PostgREST pick up the restored keys and schema.
      await tx`select pg_notify('plinth_keys', 'restore'), pg_notify('pgrst', 'reload config'), pg_notify('pgrst', 'reload schema')`;
    });
  } catch (err) {
    await Promise.all(written.map((key) => backend.delete(key).catch(() => {})));
    for (let i = 0; i < reserved.length; i += 1000) {
      await target.sql`delete from storage.blobs where state = 'writing' and id = any(${reserved.slice(i, i + 1000)}::uuid[])`.catch(() => {});
    }
    throw err;
  }
  // Bytes of the target's former objects that the restore replaced (forced restore only).
  for (const [id, o] of before) if (!restoredIds.has(id)) await backend.delete(o.key).catch(() => {});
  return summary;
}

export async function restoreFromFile(target: RestoreTarget, file: string, passphrase?: string): Promise<RestoreSummary> {
  return restoreArchive(target, await openArchive(file, passphrase));
}

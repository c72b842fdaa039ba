// Objects in buckets. Every statement about a bucket's rows runs as the caller, so the policies
// on storage.objects decide; bytes go through the storage feature's upload lifecycle (reserve →
// stream and hash → commit, or discard) into a new blob, linked to the row in the commit.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { asCaller, type Claims, type Tx } from '../core/db.js';
import { refusedUnread, upload } from '../storage/upload.js';
import type { Storage } from '../storage/types.js';
import { invalid, objectNotFound, StorageApiError } from './errors.js';
import { LimitGuard, tooLarge } from './guard.js';

export type WriteMode = 'create' | 'upsert' | 'update';

export interface ObjectRow {
  id: string;
  bucket_id: string;
  name: string;
  owner: string | null;
  metadata: Record<string, unknown> | null;
  user_metadata: Record<string, unknown> | null;
  version: string | null;
  blob_id: string;
  created_at: string;
  updated_at: string;
  last_accessed_at: string;
}

export interface Blob {
  key: string;
  size: string | number;
  sha256: string;
  content_type: string;
}

/** Supabase's bucket and object name rules, checked before any SQL (the table checks them too). */
export function checkBucketName(bucket: string): string {
  if (!/^[A-Za-z0-9_.!*'()& $@=;:+,?-]{1,100}$/.test(bucket) || bucket === '.' || bucket === '..') {
    throw new StorageApiError(400, 'InvalidBucketName', `Bucket name invalid: ${JSON.stringify(bucket)} (1–100 letters, digits and _ . ! * ' ( ) & $ @ = ; : + , ? - or space)`);
  }
  return bucket;
}

export function checkObjectName(name: string): string {
  const bad = (why: string) => new StorageApiError(400, 'InvalidKey', `Invalid key: ${JSON.stringify(name)} ${why}`);
  if (name.length === 0) throw bad('is empty');
  if (Buffer.byteLength(name) > 1024) throw bad('is longer than 1024 bytes');
  if (/[\x00-\x1f\x7f\\]/.test(name)) throw bad('contains a control character or a backslash');
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) throw bad('has an empty folder name');
  if (name.split('/').some((s) => s === '.' || s === '..')) throw bad('contains a "." or ".." segment');
  return name;
}

export interface PutInput {
  bucket: string;
  name: string;
  mode: WriteMode;
  declaredType: string;
  /** Cache-Control to send on downloads, e.g. `max-age=3600`. */
  cacheControl: string;
  userMetadata: Record<string, unknown> | null;
  source: Readable;
  request: IncomingMessage;
  /** The body's declared length where it is the file's own length (a raw body); else null. */
  length: number | null;
}

class RolledBack extends Error {}

/** Writes the object's row as the caller: RLS's INSERT/UPDATE policies decide. */
export async function writeRow(tx: Tx, mode: WriteMode, bucket: string, name: string, metadata: unknown, userMetadata: unknown, version: string | null): Promise<void> {
  const meta = metadata as never;
  const user = userMetadata as never;
  if (mode === 'update') {
    const rows = await tx`
      update storage.objects set metadata = ${tx.json(meta)}, user_metadata = coalesce(${user === null ? null : tx.json(user)}::jsonb, user_metadata),
        version = ${version}, owner = auth.uid(), owner_id = auth.uid()::text, updated_at = now(), last_accessed_at = now()
      where bucket_id = ${bucket} and name = ${name}`;
    if (rows.count === 0) throw objectNotFound();
  } else if (mode === 'upsert') {
    await tx`
      insert into storage.objects as o (bucket_id, name, metadata, user_metadata, version)
      values (${bucket}, ${name}, ${tx.json(meta)}, ${user === null ? null : tx.json(user)}, ${version})
      on conflict (bucket_id, name) do update set metadata = excluded.metadata, user_metadata = coalesce(excluded.user_metadata, o.user_metadata),
        version = excluded.version, owner = auth.uid(), owner_id = auth.uid()::text, updated_at = now(), last_accessed_at = now()`;
  } else {
    await tx`
      insert into storage.objects (bucket_id, name, metadata, user_metadata, version)
      values (${bucket}, ${name}, ${tx.json(meta)}, ${user === null ? null : tx.json(user)}, ${version})`;
  }
}

export interface Limits {
  file_size_limit: string | null;
  allowed_mime_types: string[] | null;
}

/**
 * Before any byte is read: the bucket exists, and the caller may write this row (the write is
 * made and rolled back, so RLS answers now rather than after a large upload).
 */
export async function checkWrite(storage: Storage, claims: Claims, bucket: string, name: string, mode: WriteMode): Promise<Limits> {
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const [limits] = await tx<Limits[]>`select * from storage.bucket_limits(${bucket})`;
    await tx
      .savepoint(async (sp) => {
        await writeRow(sp, mode, bucket, name, {}, null, null);
        throw new RolledBack();
      })
      .catch((err) => {
        if (!(err instanceof RolledBack)) throw err;
      });
    return limits;
  });
}

/** The byte limit for this bucket: its own, under the server's PLINTH_MAX_FILE_SIZE. */
export function byteLimit(storage: Storage, limits: Limits): number {
  const max = storage.plinth.config.storage.maxFileSize;
  return limits.file_size_limit === null ? max : Math.min(max, Number(limits.file_size_limit));
}

/** Streams the object's bytes into a new blob and makes it the object's current version. */
export async function putObject(storage: Storage, claims: Claims, input: PutInput): Promise<{ id: string; key: string }> {
  const { bucket, name, mode, source, request } = input;
  let limits: Limits;
  let limit: number;
  try {
    limits = await checkWrite(storage, claims, bucket, name, mode);
    limit = byteLimit(storage, limits);
    if (input.length !== null && input.length > limit) throw tooLarge(limit);
  } catch (err) {
    throw refusedUnread(err, source, request);
  }
  const guard = new LimitGuard(limit, limits.allowed_mime_types, input.declaredType);
  source.on('error', (err) => guard.destroy(err));
  guard.on('error', () => {
    // The guard refused: read the rest of the body and drop it, so the client sees the answer.
    source.unpipe(guard);
    if (!request.destroyed) source.resume();
  });
  // Bytes flow only once the upload reads them: a refusal before then (the reservation) leaves
  // the guard untouched, and upload() drains the body through it.
  guard.once('resume', () => source.pipe(guard));
  // The guard passes on the chunks it is given: the request's own when the body is not a form.
  const { result } = await upload(storage, claims, { source: guard, request, requestChunks: source === request }, {
    reserve: async (tx) => (await tx<{ blob_id: string }[]>`select blob_id from storage.begin_object_upload(${storage.backend.name}, ${bucket})`)[0].blob_id,
    commit: async (tx, written) => {
      const metadata = {
        eTag: `"${written.sha256}"`,
        size: written.size,
        mimetype: guard.mimetype,
        cacheControl: input.cacheControl,
        lastModified: new Date().toUTCString(),
        contentLength: written.size,
        httpStatusCode: 200,
      };
      await writeRow(tx, mode, bucket, name, metadata, input.userMetadata, written.id);
      const [row] = await tx<{ id: string }[]>`
        select storage.link_object(${bucket}, ${name}, ${written.id}, ${written.size}, ${written.sha256}, ${guard.mimetype}) as id`;
      return row.id;
    },
  });
  return { id: result, key: `${bucket}/${name}` };
}

/** The object as the caller may see it (RLS), with where its bytes are; null when not visible. */
export async function findObject(storage: Storage, claims: Claims, bucket: string, name: string): Promise<{ row: ObjectRow; blob: Blob } | null> {
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const [row] = await tx<ObjectRow[]>`
      select id, bucket_id, name, owner, metadata, user_metadata, version, blob_id, created_at, updated_at, last_accessed_at
      from storage.objects where bucket_id = ${bucket} and name = ${name}`;
    if (!row) return null;
    const [blob] = await tx<Blob[]>`select * from storage.blob_of(${row.blob_id})`;
    return blob ? { row, blob } : null;
  });
}

export interface ListOptions {
  prefix: string;
  limit: number;
  offset: number;
  sortBy: { column: string; order: string };
  search: string;
}

const SORTABLE = new Set(['name', 'created_at', 'updated_at', 'last_accessed_at']);

/** One level of a bucket, as storage-js's list() shows it: folders (id null) and objects. */
export async function listObjects(storage: Storage, claims: Claims, bucket: string, opts: ListOptions) {
  let prefix = opts.prefix.replace(/^\/+/, '');
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  const column = SORTABLE.has(opts.sortBy.column) ? opts.sortBy.column : 'name';
  const desc = opts.sortBy.order?.toLowerCase() === 'desc';
  const like = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    // A missing bucket is a 404; one the caller may not read simply shows no objects.
    await tx`select from storage.bucket_limits(${bucket})`;
    return tx`
      with level as (
        select split_part(substr(o.name, ${prefix.length + 1}), '/', 1) as item,
               strpos(substr(o.name, ${prefix.length + 1}), '/') > 0 as is_folder, o.*
        from storage.objects o
        where o.bucket_id = ${bucket} and o.name like ${like(prefix) + '%'}
      ), entries as (
        select distinct item as name, null::uuid as id, null::timestamptz as updated_at, null::timestamptz as created_at,
               null::timestamptz as last_accessed_at, null::jsonb as metadata
        from level where is_folder
        union all
        select item, id, updated_at, created_at, last_accessed_at, metadata from level where not is_folder
      )
      select * from entries where name ilike ${like(opts.search) + '%'}
      order by ${tx(column)} ${desc ? tx`desc` : tx`asc`} nulls first, name ${desc ? tx`desc` : tx`asc`}
      limit ${opts.limit} offset ${opts.offset}`;
  });
}

/** Deletes the named objects the caller may delete; returns those deleted. Their bytes are queued. */
export async function removeObjects(storage: Storage, claims: Claims, bucket: string, names: string[]) {
  return asCaller(storage.plinth.callerSql, claims, (tx) => tx`
    delete from storage.objects where bucket_id = ${bucket} and name = any(${names}::text[])
    returning id, bucket_id, name, owner, metadata, user_metadata, version, created_at, updated_at, last_accessed_at`);
}

/** Renames an object (possibly into another bucket): one UPDATE as the caller, the bytes stay. */
export async function moveObject(storage: Storage, claims: Claims, from: { bucket: string; name: string }, to: { bucket: string; name: string }) {
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    if (to.bucket !== from.bucket) await tx`select * from storage.bucket_limits(${to.bucket})`;
    const [row] = await tx<{ id: string }[]>`
      update storage.objects set bucket_id = ${to.bucket}, name = ${to.name}, updated_at = now()
      where bucket_id = ${from.bucket} and name = ${from.name} returning id`;
    if (!row) throw objectNotFound();
    return row.id;
  });
}

/** Copies an object's bytes into a new object; the copy is written like an upload, by the caller. */
export async function copyObject(
  storage: Storage, claims: Claims, from: { bucket: string; name: string }, to: { bucket: string; name: string }, upsert: boolean, request: IncomingMessage,
) {
  const found = await findObject(storage, claims, from.bucket, from.name);
  if (!found) throw objectNotFound();
  const meta = found.row.metadata ?? {};
  const source = await storage.backend.get(found.blob.key);
  try {
    return await putObject(storage, claims, {
      bucket: to.bucket,
      name: to.name,
      mode: upsert ? 'upsert' : 'create',
      declaredType: found.blob.content_type,
      cacheControl: typeof meta.cacheControl === 'string' ? meta.cacheControl : 'max-age=3600',
      userMetadata: found.row.user_metadata,
      source,
      request,
      length: Number(found.blob.size),
    });
  } finally {
    source.destroy();
  }
}

export function parseUserMetadata(raw: string | undefined, base64: boolean): Record<string, unknown> | null {
  if (raw === undefined || raw === '') return null;
  try {
    const value = JSON.parse(base64 ? Buffer.from(raw, 'base64').toString('utf8') : raw);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error();
    return value;
  } catch {
    throw invalid('metadata must be a JSON object (x-metadata: base64 of it)');
  }
}

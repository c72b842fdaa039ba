// Buckets: rows of storage.buckets, read and written as the caller so its policies decide
// (by default: a signed-in user creates and owns buckets; anyone sees public ones).
import { asCaller, type Claims } from '../core/db.js';
import type { Storage } from '../storage/types.js';
import { bucketNotFound, invalid, StorageApiError } from './errors.js';
import { parseSizeLimit } from './limits.js';
import { checkBucketName } from './objects.js';

const COLUMNS = 'id, name, owner, public, file_size_limit, allowed_mime_types, created_at, updated_at';

export interface BucketInput {
  public?: boolean;
  file_size_limit?: unknown;
  allowed_mime_types?: string[] | null;
}

function sizeLimit(value: unknown): number | null {
  try {
    return parseSizeLimit(value);
  } catch (err) {
    throw invalid((err as Error).message);
  }
}

function mimeTypes(value: string[] | null | undefined): string[] | null {
  if (value === null || value === undefined) return null;
  const list = value.filter((t) => t !== '');
  for (const t of list) {
    if (!/^[a-z0-9!#$&^_.+-]+\/([a-z0-9!#$&^_.+-]+|\*)$/i.test(t.trim())) throw invalid(`allowed_mime_types: ${JSON.stringify(t)} is not a type such as image/png or image/*`);
  }
  return list.length ? list : null;
}

/** Buckets as JSON: file_size_limit as a number, like Supabase. */
function shaped<T extends { file_size_limit: unknown }>(b: T): T {
  return { ...b, file_size_limit: b.file_size_limit === null ? null : Number(b.file_size_limit), type: 'STANDARD' };
}

export async function createBucket(storage: Storage, claims: Claims, id: string, input: BucketInput) {
  checkBucketName(id);
  const limit = sizeLimit(input.file_size_limit);
  const types = mimeTypes(input.allowed_mime_types);
  await asCaller(storage.plinth.callerSql, claims, (tx) => tx`
    insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
    values (${id}, ${id}, ${input.public ?? false}, ${limit}, ${types})`);
  return { name: id };
}

export interface ListBucketOptions {
  limit?: number;
  offset?: number;
  search?: string;
  sortColumn?: string;
  sortOrder?: string;
}

const BUCKET_SORTABLE = new Set(['id', 'name', 'created_at', 'updated_at']);

export async function listBuckets(storage: Storage, claims: Claims, opts: ListBucketOptions) {
  const column = opts.sortColumn && BUCKET_SORTABLE.has(opts.sortColumn) ? opts.sortColumn : 'name';
  const desc = opts.sortOrder?.toLowerCase() === 'desc';
  const search = (opts.search ?? '').replace(/[\\%_]/g, (c) => `\\${c}`);
  const rows = await asCaller(storage.plinth.callerSql, claims, (tx) => tx`
    select ${tx.unsafe(COLUMNS)} from storage.buckets where name ilike ${'%' + search + '%'}
    order by ${tx(column)} ${desc ? tx`desc` : tx`asc`}
    ${opts.limit !== undefined ? tx`limit ${opts.limit}` : tx``} offset ${opts.offset ?? 0}`);
  return rows.map((r) => shaped(r as { file_size_limit: unknown }));
}

export async function getBucket(storage: Storage, claims: Claims, id: string) {
  const [row] = await asCaller(storage.plinth.callerSql, claims, (tx) => tx`select ${tx.unsafe(COLUMNS)} from storage.buckets where id = ${id}`);
  if (!row) throw bucketNotFound();
  return shaped(row as { file_size_limit: unknown });
}

export async function updateBucket(storage: Storage, claims: Claims, id: string, input: BucketInput) {
  const set: Record<string, unknown> = { updated_at: new Date() };
  if (input.public !== undefined) set.public = input.public;
  if (input.file_size_limit !== undefined) set.file_size_limit = sizeLimit(input.file_size_limit);
  if (input.allowed_mime_types !== undefined) set.allowed_mime_types = mimeTypes(input.allowed_mime_types);
  const rows = await asCaller(storage.plinth.callerSql, claims, (tx) => tx`
    update storage.buckets set ${tx(set as never, Object.keys(set) as never)} where id = ${id} returning id`);
  if (rows.length === 0) throw bucketNotFound();
  return { message: 'Successfully updated' };
}

/** Deletes every object of the bucket the caller may delete; their bytes are queued for the sweeper. */
export async function emptyBucket(storage: Storage, claims: Claims, id: string) {
  await asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const [b] = await tx`select 1 from storage.buckets where id = ${id}`;
    if (!b) throw bucketNotFound();
    await tx`delete from storage.objects where bucket_id = ${id}`;
  });
  return { message: 'Successfully emptied' };
}

export async function deleteBucket(storage: Storage, claims: Claims, id: string) {
  await asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const [b] = await tx`select 1 from storage.buckets where id = ${id}`;
    if (!b) throw bucketNotFound();
    const rows = await tx.savepoint((sp) => sp`delete from storage.buckets where id = ${id} returning id`).catch((err) => {
      if ((err as { code?: string }).code === '23503') {
        throw new StorageApiError(409, 'ResourceNotEmpty', `The bucket you tried to delete is not empty: empty it first (POST /storage/v1/bucket/${id}/empty)`);
      }
      throw err;
    });
    if (rows.length === 0) throw new StorageApiError(403, 'Unauthorized', 'You may not delete this bucket (row-level security on storage.buckets)');
  });
  return { message: 'Successfully deleted' };
}

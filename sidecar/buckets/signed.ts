// Signed URLs: rows of storage.signed_urls holding a hash of a random token. Creating one runs as
// the caller, so RLS decides both whether the caller can read (or write) the object and whether
// it may record the URL. Using one needs no key: the token is the grant, checked against the row
// (kind, expiry, the object's current version), with the owner's pool.
import { createHash, randomBytes } from 'node:crypto';
import { asCaller, type ApiRole, type Claims } from '../core/db.js';
import type { Storage } from '../storage/types.js';
import { StorageApiError } from './errors.js';
import { checkWrite, type Blob, type ObjectRow, type WriteMode } from './objects.js';

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');
const newToken = () => randomBytes(32).toString('base64url');

/** Supabase's signed upload URLs last two hours. */
const UPLOAD_URL_SECONDS = 2 * 60 * 60;
const MAX_EXPIRY_SECONDS = 365 * 24 * 60 * 60;

export const NO_ACCESS = 'Either the object does not exist or you do not have access to it';

function expiry(expiresIn: number): number {
  if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_EXPIRY_SECONDS) {
    throw new StorageApiError(400, 'InvalidRequest', `expiresIn must be a whole number of seconds from 1 to ${MAX_EXPIRY_SECONDS}`);
  }
  return expiresIn;
}

/** Download URLs for `names` the caller can read; null (with the reason) for the others. */
export async function signDownloads(storage: Storage, claims: Claims, bucket: string, names: string[], expiresIn: number) {
  const seconds = expiry(expiresIn);
  return asCaller(storage.plinth.callerSql, claims, async (tx) => {
    const out: { path: string; signedURL: string | null; error: string | null; id: string | null }[] = [];
    for (const name of names) {
      const [row] = await tx<{ id: string; blob_id: string }[]>`select id, blob_id from storage.objects where bucket_id = ${bucket} and name = ${name}`;
      if (!row) {
        out.push({ path: name, signedURL: null, error: NO_ACCESS, id: null });
        continue;
      }
      const token = newToken();
      const [url] = await tx<{ id: string }[]>`
        insert into storage.signed_urls (token_hash, kind, bucket_id, name, object_id, blob_id, expires_at)
        values (${hashOf(token)}, 'download', ${bucket}, ${name}, ${row.id}, ${row.blob_id}, now() + make_interval(secs => ${seconds}))
        returning id`;
      out.push({ path: name, signedURL: `/object/sign/${bucket}/${name}?token=${token}`, error: null, id: url.id });
    }
    return out;
  });
}

/** An upload URL for one name, if the caller may write it now (the write is tried and rolled back). */
export async function signUpload(storage: Storage, claims: Claims, bucket: string, name: string, upsert: boolean) {
  await checkWrite(storage, claims, bucket, name, upsert ? 'upsert' : 'create');
  const token = newToken();
  const [row] = await asCaller(storage.plinth.callerSql, claims, (tx) => tx<{ id: string }[]>`
    insert into storage.signed_urls (token_hash, kind, bucket_id, name, upsert, expires_at)
    values (${hashOf(token)}, 'upload', ${bucket}, ${name}, ${upsert}, now() + make_interval(secs => ${UPLOAD_URL_SECONDS}))
    returning id`);
  return { url: `/object/upload/sign/${bucket}/${name}?token=${token}`, token, id: row.id };
}

function refused(expired: boolean): StorageApiError {
  return expired
    ? new StorageApiError(400, 'ExpiredToken', 'The signed URL has expired')
    : new StorageApiError(400, 'InvalidSignature', 'The signed URL is not valid: it was revoked, its object was deleted or replaced, or it was never issued');
}

interface SignedRow {
  expired: boolean;
  kind: string;
  bucket_id: string;
  name: string;
  upsert: boolean;
  created_by: string | null;
  created_role: ApiRole;
}

async function findToken(storage: Storage, token: string | undefined, kind: string, bucket: string, name: string): Promise<SignedRow & { object_id: string | null; blob_id: string | null }> {
  if (!token) throw new StorageApiError(400, 'InvalidSignature', 'The signed URL has no token');
  const [row] = await storage.plinth.sql<(SignedRow & { object_id: string | null; blob_id: string | null })[]>`
    select expires_at <= now() as expired, kind, bucket_id, name, upsert, created_by, created_role, object_id, blob_id
    from storage.signed_urls where token_hash = ${hashOf(token)}`;
  if (!row || row.kind !== kind || row.bucket_id !== bucket || row.name !== name) throw refused(false);
  if (row.expired) throw refused(true);
  return row;
}

/** The object a download URL grants, if it is still the version that was signed. */
export async function openSignedDownload(storage: Storage, token: string | undefined, bucket: string, name: string): Promise<{ row: ObjectRow; blob: Blob }> {
  const signed = await findToken(storage, token, 'download', bucket, name);
  const [found] = await storage.plinth.sql<(ObjectRow & Blob)[]>`
    select o.id, o.bucket_id, o.name, o.owner, o.metadata, o.user_metadata, o.version, o.blob_id, o.created_at, o.updated_at, o.last_accessed_at,
           b.key, b.size, b.sha256, b.content_type
    from storage.objects o join storage.blobs b on b.id = o.blob_id
    where o.id = ${signed.object_id} and o.blob_id = ${signed.blob_id} and o.bucket_id = ${bucket} and o.name = ${name}`;
  if (!found) throw refused(false);
  const { key, size, sha256, content_type, ...row } = found;
  return { row, blob: { key, size, sha256, content_type } };
}

/** Who an upload through this URL is written as: the caller who created it. */
export async function openSignedUpload(storage: Storage, token: string | undefined, bucket: string, name: string): Promise<{ claims: Claims; mode: WriteMode }> {
  const signed = await findToken(storage, token, 'upload', bucket, name);
  const claims: Claims = signed.created_by ? { role: signed.created_role, sub: signed.created_by } : { role: signed.created_role };
  return { claims, mode: signed.upsert ? 'upsert' : 'create' };
}

/** Revokes one signed URL the caller created (RLS: the creator's own); false when there is none. */
export async function revokeSignedUrl(storage: Storage, claims: Claims, id: string): Promise<boolean> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return false;
  const rows = await asCaller(storage.plinth.callerSql, claims, (tx) => tx`delete from storage.signed_urls where id = ${id} returning id`);
  return rows.length > 0;
}

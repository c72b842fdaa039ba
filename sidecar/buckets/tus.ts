// Resumable uploads (TUS 1.0) as Supabase Storage serves them under /storage/v1/upload/resumable.
// An upload is a row in storage.tus_uploads, created as the caller (RLS on storage.objects is
// tested then, and again when the object is written). Bytes wait in a local file under the data
// directory: a PATCH appends to it and acknowledges an offset only once the bytes are fsync'd and
// counted in the row; on S3 every 5 MiB or more become a multipart part. The last byte makes the
// object visible, all or nothing, through the same row write and storage.link_object as any upload.
// Signed resumable uploads run the same code as the signed token's creator, held to its one object.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { asCaller, type Claims } from '../core/db.js';
import type { Piece } from '../storage/backends/adapter.js';
import { StreamHash } from '../storage/hashing.js';
import { parseContentType } from '../storage/content-types.js';
import type { Storage } from '../storage/types.js';
import { invalid, StorageApiError } from './errors.js';
import { tooLarge, typeRefused } from './guard.js';
import { effectiveType, mimeAllowed, sniff, SNIFF_BYTES } from './limits.js';
import { byteLimit, checkBucketName, checkObjectName, checkWrite, parseUserMetadata, writeRow, type WriteMode } from './objects.js';

export const TUS_VERSION = '1.0.0';
export const TUS_EXTENSIONS = 'creation,creation-with-upload,termination,expiration';

/** Bytes appended between two acknowledgements (fsync + row update) within one PATCH. */
const CHECKPOINT = 8 * 1024 * 1024;
/** Bytes gathered into one write to the staged file. */
const WRITE_BATCH = 1024 * 1024;

export interface TusState {
  storage: Storage;
  /** Where staged bytes wait: under the data directory, beside the disk store's objects. */
  dir: string;
  /** One request at a time per upload in this process: PATCH, HEAD and DELETE take turns. */
  locks: Map<string, Promise<void>>;
  /** Uploads being written by this process now: the sweeper leaves them alone. */
  busy: Set<string>;
  /** The SHA-256 of an upload's acknowledged bytes, kept between PATCHes (recomputed after a restart). */
  hashes: Map<string, { hash: StreamHash; bytes: number }>;
}

interface UploadRow {
  id: string;
  bucket_id: string;
  name: string;
  upsert: boolean;
  upload_length: string;
  upload_offset: string;
  content_type: string;
  cache_control: string;
  user_metadata: Record<string, unknown> | null;
  metadata_header: string;
  s3_upload_id: string | null;
  parts: Piece[];
  parts_bytes: string;
  expires_at: Date;
  expired: boolean;
}

export const uploadNotFound = () => new StorageApiError(404, 'NotFound', 'The upload for this URL was not found (finished, cancelled, expired, or not yours)');
const gone = () => new StorageApiError(410, 'Gone', 'The upload expired (no PATCH for PLINTH_TUS_EXPIRY seconds); start a new one');
const offsetConflict = (expected: number) =>
  new StorageApiError(409, 'Conflict', `Upload-Offset does not match the upload's offset, ${expected}: send HEAD and continue from there`);

export function tusState(storage: Storage): TusState {
  const dir = path.join(storage.plinth.config.storage.diskDir, 'tus');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return { storage, dir, locks: new Map(), busy: new Set(), hashes: new Map() };
}

export const stagedFile = (tus: TusState, id: string) => path.join(tus.dir, `${id}.part`);

/** The upload id in URLs, as Supabase shapes it: base64url of "bucket/name/version". */
export function uploadUrlId(bucket: string, name: string, id: string): string {
  return Buffer.from(`${bucket}/${name}/${id}`, 'utf8').toString('base64url');
}

/** An upload's object (bucket and name) and its own id, all as the URL spells them; null when malformed. */
export function parseUploadUrl(raw: string): (Target & { id: string }) | null {
  const decoded = Buffer.from(raw, 'base64url').toString('utf8');
  const first = decoded.indexOf('/');
  const last = decoded.lastIndexOf('/');
  const id = decoded.slice(last + 1);
  if (first < 1 || last <= first + 1 || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return null;
  return { bucket: decoded.slice(0, first), name: decoded.slice(first + 1, last), id };
}

/** The object an upload is for. */
export interface Target {
  bucket: string;
  name: string;
}

/** The object an Upload-Metadata header names (bucketName, objectName), checked. */
export function uploadTarget(header: string | undefined): Target {
  const meta = parseUploadMetadata(header);
  if (!meta.bucketName || !meta.objectName) throw invalid('Upload-Metadata needs bucketName and objectName');
  return { bucket: checkBucketName(meta.bucketName), name: checkObjectName(meta.objectName) };
}

/** Upload-Metadata: comma-separated "key base64value" pairs (the value may be absent). */
export function parseUploadMetadata(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const pair of header.split(',')) {
    const [key, value, extra] = pair.trim().split(' ');
    if (!key || extra !== undefined || (value !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(value))) {
      throw invalid('Upload-Metadata must be comma-separated "key base64value" pairs');
    }
    out[key] = value === undefined ? '' : Buffer.from(value, 'base64').toString('utf8');
  }
  return out;
}

/** Waits for this upload's other requests in this process, then runs fn alone. */
export async function exclusive<T>(tus: TusState, id: string, fn: () => Promise<T>): Promise<T> {
  const before = tus.locks.get(id) ?? Promise.resolve();
  let release!: () => void;
  const mine = before.then(() => new Promise<void>((r) => (release = r)));
  tus.locks.set(id, mine);
  await before;
  try {
    return await fn();
  } finally {
    release();
    if (tus.locks.get(id) === mine) tus.locks.delete(id);
  }
}

function modeOf(row: { upsert: boolean }): WriteMode {
  return row.upsert ? 'upsert' : 'create';
}

export interface Created {
  id: string;
  urlId: string;
  expiresAt: Date;
  length: number;
}

/** POST: checks the caller may write the object (RLS, as the caller) and the bucket's limits, then opens the upload. */
export async function createUpload(tus: TusState, claims: Claims, input: { length: string | undefined; metadata: string | undefined; upsert: boolean }): Promise<Created> {
  const { storage } = tus;
  if (input.length === undefined || !/^\d{1,16}$/.test(input.length)) {
    throw invalid('Upload-Length is required: the number of bytes of the file (deferred lengths are not supported)');
  }
  const length = Number(input.length);
  const meta = parseUploadMetadata(input.metadata);
  const { bucket, name } = uploadTarget(input.metadata);
  let contentType: string;
  try {
    contentType = parseContentType(meta.contentType || undefined, 'application/octet-stream');
  } catch (err) {
    throw invalid((err as Error).message);
  }
  // As Supabase: seconds become max-age, anything else no-cache.
  const cacheControl = /^\d+$/.test(meta.cacheControl ?? '') ? `max-age=${meta.cacheControl}` : 'no-cache';
  const userMetadata = parseUserMetadata(meta.metadata, false);

  const limits = await checkWrite(storage, claims, bucket, name, input.upsert ? 'upsert' : 'create');
  const limit = byteLimit(storage, limits);
  if (length > limit) throw tooLarge(limit);
  if (!mimeAllowed(contentType, limits.allowed_mime_types)) throw typeRefused(contentType, limits.allowed_mime_types ?? []);

  const id = randomUUID();
  const handle = await storage.backend.staged.begin(id);
  try {
    await fs.promises.writeFile(stagedFile(tus, id), '', { mode: 0o600 });
    const [row] = await asCaller(storage.plinth.callerSql, claims, (tx) => tx<{ expires_at: Date }[]>`
      insert into storage.tus_uploads (id, bucket_id, name, upsert, upload_length, content_type, cache_control, user_metadata,
        metadata_header, backend, s3_upload_id, expires_at)
      values (${id}, ${bucket}, ${name}, ${input.upsert}, ${length}, ${contentType}, ${cacheControl},
        ${userMetadata === null ? null : tx.json(userMetadata as never)}, ${input.metadata ?? ''}, ${storage.backend.name}, ${handle},
        now() + make_interval(secs => ${storage.plinth.config.storage.tusExpiry}))
      returning expires_at`);
    return { id, urlId: uploadUrlId(bucket, name, id), expiresAt: row.expires_at, length };
  } catch (err) {
    await storage.backend.staged.abandon(id, handle).catch(() => {});
    await fs.promises.rm(stagedFile(tus, id), { force: true });
    throw err;
  }
}

/**
 * The upload as the caller may see it (RLS: its creator only). `only`: a signed upload token's
 * object; an upload for any other object of the token's creator is not the holder's to see.
 */
async function loadUpload(tus: TusState, claims: Claims, id: string, only?: Target): Promise<UploadRow> {
  const [row] = await asCaller(tus.storage.plinth.callerSql, claims, (tx) => tx<UploadRow[]>`
    select *, expires_at < now() as expired from storage.tus_uploads where id = ${id}`);
  if (!row || (only && (row.bucket_id !== only.bucket || row.name !== only.name))) throw uploadNotFound();
  if (row.expired) throw gone();
  return row;
}

export interface UploadStatus {
  offset: number;
  length: number;
  metadata: string;
  expiresAt: Date;
}

/** HEAD: the acknowledged offset, once this process's PATCH of it (if any) has settled. */
export async function uploadStatus(tus: TusState, claims: Claims, id: string, only?: Target): Promise<UploadStatus> {
  return exclusive(tus, id, async () => {
    const row = await loadUpload(tus, claims, id, only);
    return { offset: Number(row.upload_offset), length: Number(row.upload_length), metadata: row.metadata_header, expiresAt: row.expires_at };
  });
}

/** DELETE: the caller cancels its upload; its staged bytes and parts go. */
export async function cancelUpload(tus: TusState, claims: Claims, id: string, only?: Target): Promise<void> {
  await exclusive(tus, id, async () => {
    const [row] = await asCaller(tus.storage.plinth.callerSql, claims, (tx) => tx<{ s3_upload_id: string | null }[]>`
      delete from storage.tus_uploads where id = ${id}
        ${only ? tx`and bucket_id = ${only.bucket} and name = ${only.name}` : tx``}
      returning s3_upload_id`);
    if (!row) throw uploadNotFound();
    await dropBytes(tus, id, row.s3_upload_id);
  });
}

/** Removes whatever an unfinished (or failed) upload left: staged file, parts, a completed object. */
export async function dropBytes(tus: TusState, id: string, handle: string | null): Promise<void> {
  forgetHash(tus, id);
  await fs.promises.rm(stagedFile(tus, id), { force: true });
  await tus.storage.backend.staged.abandon(id, handle).catch(() => {});
  await tus.storage.backend.delete(id);
}

/** A full disk, said as a resumable upload sees it: the acknowledged bytes stay. */
function diskFull(err: unknown, kept: number): StorageApiError | undefined {
  const code = (err as { code?: unknown }).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return undefined;
  return new StorageApiError(507, 'InsufficientStorage', `Storage is full: the server has no disk space left; the upload keeps its first ${kept} bytes (send HEAD and continue once space is freed)`);
}

function stalled(seconds: number) {
  return new StorageApiError(408, 'RequestTimeout', `The PATCH stalled: no bytes for ${seconds} s (PLINTH_UPLOAD_IDLE_TIMEOUT); the bytes before were kept`);
}

/**
 * PATCH: appends the body at Upload-Offset. Bytes that arrived are kept even if the client goes
 * away mid-body (that is the point of resuming); returns the acknowledged offset and whether the
 * upload finished (the object is then written).
 */
export async function appendUpload(
  tus: TusState, claims: Claims, id: string, clientOffset: string | undefined, body: IncomingMessage, only?: Target,
): Promise<{ offset: number; finished: boolean }> {
  if (clientOffset === undefined || !/^\d{1,16}$/.test(clientOffset)) throw invalid('Upload-Offset is required: the number of bytes already uploaded');
  return exclusive(tus, id, async () => {
    const { storage } = tus;
    const { sql, config } = storage.plinth;
    const row = await loadUpload(tus, claims, id, only);
    const length = Number(row.upload_length);
    const declared = body.headers['content-length'] === undefined ? null : Number(body.headers['content-length']);
    const file = stagedFile(tus, id);
    tus.busy.add(id);
    const fh = await fs.promises.open(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    let fhOpen = true;
    try {
      const parts = [...row.parts];
      let flushed = Number(row.parts_bytes);
      let offset = Number(row.upload_offset);
      let local = offset - flushed;
      const { size } = await fh.stat();
      if (size < local) {
        // Acknowledged bytes that are not here (another host's data directory, or a lost disk):
        // go back to what is, and let the client resume from there.
        offset = flushed + size;
        local = size;
        await sql`update storage.tus_uploads set upload_offset = ${offset} where id = ${id}`;
        forgetHash(tus, id);
      } else if (size > local) {
        await fh.truncate(local); // bytes written but never acknowledged
      }
      if (Number(clientOffset) !== offset) throw offsetConflict(offset);
      if (declared !== null && offset + declared > length) {
        throw new StorageApiError(413, 'EntityTooLarge', `The body goes past Upload-Length (${length} bytes); nothing of it was kept`);
      }

      // The hash continues from the last PATCH when it covers exactly the acknowledged bytes.
      const known = tus.hashes.get(id);
      tus.hashes.delete(id);
      let working: StreamHash | null = offset === 0 ? new StreamHash() : known?.bytes === offset ? known.hash : null;
      if (known && known.hash !== working) known.hash.drop();
      // Bytes taken from this body (which starts at `from`), and those of them not yet in an
      // acknowledgement. While `working` lasts, it has seen every byte taken.
      const from = offset;
      let taken = 0;
      let unacked = 0;
      let acking: Promise<void> = Promise.resolve();
      let ackFailure: unknown = null;
      const appender = new Appender(fh, local);
      // Moving a full part to the store truncates the staged file: nothing may be written meanwhile.
      const partsStaged = storage.backend.staged.minPiece !== Infinity;

      /**
       * Acknowledges the bytes taken so far once they are written and fsync'd, after the
       * acknowledgement before it. The body keeps flowing meanwhile. Once one fails, none after it
       * runs: an offset is never acknowledged past a gap.
       */
      function acknowledge(): Promise<void> {
        const bytes = unacked;
        unacked = 0;
        acking = acking
          .then(async () => {
            await appender.settle();
            if (bytes === 0) return;
            await fh.sync();
            const next = offset + bytes;
            const moved = await sql`
              update storage.tus_uploads set upload_offset = ${next}, expires_at = now() + make_interval(secs => ${config.storage.tusExpiry})
              where id = ${id} and upload_offset = ${offset} returning id`;
            if (moved.length === 0) throw offsetConflict(offset);
            offset = next;
            local += bytes;
            // A full part goes to the store now; the last one waits for the end.
            if (local >= storage.backend.staged.minPiece && offset < length) {
              parts.push(await storage.backend.staged.storePiece(id, row.s3_upload_id, parts.length + 1, file, local));
              await sql`update storage.tus_uploads set parts = ${sql.json(parts as never)}, parts_bytes = ${flushed + local} where id = ${id}`;
              await fh.truncate(0);
              flushed += local;
              local = 0;
              appender.restart(0);
            }
          })
          .catch((err: unknown) => {
            ackFailure ??= err;
            throw err;
          });
        // Awaited by the body's loop or at the end; until then its failure is recorded, not unhandled.
        acking.catch(() => {});
        return acking;
      }

      let failure: unknown = null;
      const idleSeconds = config.storage.uploadIdleTimeout;
      const idle = setTimeout(() => body.destroy(stalled(idleSeconds)), idleSeconds * 1000);
      try {
        try {
          for await (const chunk of body as AsyncIterable<Buffer>) {
            idle.refresh();
            if (from + taken + chunk.length > length) {
              failure = new StorageApiError(413, 'EntityTooLarge', `The body goes past Upload-Length (${length} bytes); the bytes after it were refused`);
              break;
            }
            await appender.write(chunk);
            unacked += chunk.length;
            taken += chunk.length;
            if (working) {
              // A failed hashing thread costs a pass over the stored bytes at the end, not the upload.
              const wait = working.update(chunk);
              if (wait) await wait.catch(() => (working = null));
            }
            if (unacked >= CHECKPOINT) {
              await acking; // one at a time; throws the previous one's failure
              const ack = acknowledge();
              if (partsStaged) await ack;
            }
          }
        } catch (err) {
          // The client went away (or stalled): what arrived is kept and acknowledged below.
          failure = err instanceof StorageApiError ? err : body.errored ?? err;
        } finally {
          clearTimeout(idle);
        }
        // Everything taken is acknowledged, unless a write or an acknowledgement failed: then the
        // bytes after the last good one do not count (the next PATCH truncates them).
        await acknowledge().catch(() => {});
        if (ackFailure) failure = diskFull(ackFailure, offset) ?? ackFailure;
        if (working && from + taken === offset) {
          await working.park().catch(() => (working = null));
          if (working) tus.hashes.set(id, { hash: working, bytes: offset });
        }
      } finally {
        if (working && tus.hashes.get(id)?.hash !== working) working.drop();
      }
      if (failure) throw failure;
      if (offset < length) return { offset, finished: false };

      await fh.close();
      fhOpen = false;
      await finishUpload(tus, claims, row, parts, local);
      return { offset, finished: true };
    } finally {
      if (fhOpen) await fh.close().catch(() => {});
      tus.busy.delete(id);
    }
  });
}

/**
 * Appends a body to the staged file from a position, copied into batches of WRITE_BATCH that are
 * written one after the other in the thread pool while the next one fills. Two batches serve the
 * whole PATCH, so the HTTP parser's chunks are free as soon as they are copied: held until their
 * write, they outlived young-generation collections and had to wait for full ones.
 */
class Appender {
  private filling: Buffer | null = null;
  private used = 0;
  private readonly free: Buffer[] = [];
  private batches = 0;
  /** The last write queued; each starts once the one before it is done. */
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly fh: FileHandle, private position: number) {}

  /** Waits only when both batches are taken: one full, one being written. */
  async write(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      if (this.filling === null) {
        this.filling = this.take();
        if (this.filling === null) {
          await this.running;
          this.filling = this.take()!;
        }
      }
      const n = chunk.copy(this.filling, this.used, at);
      this.used += n;
      at += n;
      if (this.used === this.filling.length) this.flush();
    }
  }

  /** Every byte taken so far is written; throws the failure of any write. */
  async settle(): Promise<void> {
    this.flush();
    await this.running;
  }

  /** Later bytes go from `position` (the file was truncated). */
  restart(position: number): void {
    this.position = position;
  }

  private take(): Buffer | null {
    const reused = this.free.pop();
    if (reused) return reused;
    if (this.batches === 2) return null;
    this.batches++;
    return Buffer.allocUnsafeSlow(WRITE_BATCH);
  }

  private flush(): void {
    if (this.filling === null || this.used === 0) return;
    const batch = this.filling;
    const bytes = batch.subarray(0, this.used);
    const at = this.position;
    this.position += this.used;
    this.filling = null;
    this.used = 0;
    // After a failed write the chain stays rejected: nothing later is written.
    this.running = this.running.then(async () => {
      await writeAll(this.fh, [bytes], at);
      this.free.push(batch);
    });
    // Awaited by a later write or by settle(); until then its failure is kept, not unhandled.
    this.running.catch(() => {});
  }
}

/** Writes every byte of `chunks` at `at`, continuing after a short write. */
async function writeAll(fh: FileHandle, chunks: Buffer[], at: number): Promise<void> {
  let rest = chunks;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, at);
    if (bytesWritten === 0) throw new Error('the staged file took no bytes');
    at += bytesWritten;
    let skip = bytesWritten;
    let i = 0;
    while (i < rest.length && skip >= rest[i].length) skip -= rest[i++].length;
    rest = rest.slice(i);
    if (skip > 0) rest[0] = rest[0].subarray(skip);
  }
}

/** This process's running hash of an upload is no longer needed. */
function forgetHash(tus: TusState, id: string): void {
  tus.hashes.get(id)?.hash.drop();
  tus.hashes.delete(id);
}

/** The last byte arrived: the object is stored whole, checked, and written as the caller. */
async function finishUpload(tus: TusState, claims: Claims, row: UploadRow, parts: Piece[], local: number): Promise<void> {
  const { storage } = tus;
  const { backend, plinth } = storage;
  const { id } = row;
  const length = Number(row.upload_length);
  const mode = modeOf(row);
  // The caller may still write it (policies or the bucket may have changed since the POST).
  const limits = await checkWrite(storage, claims, row.bucket_id, row.name, mode);
  const limit = byteLimit(storage, limits);
  if (length > limit) {
    await abandon(tus, row);
    throw tooLarge(limit);
  }
  try {
    await backend.staged.finish(id, row.s3_upload_id, parts, stagedFile(tus, id), local);
    await fs.promises.rm(stagedFile(tus, id), { force: true });
    // Without a running hash of every byte (after a restart, on another host, or when the
    // hashing thread was lost): one pass over the stored bytes.
    const known = tus.hashes.get(id);
    tus.hashes.delete(id);
    let sha256: string | null = null;
    if (known && known.bytes === length) sha256 = await known.hash.digest().catch(() => null);
    else known?.hash.drop();
    sha256 ??= await hashStored(tus, id);
    const head = length === 0 ? Buffer.alloc(0) : await readStored(tus, id, Math.min(SNIFF_BYTES, length));
    const mimetype = effectiveType(row.content_type, sniff(head));
    if (!mimeAllowed(mimetype, limits.allowed_mime_types)) throw typeRefused(mimetype, limits.allowed_mime_types ?? []);
    await asCaller(plinth.callerSql, claims, async (tx) => {
      const [{ blob }] = await tx<{ blob: string }[]>`select storage.begin_resumable_blob(${id}) as blob`;
      const metadata = {
        eTag: `"${sha256}"`,
        size: length,
        mimetype,
        cacheControl: row.cache_control,
        lastModified: new Date().toUTCString(),
        contentLength: length,
        httpStatusCode: 200,
      };
      await writeRow(tx, mode, row.bucket_id, row.name, metadata, row.user_metadata, blob);
      await tx`select storage.link_object(${row.bucket_id}, ${row.name}, ${blob}, ${length}, ${sha256}, ${mimetype})`;
      if (plinth.config.storage.userQuota !== null) await tx`select storage.check_quota(${plinth.config.storage.userQuota})`;
      await tx`delete from storage.tus_uploads where id = ${id}`;
    });
  } catch (err) {
    await abandon(tus, row);
    throw err;
  }
}

async function abandon(tus: TusState, row: UploadRow): Promise<void> {
  try {
    await tus.storage.plinth.sql`delete from storage.tus_uploads where id = ${row.id}`;
    await dropBytes(tus, row.id, row.s3_upload_id);
  } catch (err) {
    tus.storage.plinth.log.warn(`buckets: could not remove failed resumable upload ${row.id} (the sweeper will): ${(err as Error).message}`);
  }
}

async function hashStored(tus: TusState, id: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await tus.storage.backend.get(id)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readStored(tus: TusState, id: string, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await tus.storage.backend.get(id, { start: 0, end: n - 1 })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Removes uploads with no PATCH for PLINTH_TUS_EXPIRY, and staged files no upload owns. */
export async function sweepExpired(tus: TusState): Promise<number> {
  const { sql, config } = tus.storage.plinth;
  const backend = tus.storage.backend.name;
  let total = 0;
  for (;;) {
    const n = await sql.begin(async (tx) => {
      const rows = await tx<{ id: string; s3_upload_id: string | null }[]>`
        select id, s3_upload_id from storage.tus_uploads
        where expires_at < now() and backend = ${backend}
          ${tus.busy.size ? tx`and id not in ${tx([...tus.busy])}` : tx``}
        order by expires_at limit 100 for update skip locked`;
      for (const row of rows) await dropBytes(tus, row.id, row.s3_upload_id);
      if (rows.length) await tx`delete from storage.tus_uploads where id in ${tx(rows.map((r) => r.id))}`;
      return rows.length;
    });
    total += n;
    if (n < 100) break;
  }
  // Staged files whose upload row never committed (or was removed by a crash mid-cleanup).
  const cutoff = Date.now() - config.storage.tusExpiry * 1000;
  for (const entry of await fs.promises.readdir(tus.dir)) {
    const id = entry.replace(/\.part$/, '');
    if (tus.busy.has(id) || !/^[0-9a-f-]{36}$/.test(id)) continue;
    const stat = await fs.promises.stat(path.join(tus.dir, entry)).catch(() => null);
    if (!stat || stat.mtimeMs > cutoff) continue;
    const [row] = await sql`select 1 from storage.tus_uploads where id = ${id}`;
    if (!row) await fs.promises.rm(path.join(tus.dir, entry), { force: true });
  }
  return total;
}

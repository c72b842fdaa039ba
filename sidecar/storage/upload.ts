// The life of one upload, whatever route it came by (store_file, /storage/upload):
//   reserve  as the caller, before any byte is written: PostgreSQL refuses callers who may not
//            store, and records a 'writing' object so bytes of a crashed upload are findable;
//   write    stream the body to the backend through a meter (size limit, idle timeout, SHA-256);
//   commit   as the caller, in one transaction: link the object and check the caller's quota;
//   or discard the bytes and the reservation on any failure; then release the key to the sweeper.
// A small body on a backend that takes whole objects (disk) goes another way, uploadWhole: read
// whole, written durably where the sweeper finds strays without a reservation, then reserve and
// commit in one transaction.
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { PendingQuery, Row } from 'postgres';
import { asCaller, asCallerAtOnce, type Claims, type Sql, type Tx } from '../core/db.js';
import { PlinthError } from '../core/errors.js';
import { StreamHash } from './hashing.js';
import type { WrittenChunks } from './backends/adapter.js';
import type { Storage, WrittenObject } from './types.js';

/** Bodies declared (Content-Length) no larger than this may be read whole: see uploadWhole. */
export const WHOLE_AT_MOST = 64 * 1024;

/**
 * Age after which the sweeper takes a whole object with no version for a stray (never less than
 * PLINTH_SWEEP_AGE). An upload that needed half of it to reach its commit gives up instead.
 */
export function wholeGraceSeconds(sweepAge: number): number {
  return Math.max(sweepAge, 60);
}

export function fileTooLarge(limit: number): PlinthError {
  return new PlinthError(413, `The file is larger than the limit of ${limit} bytes (PLINTH_MAX_FILE_SIZE)`, 'PLINTH413');
}

function overQuota(quota: number): PlinthError {
  return new PlinthError(413, `The file is larger than your storage quota of ${quota} bytes (PLINTH_USER_QUOTA)`, 'PT413', null,
    'Delete files you no longer need, or ask the operator to raise PLINTH_USER_QUOTA');
}

function stalled(seconds: number): PlinthError {
  return new PlinthError(408, `The upload stalled: no bytes arrived for ${seconds} s (PLINTH_UPLOAD_IDLE_TIMEOUT); nothing was stored`, 'PLINTH408', null, null, {
    connection: 'close',
  });
}

export class UploadAborted extends Error {
  constructor() {
    super('the client closed the connection before the upload finished');
  }
}

/**
 * Takes one of the address's upload slots, or refuses with 429 when they are all in use.
 * Returns the function that gives the slot back.
 */
export function admitUpload(storage: Storage, address: string): () => void {
  const max = storage.plinth.config.storage.maxUploadsPerAddress;
  if (max === 0) return () => {};
  const inFlight = storage.uploadsByAddress.get(address) ?? 0;
  if (inFlight >= max) {
    throw new PlinthError(429, `Too many uploads in progress from your address (at most ${max} at once, PLINTH_MAX_UPLOADS_PER_ADDRESS); retry when one has finished`,
      'PLINTH429', null, null, { 'retry-after': '5' });
  }
  storage.uploadsByAddress.set(address, inFlight + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (storage.uploadsByAddress.get(address) ?? 1) - 1;
    if (n <= 0) storage.uploadsByAddress.delete(address);
    else storage.uploadsByAddress.set(address, n);
  };
}

/** Bodies up to this size are read and dropped after an early refusal, so the client sees it. */
const DRAIN_LIMIT = 16 * 1024 * 1024;

/**
 * A refusal given before the file's bytes were read. A small body is read and dropped (a client
 * still sending would otherwise fail with a broken pipe instead of reading our answer); a large
 * or unsized one is not read at all: the connection is closed after the answer.
 */
export function refusedUnread(err: unknown, source: Readable, request: IncomingMessage): unknown {
  const declared = Number(request.headers['content-length']);
  if (declared <= DRAIN_LIMIT) {
    source.resume();
    return err;
  }
  if (!(err instanceof PlinthError)) return err;
  return new PlinthError(err.status, err.message, err.code, err.details, err.hint, { ...err.headers, connection: 'close' });
}

/**
 * Counts and hashes the bytes passing through; fails the stream once it exceeds the limit. With
 * `hashWritten`, the bytes are hashed as the store hands them back written (WrittenChunks), which
 * spares copying them for the hashing thread; otherwise as they pass.
 */
class Meter extends Transform implements WrittenChunks {
  // Not called `size`: lib-storage would read it as the body's total length.
  bytes = 0;
  private readonly hash = new StreamHash();

  constructor(
    private readonly limit: number,
    private readonly tooLarge: () => PlinthError,
    private readonly onBytes: () => void,
    private readonly hashWritten: boolean,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  written(chunks: Buffer[]): Promise<void> | undefined {
    return this.hashWritten ? this.hash.take(chunks) : undefined;
  }

  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.onBytes();
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return done(this.tooLarge());
    if (this.hashWritten) return done(null, chunk);
    const wait = this.hash.update(chunk);
    if (!wait) return done(null, chunk);
    // The hasher is behind: the chunk goes on once it has caught up (the body waits meanwhile).
    wait.then(() => done(null, chunk), done);
  }

  _destroy(err: Error | null, callback: (error?: Error | null) => void) {
    // A stream that ended whole is destroyed too (autoDestroy); its digest is still to be read.
    if (err || !this.writableFinished) this.hash.drop();
    callback(err);
  }

  digest(): Promise<string> {
    return this.hash.digest();
  }
}

export interface UploadBody {
  /** The file's bytes. */
  source: Readable;
  /** The HTTP request carrying them: if the client goes away mid-body, the upload fails at once. */
  request: IncomingMessage;
  /**
   * The source passes on the request's own chunks unchanged (as the request itself does): each
   * its own copy of the bytes read, used by nobody once passed on, so the store may take it.
   */
  requestChunks?: boolean;
  /** Runs once every byte is stored, before the commit (e.g. the rest of a form must be empty). */
  finish?: () => Promise<void>;
}

export interface UploadSteps<T> {
  /** As the caller, before any byte is written: refuse, or reserve an object and return its id. */
  reserve(tx: Tx): Promise<string>;
  /** As the caller, once every byte is stored: make the object the current version. */
  commit(tx: Tx, written: WrittenObject): Promise<T>;
}

/**
 * Steps that are one statement each (returning one row with an `id`): each transaction, quota
 * check included, then takes a single round trip to the database.
 */
export interface OneStatementSteps {
  reserveStatement(tx: Sql): PendingQuery<Row[]>;
  commitStatement(tx: Sql, written: WrittenObject): PendingQuery<Row[]>;
}

interface Transactions<T> {
  reserve(): Promise<string>;
  commit(written: WrittenObject): Promise<T>;
}

/** Each step in its own transaction as the caller; the commit's also checks the caller's quota. */
function transactions<T>(storage: Storage, claims: Claims, steps: UploadSteps<T> | OneStatementSteps): Transactions<T> | Transactions<string> {
  const { callerSql, config } = storage.plinth;
  const quota = config.storage.userQuota;
  if ('reserveStatement' in steps) {
    const first = async (statements: (tx: Sql) => PendingQuery<Row[]>[]) => (await asCallerAtOnce(callerSql, claims, statements))[0][0].id as string;
    return {
      reserve: () => first((tx) => [steps.reserveStatement(tx)]),
      commit: (written) => first((tx) => [steps.commitStatement(tx, written), ...(quota === null ? [] : [tx`select storage.check_quota(${quota})`])]),
    };
  }
  return {
    reserve: () => asCaller(callerSql, claims, steps.reserve),
    commit: (written) =>
      asCaller(callerSql, claims, async (tx) => {
        const out = await steps.commit(tx, written);
        if (quota !== null) await tx`select storage.check_quota(${quota})`;
        return out;
      }),
  };
}

/** Runs one upload from reservation to commit; on any failure nothing new is left behind. */
export async function upload<T>(storage: Storage, claims: Claims, body: UploadBody, steps: UploadSteps<T>): Promise<{ result: T; written: WrittenObject }>;
export async function upload(storage: Storage, claims: Claims, body: UploadBody, steps: OneStatementSteps): Promise<{ result: string; written: WrittenObject }>;
export async function upload<T>(storage: Storage, claims: Claims, body: UploadBody, steps: UploadSteps<T> | OneStatementSteps): Promise<{ result: T | string; written: WrittenObject }> {
  const { config } = storage.plinth;
  const tx: Transactions<T | string> = transactions(storage, claims, steps);
  let id: string;
  try {
    id = await tx.reserve();
  } catch (err) {
    throw refusedUnread(err, body.source, body.request);
  }
  const reserved = { id, key: id };
  storage.writing.add(reserved.key);
  try {
    const written = await write(storage, reserved, body, claims.sub ? config.storage.userQuota : null);
    await body.finish?.();
    const result = await tx.commit(written);
    return { result, written };
  } catch (err) {
    // Not committed: these bytes are nobody's. (A committed version is never removed here.)
    await discard(storage, reserved);
    throw err;
  } finally {
    // The commit (or its failure) is over: the sweeper may judge this object by its row again.
    storage.writing.delete(reserved.key);
  }
}

/** Streams the body into the reserved object; a failed write leaves what the backend left, for discard(). */
async function write(storage: Storage, reserved: { id: string; key: string }, body: UploadBody, quota: number | null): Promise<WrittenObject> {
  const { source, request } = body;
  const { maxFileSize, uploadIdleTimeout } = storage.plinth.config.storage;
  const limit = quota === null ? maxFileSize : Math.min(maxFileSize, quota);
  const tooLarge = () => (limit < maxFileSize ? overQuota(limit) : fileTooLarge(limit));
  // A body that sends nothing for too long fails. Time spent waiting on a slow backend (the
  // source paused by backpressure) is ours, not the client's, and does not count.
  const idle = setTimeout(function check() {
    if (source.readableFlowing === false) idle.refresh();
    else meter.destroy(stalled(uploadIdleTimeout));
  }, uploadIdleTimeout * 1000);
  const handOver = (source === request || body.requestChunks === true) && storage.backend.handsBackWritten === true;
  const meter = new Meter(limit, tooLarge, () => idle.refresh(), handOver);
  const onSourceError = (err: Error) => meter.destroy(err);
  const onRequestClose = () => {
    if (!request.complete) meter.destroy(new UploadAborted());
  };
  source.on('error', onSourceError);
  request.on('close', onRequestClose);
  if (request.destroyed && !request.complete) meter.destroy(new UploadAborted());
  try {
    source.pipe(meter);
    await storage.backend.put(reserved.key, meter);
    if (meter.errored) throw meter.errored;
    return { ...reserved, size: meter.bytes, sha256: await meter.digest() };
  } catch (err) {
    source.unpipe(meter);
    // Read (and drop) the rest of the body, so the client, still sending, gets to see our answer.
    if (!request.destroyed) source.resume();
    throw meter.errored ?? err;
  } finally {
    clearTimeout(idle);
    source.off('error', onSourceError);
    request.off('close', onRequestClose);
  }
}

/** Removes an uncommitted object: its bytes (complete or partial) and its reservation. */
async function discard(storage: Storage, obj: { id: string; key: string }): Promise<void> {
  try {
    // The row first, and the bytes only if it was still 'writing': when the answer to a COMMIT is
    // lost (the connection dropped), the version may have committed, and its bytes must stay.
    const gone = await storage.plinth.sql`delete from storage.blobs where id = ${obj.id} and state = 'writing' returning id`;
    if (gone.length > 0) await storage.backend.delete(obj.key);
  } catch (err) {
    // The sweeper will find the reservation later; the request's own error matters more.
    storage.plinth.log.warn(`could not discard uploaded object ${obj.key}: ${(err as Error).message}`);
  }
}

/** A step that is one statement, run as the caller in a transaction of its own. */
export interface WholeStatement {
  /** Refuses, or records the stored bytes as the current version; returns one row with an `id`. */
  storeStatement(tx: Sql, written: WrittenObject): PendingQuery<Row[]>;
}

/**
 * A small body, read whole: no reservation before the bytes. They are written durably where a
 * crash leaves them findable (backend.whole.pending), then one transaction as the caller refuses
 * or records them, quota check included; then they are moved under their key.
 */
export async function uploadWhole(storage: Storage, claims: Claims, body: UploadBody, step: WholeStatement): Promise<{ result: string; written: WrittenObject }> {
  const { config, callerSql, log } = storage.plinth;
  const whole = storage.backend.whole!;
  const { maxFileSize, userQuota, sweepAge } = config.storage;
  const limit = claims.sub && userQuota !== null ? Math.min(maxFileSize, userQuota) : maxFileSize;
  const { chunks, size } = await readWhole(storage, body, limit, () => (limit < maxFileSize ? overQuota(limit) : fileTooLarge(limit)));
  // Opaque like a reserved id: random, never derived from the request.
  const key = randomUUID();
  storage.writing.add(key);
  try {
    const started = performance.now();
    const hash = createHash('sha256');
    for (const chunk of chunks) hash.update(chunk);
    const written: WrittenObject = { id: key, key, size, sha256: hash.digest('hex') };
    await whole.write(key, chunks);
    await body.finish?.();
    // Past this, a sweeper may be taking these bytes for a stray: committing them could leave a
    // version without bytes.
    if (performance.now() - started > (wholeGraceSeconds(sweepAge) * 1000) / 2) {
      throw new PlinthError(503, 'Storing the file took too long; nothing was stored, try again', 'PLINTH503');
    }
    const [rows] = await asCallerAtOnce(callerSql, claims, (tx) => [step.storeStatement(tx, written)]);
    // Committed: a failed move only leaves the bytes where reads and the sweeper still find them.
    await whole.publish(key).catch((err) => log.warn(`could not move stored object ${key} into place: ${(err as Error).message}`));
    return { result: rows[0].id as string, written };
  } catch (err) {
    await discardWhole(storage, key);
    throw err;
  } finally {
    storage.writing.delete(key);
  }
}

/** The body in memory, with a streamed body's limits: size, idle timeout, the client going away. */
function readWhole(storage: Storage, body: UploadBody, limit: number, tooLarge: () => PlinthError): Promise<{ chunks: Buffer[]; size: number }> {
  const { source, request } = body;
  const { uploadIdleTimeout } = storage.plinth.config.storage;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const idle = setTimeout(() => fail(stalled(uploadIdleTimeout)), uploadIdleTimeout * 1000);
    const onData = (chunk: Buffer) => {
      idle.refresh();
      size += chunk.length;
      if (size > limit) fail(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve({ chunks, size });
    };
    const onClose = () => {
      if (!request.complete) fail(new UploadAborted());
    };
    function stop() {
      clearTimeout(idle);
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', fail);
      request.off('close', onClose);
    }
    function fail(err: Error) {
      stop();
      // Read (and drop) the rest of the body, so the client, still sending, gets to see our answer.
      if (!request.destroyed) source.resume();
      reject(err);
    }
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', fail);
    request.on('close', onClose);
    if (request.destroyed && !request.complete) fail(new UploadAborted());
  });
}

/** Removes the bytes of a whole object that did not become a version. */
async function discardWhole(storage: Storage, key: string): Promise<void> {
  const { sql, log } = storage.plinth;
  try {
    // Taking the key first: if the answer to our commit was lost, this waits for that commit and
    // then finds the key taken, and the version's bytes stay.
    const taken = await sql`insert into storage.blobs (id, backend, key) values (${key}, ${storage.backend.name}, ${key}) on conflict do nothing returning id`;
    if (taken.length === 0) return await storage.backend.whole!.publish(key);
    await storage.backend.delete(key);
    await sql`delete from storage.blobs where id = ${key}`;
  } catch (err) {
    // The sweeper will find the bytes (or the row) later; the request's own error matters more.
    log.warn(`could not discard uploaded object ${key}: ${(err as Error).message}`);
  }
}

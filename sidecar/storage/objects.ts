// Writing one new object version: reserve a row in storage.objects, stream the bytes to the
// backend through a meter (size limit, SHA-256), and on any failure remove what was written.
// The caller commits the object (switching a file to it) in its own transaction afterwards.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Plinth } from '../core/context.js';
import { PlinthError } from '../core/errors.js';
import type { StorageBackend } from './backends/adapter.js';

export interface Storage {
  plinth: Plinth;
  backend: StorageBackend;
  /** Keys being written by this process: the sweeper never touches them, however old. */
  writing: Set<string>;
}

export interface WrittenObject {
  id: string;
  key: string;
  size: number;
  sha256: string;
}

export function fileTooLarge(limit: number): PlinthError {
  return new PlinthError(413, `The file is larger than the limit of ${limit} bytes (PLINTH_MAX_FILE_SIZE)`, 'PLINTH413');
}

export class UploadAborted extends Error {
  constructor() {
    super('the client closed the connection before the upload finished');
  }
}

/** Counts and hashes the bytes passing through; fails the stream once it exceeds the limit. */
class Meter extends Transform {
  // Not called `size`: lib-storage would read it as the body's total length.
  bytes = 0;
  private readonly hash = createHash('sha256');

  constructor(private readonly limit: number) {
    super({ highWaterMark: 1024 * 1024 });
  }

  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return done(fileTooLarge(this.limit));
    this.hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** Reserves an object row for an upload that is not owned by a user (entity-linked files). */
export async function reserveObject(storage: Storage): Promise<{ id: string; key: string }> {
  const [row] = await storage.plinth.sql<{ id: string; key: string }[]>`
    insert into storage.objects (id, backend, key)
    select g.id, ${storage.backend.name}, g.id::text from (select gen_random_uuid() as id) g
    returning id, key`;
  return row;
}

/**
 * Streams `source` into the reserved object. `request` is the HTTP request carrying it: if the
 * client goes away mid-body, the write fails instead of waiting forever. On failure nothing is
 * left: the bytes and the reservation are removed, and the error is rethrown. On success the key
 * stays in storage.writing (safe from the sweeper) until the caller's commit calls release().
 */
export async function writeObject(
  storage: Storage,
  reserved: { id: string; key: string },
  source: Readable,
  request: IncomingMessage,
): Promise<WrittenObject> {
  const meter = new Meter(storage.plinth.config.storage.maxFileSize);
  const onSourceError = (err: Error) => meter.destroy(err);
  const onRequestClose = () => {
    if (!request.complete) meter.destroy(new UploadAborted());
  };
  source.on('error', onSourceError);
  request.on('close', onRequestClose);
  if (request.destroyed && !request.complete) meter.destroy(new UploadAborted());
  storage.writing.add(reserved.key);
  try {
    source.pipe(meter);
    await storage.backend.put(reserved.key, meter);
    if (meter.errored) throw meter.errored;
    return { ...reserved, size: meter.bytes, sha256: meter.digest() };
  } catch (err) {
    source.unpipe(meter);
    // Read (and drop) the rest of the body, so the client, still sending, gets to see our answer.
    if (!request.destroyed) source.resume();
    await discardObject(storage, reserved);
    storage.writing.delete(reserved.key);
    throw meter.errored ?? err;
  } finally {
    source.off('error', onSourceError);
    request.off('close', onRequestClose);
  }
}

/** Removes an uncommitted object: its bytes (complete or partial) and its reservation. */
export async function discardObject(storage: Storage, obj: { id: string; key: string }): Promise<void> {
  try {
    await storage.backend.delete(obj.key);
    await storage.plinth.sql`delete from storage.objects where id = ${obj.id} and state = 'writing'`;
  } catch (err) {
    // The sweeper will find the reservation later; the request's own error matters more.
    storage.plinth.log.warn(`could not discard uploaded object ${obj.key}: ${(err as Error).message}`);
  }
}

/** The commit (or its failure) is over: the sweeper may judge this object by its row again. */
export function release(storage: Storage, key: string): void {
  storage.writing.delete(key);
}

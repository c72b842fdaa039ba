// The one small interface every byte store implements (disk, S3). Keys are opaque object ids
// chosen by the database, never client names. A put either completes or leaves no readable
// object under the key; delete also removes whatever a failed or interrupted put left behind.
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ByteRange } from '../ranges.js';

export interface StorageBackend {
  readonly name: 'disk' | 's3';
  /**
   * Stores the stream under `key`; rejects (storing nothing) if the stream errors. When the store
   * hands chunks back (handsBackWritten) and `body` is a WrittenChunks, every chunk goes to its
   * written() once stored, in order, and the store never reads it again.
   */
  put(key: string, body: Readable): Promise<void>;
  /** Whether put() gives a WrittenChunks body its chunks back (the disk, which writes them itself). */
  readonly handsBackWritten?: boolean;
  /** The stored bytes, or a range of them. Rejects with ObjectNotFound if there is no such object. */
  get(key: string, range?: ByteRange): Promise<StoredBytes>;
  /**
   * Present when downloads are redirected (S3 with PLINTH_S3_DOWNLOADS=redirect): a short-lived URL
   * at which clients read the object themselves, answered with the given headers.
   */
  downloadUrl?(key: string, answer: DownloadAnswer): Promise<string>;
  /** Removes the object and any partial upload; succeeds if there is nothing to remove. */
  delete(key: string): Promise<void>;
  /** For GET /health: throws when the store cannot be reached or written. */
  check(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
  /** Bytes that arrive over many requests (resumable uploads), staged in a local file. */
  readonly staged: StagedWrites;
  /** Small objects whose bytes arrived whole, stored before the commit that records them (disk only). */
  readonly whole?: WholeWrites;
}

/**
 * An object's bytes, as get() gives them: a stream for any reader, which can also send itself as
 * a download, each store the cheapest way it has (a file through reused buffers, S3 from the
 * socket it arrives on).
 */
export interface StoredBytes extends Readable {
  /**
   * Writes `length` bytes (the answer's Content-Length; headers set on `res`) and ends `res`. Rejects,
   * `res` destroyed, if the store fails or holds another number of bytes; a client that goes away
   * stops it quietly. Only for bytes nothing has read yet.
   */
  writeTo(res: ServerResponse, length: number): Promise<void>;
}

/**
 * A put's body that takes its chunks back once they are stored (to hash them without copying
 * them). A returned promise asks the store to wait before writing more.
 */
export interface WrittenChunks {
  written(chunks: Buffer[]): Promise<void> | undefined;
}

/**
 * How a small object, held whole in memory, is stored with one database transaction instead of
 * two. write() makes the bytes durable where a crash leaves them findable without a database
 * row (pending()); the commit then records the version; publish() moves the bytes under the key.
 * get(key) finds them before and after the move, and delete(key) removes them from either place.
 */
export interface WholeWrites {
  write(key: string, chunks: Buffer[]): Promise<void>;
  publish(key: string): Promise<void>;
  /** Keys written (or left by a crash) more than `seconds` ago and not yet published. */
  pending(seconds: number): Promise<string[]>;
}

/** Headers the store sets on a redirected download, so the client sees what Plinth would send. */
export interface DownloadAnswer {
  contentType: string;
  contentDisposition: string;
  cacheControl: string;
}

/** A stored piece of a staged object (an S3 part). */
export interface Piece {
  n: number;
  tag: string;
  size: number;
}

/**
 * How a backend takes an object whose bytes arrive over many requests. The bytes wait in a local
 * file; a backend with pieces (S3 multipart) takes them in pieces of at least `minPiece` bytes as
 * they come, the rest at the end. Nothing is readable under the key before finish().
 */
export interface StagedWrites {
  /** Pieces smaller than this are refused, except the last; Infinity: the file is stored whole at the end. */
  readonly minPiece: number;
  /** Starts a staged object; returns the backend's handle for it (S3: the multipart upload id), or null. */
  begin(key: string): Promise<string | null>;
  /** Stores the local file's first `length` bytes as piece `n`. */
  storePiece(key: string, handle: string | null, n: number, file: string, length: number): Promise<Piece>;
  /** Makes the object readable under key: the pieces, then the local file's first `length` bytes. */
  finish(key: string, handle: string | null, pieces: Piece[], file: string, length: number): Promise<void>;
  /** Drops the pieces of an unfinished object (delete(key) removes a finished one). */
  abandon(key: string, handle: string | null): Promise<void>;
}

export class ObjectNotFound extends Error {}

/** Object keys are uuids from storage.blobs; anything else is a bug, refused loudly. */
export function assertKey(key: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(key)) throw new Error(`not an object key: ${JSON.stringify(key)}`);
  return key;
}

// The one small interface every byte store implements (disk, S3). Keys are opaque object ids
// chosen by the database, never client names. A put either completes or leaves no readable
// object under the key; delete also removes whatever a failed or interrupted put left behind.
import type { Readable } from 'node:stream';
import type { ByteRange } from '../ranges.js';

export interface StorageBackend {
  readonly name: 'disk' | 's3';
  /** Stores the stream under `key`; rejects (storing nothing) if the stream errors. */
  put(key: string, body: Readable): Promise<void>;
  /** The stored bytes, or a range of them. Rejects with NotFound if there is no such object. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  /** Removes the object and any partial upload; succeeds if there is nothing to remove. */
  delete(key: string): Promise<void>;
  /** For GET /health: throws when the store cannot be reached or written. */
  check(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

export class ObjectNotFound extends Error {}

/** Object keys are uuids from storage.blobs; anything else is a bug, refused loudly. */
export function assertKey(key: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(key)) throw new Error(`not an object key: ${JSON.stringify(key)}`);
  return key;
}

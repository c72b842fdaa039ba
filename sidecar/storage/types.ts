// The shapes the storage modules pass between them.
import type { Plinth } from '../core/context.js';
import type { StorageBackend } from './backends/adapter.js';

/** The storage feature's state, built once by service.ts and handed to every storage module. */
export interface Storage {
  plinth: Plinth;
  backend: StorageBackend;
  /** Keys being written by this process: the sweeper never touches them, however old. */
  writing: Set<string>;
  /** Uploads in progress per client address (PLINTH_MAX_UPLOADS_PER_ADDRESS). */
  uploadsByAddress: Map<string, number>;
}

/** A reserved object whose bytes are all stored, not yet committed. */
export interface WrittenObject {
  id: string;
  key: string;
  size: number;
  sha256: string;
}

/** A committed version, as the SQL lookups return it, ready to be sent. */
export interface StoredObject {
  key: string;
  size: number | string;
  sha256: string;
  content_type: string;
}

// Files owned by users: store_file and retrieve_file. Who may do what is decided in
// SQL (storage.begin_upload / commit_file / store_whole_file / find_file, run as the caller); this module moves bytes.
import type { IncomingMessage } from 'node:http';
import { asCaller, type Claims } from '../core/db.js';
import type { StoredObject, Storage } from './types.js';
import { upload, uploadWhole, WHOLE_AT_MOST } from './upload.js';

/** The exact body of a file that is absent or not the caller's (a fixed contract). */
export const FILE_NOT_FOUND = { message: 'File not found.' } as const;

export interface StoreFileInput {
  path: string;
  description: string | null;
  contentType: string;
}

/** Streams the request body into a new object version and makes it the caller's file at `path`. */
export async function storeFile(storage: Storage, claims: Claims, input: StoreFileInput, request: IncomingMessage): Promise<string> {
  const { backend } = storage;
  // A small body is held whole and stored with one transaction instead of two.
  if (backend.whole && Number(request.headers['content-length']) <= WHOLE_AT_MOST) {
    const { result } = await uploadWhole(storage, claims, { source: request, request }, {
      storeStatement: (tx, written) => tx`
        select storage.store_whole_file(${written.id}, ${backend.name}, ${input.path}, ${input.description}, ${written.size},
                                        ${written.sha256}, ${input.contentType}, ${storage.plinth.config.storage.userQuota}) as id`,
    });
    return result;
  }
  const { result } = await upload(storage, claims, { source: request, request }, {
    // Refuses callers who are not signed-in users before a single byte is stored.
    reserveStatement: (tx) => tx`select storage.begin_upload(${storage.backend.name}) as id`,
    commitStatement: (tx, written) => tx`
      select storage.commit_file(${written.id}, ${input.path}, ${input.description}, ${written.size},
                                 ${written.sha256}, ${input.contentType}) as id`,
  });
  return result;
}

export interface FoundFile extends StoredObject {
  path: string;
}

/** The caller's own file at `path`, or null (absent, or someone else's: even for an admin). */
export async function findFile(storage: Storage, claims: Claims, path: string): Promise<FoundFile | null> {
  const rows = await asCaller(storage.plinth.callerSql, claims, (tx) => tx<FoundFile[]>`select * from storage.find_file(${path})`);
  return rows[0] ?? null;
}

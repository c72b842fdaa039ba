// Bytes on the local disk, under the data directory: objects/<2 hex>/<key>. A put writes
// tmp/<key>.part, fsyncs it and renames it into place, so a crash never leaves a partial object
// under its final name; the sweeper deletes leftover .part files through delete(key).
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertKey, ObjectNotFound, type StorageBackend } from './adapter.js';
import type { ByteRange } from '../ranges.js';

/** Below this many free bytes the disk counts as full (GET /health reports storage down). */
const FULL_BELOW = 1024 * 1024;

export function diskBackend(root: string): StorageBackend {
  const tmpDir = path.join(root, 'tmp');
  const objectsDir = path.join(root, 'objects');
  fs.mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(objectsDir, { recursive: true, mode: 0o700 });

  const finalPath = (key: string) => path.join(objectsDir, assertKey(key).slice(0, 2), key);
  const partPath = (key: string) => path.join(tmpDir, `${assertKey(key)}.part`);

  async function fsyncDir(dir: string) {
    const fh = await fs.promises.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  return {
    name: 'disk',

    async put(key, body) {
      const part = partPath(key);
      const target = finalPath(key);
      try {
        await pipeline(body, fs.createWriteStream(part, { flags: 'wx', mode: 0o600, highWaterMark: 1024 * 1024 }));
        // fsync through a second descriptor: it flushes the file, whichever descriptor wrote it.
        const fh = await fs.promises.open(part, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      } catch (err) {
        await fs.promises.rm(part, { force: true });
        throw err;
      }
      await fs.promises.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await fs.promises.rename(part, target);
      await fsyncDir(path.dirname(target));
    },

    async get(key, range?: ByteRange) {
      // Open first, so a missing file is an error here rather than mid-response.
      let fh: fs.promises.FileHandle;
      try {
        fh = await fs.promises.open(finalPath(key), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ObjectNotFound(key);
        throw err;
      }
      return fh.createReadStream({ start: range?.start, end: range?.end, highWaterMark: 256 * 1024 }) as Readable;
    },

    async delete(key) {
      await fs.promises.rm(finalPath(key), { force: true });
      await fs.promises.rm(partPath(key), { force: true });
    },

    async check() {
      await fs.promises.access(objectsDir, fs.constants.W_OK);
      await fs.promises.access(tmpDir, fs.constants.W_OK);
      // What an upload may still use: blocks available to unprivileged writers on this filesystem.
      const fsStats = await fs.promises.statfs(root);
      const free = fsStats.bavail * fsStats.bsize;
      if (free < FULL_BELOW) throw new Error(`storage is full: ${free} bytes free on the disk of ${root}`);
      return { backend: 'disk', free_bytes: free };
    },

    async close() {},

    // The staged file is the object: at the end it is fsync'd and renamed into place (it lives
    // under the same root, so the rename is atomic).
    staged: {
      minPiece: Infinity,
      async begin() {
        return null;
      },
      async storePiece() {
        throw new Error('the disk store takes staged objects whole');
      },
      async finish(key, _handle, _pieces, file, length) {
        const fh = await fs.promises.open(file, 'r+');
        try {
          await fh.truncate(length);
          await fh.sync();
        } finally {
          await fh.close();
        }
        const target = finalPath(key);
        await fs.promises.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        await fs.promises.rename(file, target);
        await fsyncDir(path.dirname(target));
      },
      async abandon() {},
    },
  };
}

// Bytes on the local disk, under the data directory: objects/<2 hex>/<key>. A put writes
// tmp/<key>.part, fsyncs it and renames it into place, so a crash never leaves a partial object
// under its final name; the sweeper deletes leftover .part files through delete(key). A small
// object held whole (whole.write) stays in tmp, complete and durable, until its version is
// committed; reads look there too until whole.publish has moved it into place.
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertKey, ObjectNotFound, type StorageBackend, type WholeWrites, type WrittenChunks } from './adapter.js';
import type { ByteRange } from '../ranges.js';
import { LocalFileStream } from './local-file.js';

/** Below this many free bytes the disk counts as full (GET /health reports storage down). */
const FULL_BELOW = 1024 * 1024;

/** Written bytes after which a flush to disk starts in the background, while writing goes on. */
const FLUSH_EVERY = 32 * 1024 * 1024;

/** tmp/<key>.part: a put in progress, or a whole object not yet published. */
const PART_NAME = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.part$/;

/** Bytes gathered before a write to the file (the rest is written when the body ends). */
const WRITE_AT_LEAST = 1024 * 1024;

// The file of a put is driven through plain descriptors and callbacks: each FileHandle promise
// costs more main-thread time than the system call it wraps, and a put makes several.
const fsp = {
  open: (file: string, flags: string, mode?: number) => new Promise<number>((res, rej) => fs.open(file, flags, mode, (e, fd) => (e ? rej(e) : res(fd)))),
  writev: (fd: number, buffers: Buffer[]) => new Promise<number>((res, rej) => fs.writev(fd, buffers, (e, n) => (e ? rej(e) : res(n)))),
  fsync: (fd: number) => new Promise<void>((res, rej) => fs.fsync(fd, (e) => (e ? rej(e) : res()))),
  fdatasync: (fd: number) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res()))),
  close: (fd: number) => new Promise<void>((res, rej) => fs.close(fd, (e) => (e ? rej(e) : res()))),
};

/** writev until every byte is written (a regular file may take fewer bytes than offered). */
async function writeAll(fd: number, buffers: Buffer[]): Promise<number> {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  let left = total;
  while (left > 0) {
    const bytesWritten = await fsp.writev(fd, buffers);
    left -= bytesWritten;
    if (left === 0) break;
    // Drop what was written and go on with the rest.
    let skip = bytesWritten;
    while (skip >= buffers[0].length) skip -= buffers.shift()!.length;
    buffers[0] = buffers[0].subarray(skip);
  }
  return total;
}

function isWrittenChunks(body: unknown): body is WrittenChunks {
  return typeof (body as Partial<WrittenChunks>).written === 'function';
}

/**
 * A new file (refused if it exists) that is fsynced before the stream finishes. Large files are
 * flushed as they are written: the disk works while the bytes still arrive, instead of all of
 * them waiting for one fsync at the end (for 1 GiB here: 0.55 s of the final fsync → ~0).
 * With `written`, each group of chunks goes there once it is in the file.
 */
function syncedFile(file: string, written?: WrittenChunks['written']): Writable {
  // Opened by the stream itself, so pipeline() listens for the body's errors from the start: a
  // body refused while the file was being opened would otherwise throw with no one listening.
  let fd = -1;
  let unflushed = 0;
  let flushing: Promise<void> | undefined;
  const flushInBackground = () => {
    if (flushing || unflushed < FLUSH_EVERY) return;
    unflushed = 0;
    flushing = fsp.fdatasync(fd).finally(() => (flushing = undefined));
    // An error here is found again by the final fsync, which the stream waits for.
    flushing.catch(() => {});
  };
  let held: Buffer[] = [];
  let heldBytes = 0;
  const writeHeld = async () => {
    if (held.length === 0) return;
    const buffers = held;
    held = [];
    heldBytes = 0;
    // writeAll trims the list it is given as the bytes go out; the chunks themselves are handed back whole.
    unflushed += await writeAll(fd, written ? buffers.slice() : buffers);
    flushInBackground();
    await written?.(buffers);
  };
  const close = () => {
    const open = fd;
    fd = -1;
    return open < 0 ? Promise.resolve() : fsp.close(open);
  };
  return new Writable({
    highWaterMark: 1024 * 1024,
    construct(done) {
      fsp.open(file, 'wx', 0o600).then((opened) => {
        fd = opened;
        done();
      }, done);
    },
    writev(chunks, done) {
      for (const c of chunks) {
        held.push(c.chunk as Buffer);
        heldBytes += (c.chunk as Buffer).length;
      }
      // Taken (and acknowledged) until there is enough for one large write: each write call
      // costs the main thread about as much for 64 KiB as for 1 MiB.
      if (heldBytes < WRITE_AT_LEAST) return done();
      writeHeld().then(() => done(), done);
    },
    final(done) {
      // The file is durable (data and size) before the rename that makes it visible.
      writeHeld()
        // A failed background flush is found again by the fsync (a failed write fails here).
        .then(() => Promise.resolve(flushing).catch(() => {}))
        .then(() => fsp.fsync(fd))
        .then(close)
        .then(() => done(), done);
    },
    destroy(err, done) {
      // A background flush may still use the descriptor: it is closed once that is over.
      Promise.resolve(flushing)
        .catch(() => {})
        .then(close)
        .then(() => done(err), () => done(err));
    },
  });
}

/**
 * fsync of a directory, shared: each caller gets an fsync that started after it asked (after its
 * rename), and everyone who asks while one runs shares the next. Concurrent uploads into one
 * directory then wait on at most two fsyncs instead of queueing one each.
 */
function directorySyncer(): (dir: string) => Promise<void> {
  const dirs = new Map<string, { running: Promise<void>; queued?: Promise<void> }>();
  async function syncNow(dir: string) {
    const fd = await fsp.open(dir, 'r');
    try {
      await fsp.fsync(fd);
    } finally {
      await fsp.close(fd);
    }
  }
  function start(dir: string): Promise<void> {
    const entry: { running: Promise<void>; queued?: Promise<void> } = { running: syncNow(dir) };
    dirs.set(dir, entry);
    // When it is over, the queued one (if any) takes the directory's entry over as it starts.
    const over = () => {
      if (!entry.queued) dirs.delete(dir);
    };
    entry.running.then(over, over);
    return entry.running;
  }
  return (dir) => {
    const entry = dirs.get(dir);
    if (!entry) return start(dir);
    if (!entry.queued) {
      const next = () => start(dir);
      entry.queued = entry.running.then(next, next);
    }
    return entry.queued;
  };
}

export function diskBackend(root: string): StorageBackend {
  const tmpDir = path.join(root, 'tmp');
  const objectsDir = path.join(root, 'objects');
  fs.mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(objectsDir, { recursive: true, mode: 0o700 });

  const finalPath = (key: string) => path.join(objectsDir, assertKey(key).slice(0, 2), key);
  const partPath = (key: string) => path.join(tmpDir, `${assertKey(key)}.part`);

  const fsyncDir = directorySyncer();
  // The objects/<2 hex> directories known to exist (there are at most 256; none is ever removed).
  const made = new Set<string>();
  async function renameIntoPlace(from: string, target: string, syncDir = true) {
    const dir = path.dirname(target);
    if (!made.has(dir)) {
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      made.add(dir);
    }
    try {
      await fs.promises.rename(from, target);
    } catch (err) {
      // The directory removed behind our back (an operator tidying up): make it again, once. (A
      // missing source fails the second rename the same way.)
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.promises.rename(from, target);
    }
    if (syncDir) await fsyncDir(dir);
  }

  /** The object's file: in place, or (a whole object not yet published) still in tmp. */
  async function openObject(key: string): Promise<fs.promises.FileHandle> {
    // The third try: publish() may move the file between the first two.
    for (const file of [finalPath(key), partPath(key), finalPath(key)]) {
      try {
        return await fs.promises.open(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    throw new ObjectNotFound(key);
  }

  const whole: WholeWrites = {
    async write(key, chunks) {
      const part = partPath(key);
      const fd = await fsp.open(part, 'wx', 0o600);
      try {
        try {
          await writeAll(fd, chunks.slice());
          await fsp.fsync(fd);
        } finally {
          await fsp.close(fd);
        }
        // The name too is durable before the commit that makes it a version.
        await fsyncDir(tmpDir);
      } catch (err) {
        await fs.promises.rm(part, { force: true });
        throw err;
      }
    },

    async publish(key) {
      try {
        // No directory fsync: if a crash undoes the move, the file is still found in tmp.
        await renameIntoPlace(partPath(key), finalPath(key), false);
      } catch (err) {
        // Moved already, or removed as a superseded version: nothing left to publish.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    },

    async pending(seconds) {
      const cutoff = Date.now() - seconds * 1000;
      const keys: string[] = [];
      for (const name of await fs.promises.readdir(tmpDir)) {
        const key = PART_NAME.exec(name)?.[1];
        if (!key) continue;
        const stat = await fs.promises.stat(path.join(tmpDir, name)).catch(() => null);
        if (stat && stat.mtimeMs < cutoff) keys.push(key);
      }
      return keys;
    },
  };

  return {
    name: 'disk',
    handsBackWritten: true,

    async put(key, body) {
      const part = partPath(key);
      const target = finalPath(key);
      try {
        await pipeline(body, syncedFile(part, isWrittenChunks(body) ? (chunks) => body.written(chunks) : undefined));
      } catch (err) {
        await fs.promises.rm(part, { force: true });
        throw err;
      }
      await renameIntoPlace(part, target);
    },

    async get(key, range?: ByteRange) {
      // Open first, so a missing file is an error here rather than mid-response.
      const fh = await openObject(key);
      return new LocalFileStream(fh, range);
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

    whole,

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
        await renameIntoPlace(file, finalPath(key));
      },
      async abandon() {},
    },
  };
}

// A stored file's bytes as a stream (what every reader of get() takes), which can also write itself
// to an HTTP response through a few reused buffers. Node's file streams allocate a new buffer per
// read, and V8 counts those bytes as external memory: at the rate a download runs (hundreds of MiB
// a second), every 64 MiB of them starts a full garbage collection, 5–20 ms each on the sidecar's
// heap, that frees little more than the buffers themselves. Sent from reused buffers, a download
// allocates nothing per chunk.
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { StoredBytes } from './adapter.js';

/** Bytes read from the file at a time. */
const CHUNK = 256 * 1024;

/** Buffers kept between downloads: two per download in flight, for a few of them at once. */
const POOL_MAX = 16;
const pool: Buffer[] = [];

// fs.ReadStream's types name no constructor; at run time it takes (path, options), and a
// FileHandle as `fd` in place of the path.
const FileReadStream = fs.ReadStream as unknown as new (path: null, options: { fd: FileHandle; start?: number; end?: number; highWaterMark: number }) => fs.ReadStream;

export class LocalFileStream extends FileReadStream implements StoredBytes {
  /** First byte, and the last one (Infinity: to the end of the file). */
  private readonly first: number;
  private readonly last: number;

  constructor(
    private readonly file: FileHandle,
    range?: { start: number; end: number },
  ) {
    super(null, { fd: file, start: range?.start, end: range?.end, highWaterMark: CHUNK });
    this.first = range?.start ?? 0;
    this.last = range?.end ?? Infinity;
  }

  /**
   * Writes `length` bytes (the answer's Content-Length; headers are already set on `res`) and ends
   * the response, reading each chunk while the one before it is being sent. Settles once the
   * response is over; the file is closed then. A response closed early (the client went away)
   * stops it; a read error, or a file that ends before `length` bytes, destroys the response, which
   * is all that can be done once headers are sent, and rejects with that error.
   */
  async writeTo(res: ServerResponse, length: number): Promise<void> {
    const buffers = [pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK), pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK)];
    // The write each buffer is in, settled once the socket has taken its bytes (or is gone).
    const sent: (Promise<void> | null)[] = [null, null];
    let closed = false;
    let complete = false;
    const onClose = () => (closed = true);
    res.once('close', onClose);
    const whenSent = (chunk: Buffer) =>
      new Promise<void>((resolve) => {
        // A response destroyed while the write waits never calls back: its 'close' ends the wait.
        const done = () => {
          res.off('close', done);
          resolve();
        };
        res.once('close', done);
        res.write(chunk, done);
      });
    // The answer promises `length` bytes (its Content-Length): a file that ends before them is an error.
    const last = Number.isFinite(length) ? this.first + length - 1 : this.last;
    try {
      let position = this.first;
      for (let i = 0; position <= last && !closed; i ^= 1) {
        if (sent[i]) await sent[i];
        if (closed) break;
        const want = Math.min(CHUNK, last + 1 - position);
        const { bytesRead } = await this.file.read(buffers[i], 0, want, position);
        if (bytesRead === 0) {
          if (last === Infinity) break;
          throw new Error(`the stored file ended ${last + 1 - position} bytes short of the answer`);
        }
        position += bytesRead;
        sent[i] = whenSent(bytesRead === CHUNK ? buffers[i] : buffers[i].subarray(0, bytesRead));
      }
      await Promise.all(sent);
      if (!closed) {
        res.end();
        complete = true;
      }
    } catch (err) {
      // Headers are sent: cutting the connection is the one way left to tell the client.
      res.destroy();
      throw err;
    } finally {
      res.off('close', onClose);
      // The buffers of a response cut short may still be named by a cancelled write: left to the collector.
      if (complete) for (const b of buffers) if (pool.length < POOL_MAX) pool.push(b);
      // Closes the file. The answer is over by now: a failed close has no one left to tell.
      this.on('error', () => {});
      this.destroy();
    }
  }
}

// SHA-256 of an upload's bytes, computed off the main thread for large files: on the main thread
// hashing was half of the sidecar's busy time during a 1 GiB upload, and it delayed every other
// request meanwhile. Bytes are copied into 1 MiB batches that are handed (transferred, not copied)
// to one shared worker thread; a file that ends within the first batch is hashed here instead,
// which is cheaper than a round trip to the worker. Chunks the caller is done with (a store that
// has written them) can be handed over instead, without the copy: see take(). At most a few
// batches are in flight per upload, so memory stays flat and a slow hasher slows the upload
// instead of filling memory. A resumable upload's hash waits parked between its PATCHes, its
// state in the worker.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const BATCH = 1024 * 1024;
const MAX_IN_FLIGHT = 4;
/** The first batch's size; it grows ×4 up to BATCH. */
const FIRST = 16 * 1024;
const EMPTY = Buffer.alloc(0);

// Plain JavaScript evaluated in the worker, so it runs without the TypeScript loader.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id);
    if (!h) hashes.set(m.id, (h = createHash('sha256')));
    h.update(new Uint8Array(m.buf, 0, m.len));
    parentPort.postMessage({ op: 'ack', id: m.id, buf: m.buf }, [m.buf]);
  } else if (m.op === 'take') {
    let h = hashes.get(m.id);
    if (!h) hashes.set(m.id, (h = createHash('sha256')));
    for (const buf of m.bufs) h.update(new Uint8Array(buf));
    // Sent back to be freed where they came from: this thread allocates too little to collect
    // them soon, and until it does, their memory stays taken.
    parentPort.postMessage({ op: 'ack', id: m.id, buf: null, bufs: m.bufs }, m.bufs);
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) ?? createHash('sha256');
    hashes.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, hex: h.digest('hex') });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
  }
});
`;

type Reply = { op: 'ack'; id: number; buf: ArrayBuffer | null } | { op: 'digest'; id: number; hex: string };

let worker: Worker | undefined;
let nextId = 1;
const open = new Map<number, StreamHash>();

function hasher(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  // An idle hasher never keeps the process alive (see track()).
  w.unref();
  w.on('message', (m: Reply) => open.get(m.id)?.reply(m));
  const failed = (err: Error) => {
    if (worker === w) worker = undefined;
    for (const h of [...open.values()]) h.fail(err);
  };
  w.on('error', failed);
  w.on('exit', (code) => failed(new Error(`the hashing thread exited with code ${code}`)));
  worker = w;
  return w;
}

/** Hashes in progress keep the process alive until they are done; an idle hasher does not. */
function track(id: number, h: StreamHash | undefined) {
  if (h) open.set(id, h);
  else open.delete(id);
  if (open.size > 0) worker?.ref();
  else worker?.unref();
}

/** Whether `memory` lies under exactly one of `chunks`. */
function onlyOnce(chunks: Buffer[], memory: ArrayBufferLike): boolean {
  let seen = 0;
  for (const c of chunks) if (c.buffer === memory && ++seen > 1) return false;
  return true;
}

/** An incremental SHA-256 whose update() may ask the caller to wait (backpressure). */
export class StreamHash {
  // Grows to BATCH as bytes come: a small file never pays for (nor makes the collector chase)
  // a 1 MiB buffer it does not fill.
  private batch = EMPTY;
  private used = 0;
  private id = 0;
  private inFlight = 0;
  private spare: ArrayBuffer[] = [];
  private waiting?: { resolve(): void; reject(err: Error): void };
  private drained?: { resolve(): void; reject(err: Error): void };
  private result?: { resolve(hex: string): void; reject(err: Error): void };
  private error?: Error;
  /** The thread holding this hash's state: if it dies, the hash is lost, even while parked. */
  private thread?: Worker;

  /** Takes a copy of `chunk`; returns a promise when the caller should wait before the next one. */
  update(chunk: Buffer): Promise<void> | undefined {
    this.copy(chunk);
    return this.backpressure();
  }

  /**
   * Hashes `chunks`, which the caller will not touch again: a chunk that is the whole of its memory
   * (as Node's HTTP parser hands a body's chunks) goes to the hashing thread as it is, taking that
   * memory away (the Buffer becomes empty); any other is copied, as update() does. A group smaller
   * than a batch is copied whole, so a small file is still hashed here. Returns a promise when the
   * caller should wait before the next call.
   */
  take(chunks: Buffer[]): Promise<void> | undefined {
    let total = 0;
    for (const c of chunks) total += c.length;
    if (total < BATCH) {
      for (const c of chunks) this.copy(c);
      return this.backpressure();
    }
    const owned: ArrayBuffer[] = [];
    const sendOwned = () => {
      if (owned.length === 0 || this.error) return;
      // Bytes copied into the batch before these come first: the thread takes messages in order.
      if (this.used > 0) this.send();
      this.post({ op: 'take', id: this.id, bufs: owned.slice() }, owned.splice(0));
    };
    for (const c of chunks) {
      const memory = c.buffer;
      const whole = memory instanceof ArrayBuffer && c.byteOffset === 0 && c.byteLength === memory.byteLength && c.byteLength > 0;
      // Memory given twice is copied each time: taking it the first time would empty the second.
      if (whole && onlyOnce(chunks, memory)) {
        owned.push(memory);
      } else {
        sendOwned();
        this.copy(c);
      }
    }
    sendOwned();
    return this.backpressure();
  }

  private copy(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.error) {
      const left = chunk.length - at;
      if (this.batch.length < BATCH && this.used + left > this.batch.length) this.grow(this.used + left);
      const n = Math.min(left, this.batch.length - this.used);
      chunk.copy(this.batch, this.used, at, at + n);
      this.used += n;
      at += n;
      if (this.used === BATCH) this.send();
    }
  }

  private backpressure(): Promise<void> | undefined {
    if (this.error) return Promise.reject(this.error);
    if (this.inFlight < MAX_IN_FLIGHT) return undefined;
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  private grow(needed: number) {
    let size = Math.max(FIRST, this.batch.length);
    while (size < needed && size < BATCH) size *= 4;
    const bigger = Buffer.allocUnsafeSlow(Math.min(size, BATCH));
    this.batch.copy(bigger, 0, 0, this.used);
    this.batch = bigger;
  }

  async digest(): Promise<string> {
    if (this.error) throw this.error;
    // Everything fit in the first batch: hashing it here beats a round trip to the worker.
    if (this.id === 0) return createHash('sha256').update(this.batch.subarray(0, this.used)).digest('hex');
    if (this.used > 0) this.send();
    // A parked hash whose thread has died since: its state is gone with it.
    if (!this.error && this.thread !== worker) this.fail(new Error('the hashing thread exited during this hash'));
    if (this.error) throw this.error;
    if (!open.has(this.id)) track(this.id, this);
    const hex = new Promise<string>((resolve, reject) => (this.result = { resolve, reject }));
    this.thread!.postMessage({ op: 'digest', id: this.id });
    return hex;
  }

  /** The upload failed: the worker forgets this hash. */
  drop(): void {
    if (this.id === 0) return;
    track(this.id, undefined);
    if (this.thread === worker) worker?.postMessage({ op: 'drop', id: this.id });
    this.waiting?.resolve();
    this.drained?.resolve();
  }

  /**
   * Between two parts of one stream (a resumable upload's PATCHes): every byte so far is hashed,
   * and until the next update() this hash holds no buffer and does not keep the process alive.
   */
  async park(): Promise<void> {
    if (this.error) throw this.error;
    if (this.used > 0) this.send();
    if (this.inFlight > 0) await new Promise<void>((resolve, reject) => (this.drained = { resolve, reject }));
    if (this.error) throw this.error;
    this.batch = EMPTY;
    this.spare = [];
    if (this.id !== 0) track(this.id, undefined);
  }

  private send() {
    const buf = this.batch.buffer as ArrayBuffer;
    if (!this.post({ op: 'update', id: this.id, buf, len: this.used }, [buf])) return;
    const reused = this.spare.pop();
    this.batch = reused ? Buffer.from(reused) : EMPTY;
    this.used = 0;
  }

  /** One message to the hashing thread, `transfer` moved with it; false if the hash has failed. */
  private post(message: { op: 'update' | 'take'; id: number } & Record<string, unknown>, transfer: ArrayBuffer[]): boolean {
    const thread = hasher();
    if (this.id === 0) message.id = this.id = nextId++;
    if (this.thread && this.thread !== thread) {
      // A new thread never saw this hash's earlier bytes.
      this.fail(new Error('the hashing thread exited during this hash'));
      return false;
    }
    this.thread = thread;
    if (!open.has(this.id)) track(this.id, this);
    thread.postMessage(message, transfer);
    this.inFlight++;
    return true;
  }

  /** @internal a message from the worker about this hash. */
  reply(m: Reply) {
    if (m.op === 'ack') {
      this.inFlight--;
      if (m.buf?.byteLength === BATCH) this.spare.push(m.buf);
      if (this.inFlight < MAX_IN_FLIGHT && this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w.resolve();
      }
      if (this.inFlight === 0 && this.drained) {
        const d = this.drained;
        this.drained = undefined;
        d.resolve();
      }
    } else {
      track(this.id, undefined);
      this.result?.resolve(m.hex);
    }
  }

  /** @internal the worker died: this hash cannot be finished. */
  fail(err: Error) {
    this.error = err;
    track(this.id, undefined);
    this.waiting?.reject(err);
    this.drained?.reject(err);
    this.result?.reject(err);
  }
}

// A minimal streaming tar (ustar) writer and reader: no tar package is installed, and a backup
// needs only regular files whose sizes are known before their bytes are written. Sizes of 8 GiB
// and more use the base-256 size field that GNU tar and bsdtar read.
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';

export class ArchiveError extends Error {}

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, size: number, mtime: number): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > 100) throw new Error(`tar member name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  nameBytes.copy(h, 0);
  h.write(octal(0o600, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  if (size < 0o77777777777) h.write(octal(size, 12), 124, 'ascii');
  else {
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(size), 128);
  }
  h.write(octal(Math.floor(mtime / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function parseSize(field: Buffer): number {
  if (field[0] & 0x80) {
    const n = field.readBigUInt64BE(field.length - 8);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ArchiveError('archive is corrupted: a member size is out of range');
    return Number(n);
  }
  const text = field.toString('ascii').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]*$/.test(text)) throw new ArchiveError('archive is corrupted: a tar header is damaged');
  return text === '' ? 0 : parseInt(text, 8);
}

/** Writes tar members to `out`, honouring its backpressure, and hashes each member's bytes. */
export class TarWriter {
  private readonly mtime = Date.now();
  constructor(private readonly out: Writable) {}

  private async write(chunk: Buffer): Promise<void> {
    if (this.out.destroyed || this.out.writableEnded) throw new Error('the backup output was closed');
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          this.out.off('drain', onDrain);
          this.out.off('error', done);
          this.out.off('close', onClose);
          err ? reject(err) : resolve();
        };
        const onDrain = () => done();
        const onClose = () => done(new Error('the backup output was closed'));
        this.out.once('drain', onDrain);
        this.out.once('error', done);
        this.out.once('close', onClose);
      });
    }
  }

  /**
   * One member of exactly `size` bytes from `source`; returns its SHA-256 (hex). A source that
   * yields more or fewer bytes throws `mismatch(actual)`'s error: the archive is then unusable.
   */
  async add(name: string, size: number, source: AsyncIterable<Buffer> | Buffer, mismatch?: (actual: number) => Error): Promise<string> {
    await this.write(header(name, size, this.mtime));
    const hash = createHash('sha256');
    let written = 0;
    const chunks = Buffer.isBuffer(source) ? [source] : source;
    for await (const chunk of chunks) {
      written += chunk.length;
      if (written > size) throw mismatch?.(written) ?? new Error(`member ${name} is longer than ${size} bytes`);
      hash.update(chunk);
      await this.write(chunk);
    }
    if (written !== size) throw mismatch?.(written) ?? new Error(`member ${name} is ${written} bytes, expected ${size}`);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) await this.write(ZEROS.subarray(0, pad));
    return hash.digest('hex');
  }

  /** The two zero blocks that end a tar archive. */
  async finish(): Promise<void> {
    await this.write(ZEROS);
  }
}

/** Pulls exact byte counts out of a chunked stream, holding at most one chunk in memory. */
export class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Buffer>;
  private ended = false;
  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.it.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, next.value]) : next.value;
    return true;
  }

  /** Exactly n bytes (n ≤ a few blocks), or null at a clean end of input before any byte. */
  async exact(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (!(await this.fill())) {
        if (this.buf.length === 0) return null;
        throw new ArchiveError('archive is truncated');
      }
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Up to `max` bytes, as they arrive; throws when the input ends first. */
  async *take(size: number): AsyncGenerator<Buffer> {
    let left = size;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) throw new ArchiveError('archive is truncated');
      const n = Math.min(left, this.buf.length);
      const out = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
      left -= n;
      yield out;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.take(n));
  }
}

export interface TarMember {
  name: string;
  size: number;
  /** The member's bytes; read it to the end (or call skip) before asking for the next member. */
  body: AsyncIterable<Buffer>;
  /** The SHA-256 of the bytes read so far from `body` (complete once it has been read through). */
  sha256(): string;
}

/** The members of a tar stream, one at a time. Damage and truncation throw ArchiveError. */
export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarMember> {
  const input = new ByteSource(source);
  for (;;) {
    const h = await input.exact(BLOCK);
    if (h === null) throw new ArchiveError('archive is truncated');
    if (h.every((b) => b === 0)) return;
    const stored = h.subarray(148, 156).toString('ascii').replace(/[\0 ]+$/, '').trim();
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (!/^[0-7]+$/.test(stored) || parseInt(stored, 8) !== sum) throw new ArchiveError('archive is corrupted: a tar header checksum does not match (not a Plinth backup, or damaged)');
    if (h.subarray(257, 262).toString('ascii') !== 'ustar') throw new ArchiveError('archive is not a ustar archive');
    const type = String.fromCharCode(h[156] || 48);
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseSize(h.subarray(124, 136));
    if (type !== '0') throw new ArchiveError(`archive is corrupted: unexpected member type ${JSON.stringify(type)} for ${name}`);
    const hash = createHash('sha256');
    let done = false;
    const body = (async function* () {
      for await (const chunk of input.take(size)) {
        hash.update(chunk);
        yield chunk;
      }
      done = true;
    })();
    yield { name, size, body, sha256: () => hash.copy().digest('hex') };
    if (!done) for await (const _ of body);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) await input.skip(pad);
  }
}

// The bucket's limits applied to bytes as they stream: the size limit (413 at the first byte over
// it) and the allowed types, judged on the type the first bytes show (415). Either refusal fails
// the stream, so the upload keeps nothing.
import { Transform, type TransformCallback } from 'node:stream';
import { StorageApiError } from './errors.js';
import { effectiveType, mimeAllowed, sniff, SNIFF_BYTES } from './limits.js';

export function tooLarge(limit: number): StorageApiError {
  return new StorageApiError(413, 'EntityTooLarge', `The object exceeded the maximum allowed size of ${limit} bytes (the bucket's file_size_limit)`);
}

export function typeRefused(type: string, allowed: readonly string[]): StorageApiError {
  return new StorageApiError(415, 'InvalidMimeType', `mime type ${type} is not supported: this bucket allows ${allowed.join(', ')}`);
}

export class LimitGuard extends Transform {
  private seen = 0;
  private head: Buffer[] = [];
  private headBytes = 0;
  private decided = false;
  /** The type the object is stored as, known once the first bytes (or the end) went through. */
  mimetype: string;

  constructor(
    private readonly limit: number | null,
    private readonly allowed: readonly string[] | null,
    private readonly declared: string,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.mimetype = declared;
  }

  private decide(): Error | null {
    this.decided = true;
    const head = Buffer.concat(this.head, this.headBytes);
    this.mimetype = effectiveType(this.declared, sniff(head));
    if (!mimeAllowed(this.mimetype, this.allowed)) return typeRefused(this.mimetype, this.allowed ?? []);
    this.head = [];
    this.push(head);
    return null;
  }

  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.seen += chunk.length;
    if (this.limit !== null && this.seen > this.limit) return done(tooLarge(this.limit));
    if (this.decided) return done(null, chunk);
    this.head.push(chunk);
    this.headBytes += chunk.length;
    if (this.headBytes < SNIFF_BYTES) return done();
    done(this.decide());
  }

  _flush(done: TransformCallback) {
    done(this.decided ? null : this.decide());
  }
}

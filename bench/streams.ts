// Byte sources and sinks shared by the upload/download figures: the same generated stream feeds
// Plinth and the baseline, and downloads are drained the same way on both sides.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { withLoad } from './machine-load.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const BLOCK = randomBytes(MiB);

/** `size` bytes of incompressible data, generated as it is read (nothing held in memory). */
export function generated(size: number): Readable {
  let left = size;
  return new Readable({
    highWaterMark: MiB,
    read() {
      if (left === 0) return void this.push(null);
      const n = Math.min(left, BLOCK.length);
      left -= n;
      this.push(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n));
    },
  });
}

/** GETs `url` and counts the bytes; throws unless the status is 200 and the length is `expected`. */
export async function drain(url: string, headers: Record<string, string>, expected?: number): Promise<number> {
  const res = await request(url, { headers });
  let n = 0;
  for await (const chunk of res.body) n += (chunk as Buffer).length;
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`);
  if (expected !== undefined && n !== expected) throw new Error(`GET ${url}: ${n} bytes, expected ${expected}`);
  return n;
}

/** POSTs a generated body of `size` bytes; returns the response body as text, throws on non-2xx. */
export async function upload(url: string, headers: Record<string, string>, size: number, timeoutSeconds = 300): Promise<string> {
  const res = await request(url, {
    signal: AbortSignal.timeout(timeoutSeconds * 1000),
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), ...headers },
    body: generated(size),
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`POST ${url}: ${res.statusCode} ${text.slice(0, 300)}`);
  return text;
}

export async function timed<T>(fn: () => Promise<T>, label = 'timed'): Promise<{ seconds: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await withLoad(label, fn);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, value };
}

// StreamHash (sidecar/storage/hashing.ts): the SHA-256 of an upload, hashed here for small files
// and on a worker thread for large ones, must equal the plain digest whatever the chunking.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StreamHash } from '../sidecar/storage/hashing.ts';

async function streamed(data: Buffer, chunk: number): Promise<string> {
  const h = new StreamHash();
  for (let at = 0; at < data.length; at += chunk) await h.update(data.subarray(at, at + chunk));
  return h.digest();
}

describe('StreamHash', () => {
  const MiB = 1024 * 1024;
  it.each([
    ['empty', 0, 1],
    ['4 KiB', 4096, 4096],
    ['exactly one batch', MiB, 65536],
    ['one batch and a byte', MiB + 1, 65536],
    ['9.5 MiB in odd chunks (backpressure)', 9.5 * MiB, 70001],
    ['9.5 MiB in chunks larger than a batch', 9.5 * MiB, 3 * MiB + 7],
  ])('%s equals the plain SHA-256', async (_name, size, chunk) => {
    const data = randomBytes(size);
    expect(await streamed(data, chunk)).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('keeps concurrent hashes apart', async () => {
    const a = randomBytes(5 * 1024 * 1024);
    const b = randomBytes(5 * 1024 * 1024);
    const [ha, hb] = await Promise.all([streamed(a, 65536), streamed(b, 100000)]);
    expect([ha, hb]).toEqual([createHash('sha256').update(a).digest('hex'), createHash('sha256').update(b).digest('hex')]);
  });

  it('a hash parked between parts (a resumable upload\'s PATCHes) continues where it stopped', async () => {
    const data = randomBytes(6 * 1024 * 1024 + 300);
    const h = new StreamHash();
    const cuts = [0, 100, 2.5 * 1024 * 1024, 2.5 * 1024 * 1024 + 1, 6 * 1024 * 1024, data.length];
    for (let i = 1; i < cuts.length; i++) {
      for (let at = cuts[i - 1]; at < cuts[i]; at += 65536) await h.update(data.subarray(at, Math.min(at + 65536, cuts[i])));
      await h.park();
    }
    expect(await h.digest()).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a parked hash that is dropped leaves the others working', async () => {
    const parked = new StreamHash();
    await parked.update(randomBytes(1536 * 1024));
    await parked.park();
    parked.drop();
    const data = randomBytes(3 * 1024 * 1024);
    expect(await streamed(data, 100000)).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a dropped hash leaves the others working', async () => {
    const dropped = new StreamHash();
    await dropped.update(randomBytes(3 * 1024 * 1024));
    dropped.drop();
    const data = randomBytes(2 * 1024 * 1024 + 5);
    expect(await streamed(data, 65536)).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

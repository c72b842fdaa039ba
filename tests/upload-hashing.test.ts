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

  it('take() hashes chunks handed over, owned or shared, in order with update()', async () => {
    const data = randomBytes(7 * MiB + 12345);
    const expected = createHash('sha256');
    const h = new StreamHash();
    const owned: Buffer[] = [];
    const shared: Buffer[] = [];
    let at = 0;
    const next = (n: number, own: boolean) => {
      const piece = data.subarray(at, (at += n));
      // A chunk that is the whole of its memory (as the HTTP parser gives), or a view into a larger one.
      const chunk = own ? Buffer.from(piece) : Buffer.concat([Buffer.alloc(3), piece]).subarray(3);
      (own ? owned : shared).push(chunk);
      return chunk;
    };
    const give = (chunks: Buffer[]) => {
      for (const c of chunks) expected.update(c);
      return h.take(chunks);
    };
    const copy = (chunk: Buffer) => {
      expected.update(chunk);
      return h.update(chunk);
    };
    await copy(next(1000, false));
    await give([next(65536, true), next(70001, false), next(65536, true), next(2 * MiB, true)]);
    await give([next(4096, true), next(100, false)]); // smaller than a batch: copied
    await copy(next(MiB + 5, false));
    const again = next(65536, true);
    await give([again, next(3 * MiB, true), again]); // the same memory twice in one group: its bytes count twice
    await give([next(data.length - at, true)]);
    expect(at).toBe(data.length);
    expect(await h.digest()).toBe(expected.digest('hex'));
    expect(again.length).toBe(65536);
    // The large owned chunks went over without a copy (their memory is gone); shared ones are intact.
    expect(owned.filter((c) => c.length === 0).length).toBeGreaterThanOrEqual(4);
    expect(shared.every((c) => c.length > 0)).toBe(true);
  });

  it('take() of a small file only copies, and hashes it here', async () => {
    const data = randomBytes(300 * 1024);
    const h = new StreamHash();
    const chunks = [Buffer.from(data.subarray(0, 200 * 1024)), Buffer.from(data.subarray(200 * 1024))];
    await h.take(chunks);
    expect(chunks.map((c) => c.length)).toEqual([200 * 1024, 100 * 1024]);
    expect(await h.digest()).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a dropped hash leaves the others working', async () => {
    const dropped = new StreamHash();
    await dropped.update(randomBytes(3 * 1024 * 1024));
    dropped.drop();
    const data = randomBytes(2 * 1024 * 1024 + 5);
    expect(await streamed(data, 65536)).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

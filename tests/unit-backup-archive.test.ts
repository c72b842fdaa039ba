// The backup archive's pure parts: the streaming tar writer and reader, and the chunked
// passphrase encryption. Table-driven, no stack.
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { ArchiveError, readTar, TarWriter } from '../sidecar/backup/archive.ts';
import { decryptStream, encryptStream } from '../sidecar/backup/crypto.ts';
import { checkHeader, compareVersions, migrationSections } from '../sidecar/backup/manifest.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of source) parts.push(c);
  return Buffer.concat(parts);
}

async function tarOf(members: [string, Buffer][]): Promise<Buffer> {
  const out = new PassThrough();
  const done = collect(out);
  const tar = new TarWriter(out);
  for (const [name, body] of members) expect(await tar.add(name, body.length, body)).toBe(sha(body));
  await tar.finish();
  out.end();
  return done;
}

async function untar(bytes: Buffer, chunk = 1000): Promise<[string, Buffer, string][]> {
  const parts = Array.from({ length: Math.ceil(bytes.length / chunk) }, (_, i) => bytes.subarray(i * chunk, (i + 1) * chunk));
  const out: [string, Buffer, string][] = [];
  for await (const m of readTar(Readable.from(parts))) {
    const body = await collect(m.body);
    out.push([m.name, body, m.sha256()]);
  }
  return out;
}

describe('tar', () => {
  test.each([0, 1, 511, 512, 513, 70_000])('a %i-byte member round-trips, read in odd-sized chunks', async (size) => {
    const body = randomBytes(size);
    const bytes = await tarOf([['a.json', Buffer.from('{}')], [`objects/${size}`, body], ['manifest.json', Buffer.from('[]')]]);
    expect(bytes.length % 512).toBe(0);
    const got = await untar(bytes, 333);
    expect(got.map(([n]) => n)).toEqual(['a.json', `objects/${size}`, 'manifest.json']);
    expect(got[1][1].equals(body)).toBe(true);
    expect(got[1][2]).toBe(sha(body));
  });

  test('members are skipped when not read', async () => {
    const bytes = await tarOf([['one', randomBytes(2000)], ['two', Buffer.from('x')]]);
    const names: string[] = [];
    for await (const m of readTar(Readable.from([bytes]))) names.push(m.name);
    expect(names).toEqual(['one', 'two']);
  });

  test.each([
    ['cut inside a member', (b: Buffer) => b.subarray(0, 700), /truncated/],
    ['cut before the end blocks', (b: Buffer) => b.subarray(0, b.length - 1024), /truncated/],
    ['a damaged header', (b: Buffer) => Buffer.concat([Buffer.from('X'), b.subarray(1)]), /header checksum/],
    ['not a tar at all', () => randomBytes(2048), /header checksum/],
    ['empty input', () => Buffer.alloc(0), /truncated/],
  ])('%s → ArchiveError', async (_what, damage, message) => {
    const bytes = damage(await tarOf([['one', randomBytes(1000)]]));
    await expect(untar(bytes)).rejects.toThrow(ArchiveError);
    await expect(untar(bytes)).rejects.toThrow(message);
  });

  test('a source longer or shorter than declared is refused while writing', async () => {
    const tar = new TarWriter(new PassThrough().resume());
    await expect(tar.add('x', 3, Buffer.from('four'))).rejects.toThrow(/longer/);
    await expect(new TarWriter(new PassThrough().resume()).add('x', 5, Buffer.from('four'))).rejects.toThrow(/expected 5/);
  });
});

describe('encryption', () => {
  const CHUNK = 256 * 1024;
  const encrypt = (plain: Buffer, pass = 'pass phrase', pieces = 7) =>
    collect(encryptStream(pass)(Readable.from(Array.from({ length: pieces }, (_, i) => plain.subarray(Math.floor((i * plain.length) / pieces), Math.floor(((i + 1) * plain.length) / pieces))))));
  const decrypt = (sealed: Buffer, pass = 'pass phrase') => collect(decryptStream(pass)(Readable.from([sealed])));

  test.each([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])('%i bytes round-trip', async (size) => {
    const plain = randomBytes(size);
    const sealed = await encrypt(plain);
    expect(sealed.includes(plain.subarray(0, Math.min(64, size))) && size >= 64).toBe(false);
    expect((await decrypt(sealed)).equals(plain)).toBe(true);
  });

  test('two encryptions of the same bytes differ (random salt)', async () => {
    const plain = randomBytes(1000);
    expect((await encrypt(plain)).equals(await encrypt(plain))).toBe(false);
  });

  const frame = CHUNK + 5 + 16;
  const HEADER = 8 + 4 + 16 + 32;
  test.each([
    ['a wrong passphrase', (s: Buffer) => s, 'not the pass phrase', /wrong passphrase/],
    ['a flipped byte', (s: Buffer) => ((s[HEADER + 100] ^= 1), s), undefined, /chunk 0 failed authentication/],
    ['the last chunk dropped', (s: Buffer) => s.subarray(0, HEADER + 2 * frame), undefined, /truncated/],
    ['cut mid-chunk', (s: Buffer) => s.subarray(0, HEADER + frame + 100), undefined, /truncated/],
    ['two chunks swapped', (s: Buffer) => Buffer.concat([s.subarray(0, HEADER), s.subarray(HEADER + frame, HEADER + 2 * frame), s.subarray(HEADER, HEADER + frame), s.subarray(HEADER + 2 * frame)]), undefined, /chunk 0 failed authentication/],
    ['bytes after the end', (s: Buffer) => Buffer.concat([s, Buffer.from('x')]), undefined, /data follows/],
    ['a damaged salt', (s: Buffer) => ((s[15] ^= 1), s), undefined, /wrong passphrase/],
  ])('%s is refused', async (_what, damage, pass, message) => {
    const sealed = damage(Buffer.from(await encrypt(randomBytes(2 * CHUNK + 10))));
    await expect(decrypt(sealed, pass)).rejects.toThrow(ArchiveError);
    await expect(decrypt(sealed, pass)).rejects.toThrow(message);
  });
});

describe('manifest helpers', () => {
  test.each([
    ['0.1.0', '0.1.0', 0],
    ['0.2.0', '0.10.0', -1],
    ['1.0', '0.9.9', 1],
    ['1.0.0-beta.1', '1.0.0', 0],
  ])('compareVersions(%s, %s) = %i', (a, b, want) => {
    expect(compareVersions(a, b)).toBe(want);
  });

  test('checkHeader refuses a newer Plinth or format, and a malformed header', () => {
    const h = { format: 1, plinthVersion: '0.1.0', migrations: [], tables: [] };
    expect(checkHeader(h, '0.1.0')).toBe(h);
    expect(() => checkHeader({ ...h, plinthVersion: '0.2.0' }, '0.1.0')).toThrow(/newer Plinth/);
    expect(() => checkHeader({ ...h, format: 2 }, '0.1.0')).toThrow(/newer Plinth/);
    expect(() => checkHeader({ nope: true }, '0.1.0')).toThrow(/not a Plinth backup/);
  });

  test('migrationSections splits a dbmate file and refuses transaction:false', () => {
    expect(migrationSections('-- x\n-- migrate:up\nCREATE TABLE a();\n-- migrate:down\nDROP TABLE a;\n', 'f.sql')).toEqual({ up: '\nCREATE TABLE a();\n', down: '\nDROP TABLE a;\n' });
    expect(() => migrationSections('-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON a (x);\n', 'g.sql')).toThrow(/transaction:false/);
    expect(() => migrationSections('CREATE TABLE a();', 'h.sql')).toThrow(/no "-- migrate:up"/);
  });
});

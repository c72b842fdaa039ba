// The buckets suite (Supabase Storage API under /storage/v1), run once per byte store
// (buckets-disk.test.ts, buckets-s3.test.ts). Every call goes through the unmodified
// @supabase/storage-js client (and supabase-js's .storage once), as an app would make it; the
// assertions are what that app observes: data, errors with their status, bytes, and rows.
import { StorageClient } from '@supabase/storage-js';
import { createClient } from '@supabase/supabase-js';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { diskBackend, s3Backend, type BackendUnderTest } from './files-suite.ts';
import { eventually, REPO_ROOT, startStack, type Stack, type TestUser } from './harness.ts';

export { diskBackend, s3Backend };

const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(200)]);
const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(200)]);

/** A request whose path is sent exactly as written (fetch would resolve dot segments first). */
export function rawRequest(stack: Stack, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: stack.port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface Ctx {
  stack: Stack;
  backend: BackendUnderTest;
  alice: TestUser;
  bob: TestUser;
  /** storage-js as a user, as anon (the anon key), and as the service role. */
  as(user: TestUser): StorageClient;
  anon(): StorageClient;
  service(): StorageClient;
}

export function bucketsSuite(makeBackend: () => Promise<BackendUnderTest> | BackendUnderTest, register: (ctx: () => Ctx) => void = () => {}) {
  let ctx: Ctx;
  const c = () => ctx;

  beforeAll(async () => {
    const backend = await makeBackend();
    const stack = await startStack({ env: { ...backend.env, PLINTH_SWEEP_AGE: '2' } });
    const url = `${stack.url}/storage/v1`;
    const client = (token: string) => new StorageClient(url, { apikey: stack.anonKey, Authorization: `Bearer ${token}` });
    ctx = {
      stack,
      backend,
      alice: await stack.createUser(),
      bob: await stack.createUser(),
      as: (u) => client(u.token),
      anon: () => client(stack.anonKey),
      service: () => client(stack.serviceKey),
    };
  });
  afterAll(async () => {
    await ctx?.stack.destroy();
    await ctx?.backend.stop();
  });

  describe('buckets', () => {
    test('a signed-in user creates, lists, gets, updates, empties and deletes a bucket; a non-empty one is not deleted', async () => {
      const alice = c().as(c().alice);
      const id = `b-${randomBytes(3).toString('hex')}`;
      expect(await alice.createBucket(id, { public: false, fileSizeLimit: '1MB', allowedMimeTypes: ['image/*'] })).toEqual({ data: { name: id }, error: null });

      const got = await alice.getBucket(id);
      expect(got.error).toBeNull();
      expect(got.data).toMatchObject({ id, name: id, owner: c().alice.id, public: false, file_size_limit: MiB, allowed_mime_types: ['image/*'] });
      expect((await alice.listBuckets()).data!.map((b) => b.id)).toContain(id);

      expect((await alice.updateBucket(id, { public: true, fileSizeLimit: 2048, allowedMimeTypes: null })).data).toEqual({ message: 'Successfully updated' });
      expect((await alice.getBucket(id)).data).toMatchObject({ public: true, file_size_limit: 2048, allowed_mime_types: null });

      await alice.from(id).upload('a.txt', Buffer.from('hello'), { contentType: 'text/plain' });
      const refused = await alice.deleteBucket(id);
      expect(refused.error).toMatchObject({ status: 409, statusCode: '409' });
      expect(refused.error!.message).toMatch(/not empty/);
      expect((await alice.getBucket(id)).data).not.toBeNull();

      expect((await alice.emptyBucket(id)).error).toBeNull();
      expect((await alice.from(id).list()).data).toEqual([]);
      expect((await alice.deleteBucket(id)).data).toEqual({ message: 'Successfully deleted' });
      expect((await alice.getBucket(id)).error).toMatchObject({ status: 404, message: 'Bucket not found' });
    });

    test('bad bucket names and duplicates are refused with 400 / 409', async () => {
      const alice = c().as(c().alice);
      for (const bad of ['', 'a/b', '..', 'x'.repeat(101), 'public', 'héllo']) {
        const { error } = await alice.createBucket(bad);
        expect(error, bad).toMatchObject({ status: 400 });
      }
      const id = `dup-${randomBytes(3).toString('hex')}`;
      expect((await alice.createBucket(id)).error).toBeNull();
      expect((await alice.createBucket(id)).error).toMatchObject({ status: 409, statusCode: '409' });
      expect((await alice.createBucket(`x-${randomBytes(3).toString('hex')}`, { public: false, fileSizeLimit: 'ten' })).error).toMatchObject({ status: 400 });
    });

    test('RLS: other users see only public buckets; anon creates none; the service key sees and manages all', async () => {
      const alice = c().as(c().alice);
      const priv = `priv-${randomBytes(3).toString('hex')}`;
      const pub = `pub-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(priv);
      await alice.createBucket(pub, { public: true });

      const bobList = (await c().as(c().bob).listBuckets()).data!.map((b) => b.id);
      expect(bobList).toContain(pub);
      expect(bobList).not.toContain(priv);
      expect((await c().as(c().bob).getBucket(priv)).error).toMatchObject({ status: 404 });
      expect((await c().as(c().bob).updateBucket(pub, { public: false })).error).toMatchObject({ status: 404 });
      expect((await c().as(c().bob).deleteBucket(pub)).error).toMatchObject({ status: 403 });

      // SelfDB's listing of public buckets with the anon key.
      const anonList = (await c().anon().listBuckets()).data!.map((b) => b.id);
      expect(anonList).toContain(pub);
      expect(anonList).not.toContain(priv);
      expect((await c().anon().createBucket(`anon-${randomBytes(3).toString('hex')}`)).error).toMatchObject({ status: 401 });

      const serviceList = (await c().service().listBuckets()).data!.map((b) => b.id);
      expect(serviceList).toEqual(expect.arrayContaining([priv, pub]));
      expect((await c().service().updateBucket(priv, { public: false, fileSizeLimit: 10 })).error).toBeNull();
    });
  });

  describe('objects', () => {
    let bucket: string;
    beforeAll(async () => {
      bucket = `objs-${randomBytes(3).toString('hex')}`;
      await c().as(c().alice).createBucket(bucket);
    });

    test('upload (Buffer and Blob), download byte-exact, info, exists, and x-upsert', async () => {
      const files = c().as(c().alice).from(bucket);
      const bytes = randomBytes(3 * MiB + 17);
      const up = await files.upload('docs/report.bin', bytes, { contentType: 'application/octet-stream', cacheControl: '120' });
      expect(up.error).toBeNull();
      expect(up.data).toMatchObject({ path: 'docs/report.bin', fullPath: `${bucket}/docs/report.bin` });
      expect(up.data!.id).toMatch(/^[0-9a-f-]{36}$/);

      const down = await files.download('docs/report.bin');
      expect(sha256(new Uint8Array(await down.data!.arrayBuffer()))).toBe(sha256(bytes));

      const info = await files.info('docs/report.bin');
      expect(info.data).toMatchObject({ name: 'docs/report.bin', bucketId: bucket, size: bytes.length, contentType: 'application/octet-stream', cacheControl: 'max-age=120', etag: `"${sha256(bytes)}"` });
      expect((await files.exists('docs/report.bin')).data).toBe(true);
      expect((await files.exists('docs/none.bin')).data).toBe(false);

      // Same name without x-upsert: 409, and the old bytes stay.
      const again = await files.upload('docs/report.bin', Buffer.from('other'));
      expect(again.error).toMatchObject({ status: 409 });
      expect((await files.info('docs/report.bin')).data!.size).toBe(bytes.length);
      // With upsert: replaced.
      expect((await files.upload('docs/report.bin', Buffer.from('other'), { upsert: true })).error).toBeNull();
      expect(await (await files.download('docs/report.bin')).data!.text()).toBe('other');

      // A Blob goes as a form with cacheControl and metadata fields.
      const blob = new Blob([PNG], { type: 'image/png' });
      expect((await files.upload('img/p.png', blob, { cacheControl: '60', metadata: { who: 'alice' } })).error).toBeNull();
      const pinfo = await files.info('img/p.png');
      expect(pinfo.data).toMatchObject({ contentType: 'image/png', size: PNG.length, cacheControl: 'max-age=60', metadata: { who: 'alice' } });
      expect(Buffer.from(await (await files.download('img/p.png')).data!.arrayBuffer()).equals(PNG)).toBe(true);

      // update() replaces an existing object; on a missing one it is a 404.
      expect((await files.update('img/p.png', Buffer.from('plain text'), { contentType: 'text/plain' })).error).toBeNull();
      expect(await (await files.download('img/p.png')).data!.text()).toBe('plain text');
      expect((await files.update('img/none.png', Buffer.from('x'))).error).toMatchObject({ status: 404 });
    });

    test('list with prefix, folders, limit, offset, sortBy and search', async () => {
      const files = c().as(c().alice).from(bucket);
      for (const n of ['l/b.txt', 'l/a.txt', 'l/c.md', 'l/sub/x.txt', 'l/sub/y.txt']) await files.upload(n, Buffer.from(n), { upsert: true });
      const all = (await files.list('l')).data!;
      expect(all.map((e) => e.name)).toEqual(['a.txt', 'b.txt', 'c.md', 'sub']);
      expect(all.find((e) => e.name === 'sub')!.id).toBeNull();
      expect(all.find((e) => e.name === 'a.txt')!.metadata).toMatchObject({ size: 7, mimetype: 'text/plain;charset=UTF-8' });
      expect((await files.list('l', { limit: 2, offset: 1 })).data!.map((e) => e.name)).toEqual(['b.txt', 'c.md']);
      expect((await files.list('l', { sortBy: { column: 'name', order: 'desc' } })).data!.map((e) => e.name)).toEqual(['sub', 'c.md', 'b.txt', 'a.txt']);
      expect((await files.list('l', { search: 'b' })).data!.map((e) => e.name)).toEqual(['b.txt']);
      expect((await files.list('l/sub')).data!.map((e) => e.name)).toEqual(['x.txt', 'y.txt']);
      expect((await c().as(c().alice).from('no-such-bucket').list()).error).toMatchObject({ status: 404, message: 'Bucket not found' });
    });

    test('remove many: returns what was removed; the bytes leave the store', async () => {
      const files = c().as(c().alice).from(bucket);
      await files.upload('rm/1.txt', Buffer.from('1'));
      await files.upload('rm/2.txt', Buffer.from('2'));
      const { data } = await files.remove(['rm/1.txt', 'rm/2.txt', 'rm/absent.txt']);
      expect(data!.map((o) => o.name).sort()).toEqual(['rm/1.txt', 'rm/2.txt']);
      expect((await files.download('rm/1.txt')).error).toMatchObject({ status: 404 });
      const liveBlobs = async () => (await c().stack.sql<{ key: string }[]>`select key from storage.blobs`).map((r) => r.key);
      await eventually('removed bytes swept', async () => {
        const stored = new Set(await c().backend.storedKeys(c().stack));
        const live = new Set(await liveBlobs());
        return [...stored].every((k) => live.has(k.split('/').pop()!.replace(/\.part$/, ''))) ? true : undefined;
      });
    });

    test('object names: traversal and empty segments are refused with 400, nothing stored', async () => {
      const alice = c().as(c().alice);
      // fetch resolves literal dot segments (and backslashes) before sending: they never reach a bucket.
      for (const bad of ['../escape.txt', 'a/../../b']) expect((await alice.from(bucket).upload(bad, Buffer.from('x'))).error, bad).not.toBeNull();
      // Percent-encoded dot segments and empty segments arrive as such: 400 with Supabase's error shape.
      for (const raw of ['a/%2e%2e/%2e%2e/etc', '%2E%2E/x', 'a/%2e/b', 'a%2F%2Fb', 'back%5Cslash', 'nul%00byte']) {
        const res = await rawRequest(c().stack, 'POST', `/storage/v1/object/${bucket}/${raw}`, { authorization: `Bearer ${c().alice.token}` }, 'x');
        expect(res.status, raw).toBe(400);
        expect(JSON.parse(res.body)).toMatchObject({ statusCode: '400', error: 'InvalidKey' });
      }
      const [{ n }] = await c().stack.sql<{ n: number }[]>`select count(*)::int as n from storage.objects where name like '%..%'`;
      expect(n).toBe(0);
    });

    test('RLS: another user neither reads, writes nor deletes; anon reads nothing of a private bucket; the service key does all', async () => {
      const files = c().as(c().alice).from(bucket);
      await files.upload('rls/secret.txt', Buffer.from('secret'), { upsert: true });
      const bob = c().as(c().bob).from(bucket);
      expect((await bob.download('rls/secret.txt')).error).toMatchObject({ status: 404 });
      expect((await bob.info('rls/secret.txt')).error).toMatchObject({ status: 404 });
      expect((await bob.list('rls')).data).toEqual([]);
      expect((await bob.upload('rls/bob.txt', Buffer.from('bob'))).error).toMatchObject({ status: 403 });
      expect((await bob.upload('rls/secret.txt', Buffer.from('bob'), { upsert: true })).error).toMatchObject({ status: 403 });
      expect((await bob.remove(['rls/secret.txt'])).data).toEqual([]);
      expect(await (await files.download('rls/secret.txt')).data!.text()).toBe('secret');

      const anon = c().anon().from(bucket);
      expect((await anon.download('rls/secret.txt')).error).toMatchObject({ status: 404 });
      expect((await anon.upload('rls/anon.txt', Buffer.from('anon'))).error).toMatchObject({ status: 401 });

      const service = c().service().from(bucket);
      expect(await (await service.download('rls/secret.txt')).data!.text()).toBe('secret');
      expect((await service.upload('rls/service.txt', Buffer.from('svc'))).error).toBeNull();
      expect((await service.remove(['rls/service.txt'])).data!.length).toBe(1);
    });

    test('supabase-js createClient(url, anonKey).storage works against Plinth (apikey + Bearer)', async () => {
      const supabase = createClient(c().stack.url, c().stack.anonKey, {
        auth: { persistSession: false, autoRefreshToken: false },
        realtime: { transport: WebSocket as never },
        global: { headers: { Authorization: `Bearer ${c().alice.token}` } },
      });
      const { data, error } = await supabase.storage.from(bucket).upload('sb/hello.txt', 'hello from supabase-js', { contentType: 'text/plain' });
      expect(error).toBeNull();
      expect(data!.fullPath).toBe(`${bucket}/sb/hello.txt`);
      expect(await (await supabase.storage.from(bucket).download('sb/hello.txt')).data!.text()).toBe('hello from supabase-js');
      const anonOnly = createClient(c().stack.url, c().stack.anonKey, { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: WebSocket as never } });
      expect((await anonOnly.storage.from(bucket).download('sb/hello.txt')).error).toMatchObject({ status: 404 });
    });

    test('an app policy on storage.foldername(name) lets users write their own folder of a shared bucket', async () => {
      const shared = `shared-${randomBytes(3).toString('hex')}`;
      expect((await c().service().createBucket(shared)).error).toBeNull();
      await c().stack.sql.unsafe(`
        create policy "own folder insert ${shared}" on storage.objects for insert to authenticated
          with check (bucket_id = '${shared}' and (storage.foldername(name))[1] = auth.uid()::text);
        create policy "own folder read ${shared}" on storage.objects for select to authenticated
          using (bucket_id = '${shared}' and (storage.foldername(name))[1] = auth.uid()::text)`);
      const alice = c().as(c().alice).from(shared);
      expect((await alice.upload(`${c().alice.id}/avatar.png`, PNG, { contentType: 'image/png' })).error).toBeNull();
      expect((await alice.upload(`${c().bob.id}/avatar.png`, PNG, { contentType: 'image/png' })).error).toMatchObject({ status: 403 });
      expect((await c().as(c().bob).from(shared).download(`${c().alice.id}/avatar.png`)).error).toMatchObject({ status: 404 });
      const [row] = await c().stack.sql`select storage.foldername(${'a/b/c.png'}) as f, storage.filename(${'a/b/c.png'}) as n, storage.extension(${'a/b/c.png'}) as e`;
      expect(row).toEqual({ f: ['a', 'b'], n: 'c.png', e: 'png' });
    });
  });

  describe('move, copy, public, HTTP caching, limits', () => {
    test('move and copy within and across buckets; a taken destination is 409; the copy has its own bytes', async () => {
      const alice = c().as(c().alice);
      const b1 = `mv1-${randomBytes(3).toString('hex')}`;
      const b2 = `mv2-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(b1);
      await alice.createBucket(b2);
      const bytes = randomBytes(MiB + 3);
      await alice.from(b1).upload('src.bin', bytes);
      expect((await alice.from(b1).move('src.bin', 'moved/dst.bin')).data).toMatchObject({ message: 'Successfully moved' });
      expect((await alice.from(b1).download('src.bin')).error).toMatchObject({ status: 404 });
      expect((await alice.from(b1).copy('moved/dst.bin', 'copy.bin')).data).toEqual({ path: `${b1}/copy.bin` });
      expect((await alice.from(b1).copy('moved/dst.bin', 'copy.bin')).error).toMatchObject({ status: 409 });
      expect((await alice.from(b1).move('moved/dst.bin', 'elsewhere.bin', { destinationBucket: b2 })).error).toBeNull();
      expect(sha256(new Uint8Array(await (await alice.from(b2).download('elsewhere.bin')).data!.arrayBuffer()))).toBe(sha256(bytes));
      // Removing the original leaves the copy whole.
      await alice.from(b2).remove(['elsewhere.bin']);
      expect(sha256(new Uint8Array(await (await alice.from(b1).download('copy.bin')).data!.arrayBuffer()))).toBe(sha256(bytes));
      expect((await alice.from(b1).move('absent.bin', 'x.bin')).error).toMatchObject({ status: 404 });
      // Bob may not move Alice's objects, nor copy them into his own bucket.
      const bobs = `bob-${randomBytes(3).toString('hex')}`;
      await c().as(c().bob).createBucket(bobs);
      expect((await c().as(c().bob).from(b1).move('copy.bin', 'stolen.bin', { destinationBucket: bobs })).error).toMatchObject({ status: 404 });
      expect((await c().as(c().bob).from(b1).copy('copy.bin', 'stolen.bin', { destinationBucket: bobs })).error).toMatchObject({ status: 404 });
    });

    test('a public bucket: anyone downloads through /object/public and getPublicUrl; a private one is 404 there', async () => {
      const alice = c().as(c().alice);
      const pub = `public-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(pub, { public: true });
      await alice.from(pub).upload('p/cat.png', PNG, { contentType: 'image/png' });
      const url = c().anon().from(pub).getPublicUrl('p/cat.png').data.publicUrl;
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(Buffer.from(await res.arrayBuffer()).equals(PNG)).toBe(true);
      expect((await c().anon().from(pub).download('p/cat.png')).error).toBeNull();
      expect((await c().anon().from(pub).list('p')).data!.map((o) => o.name)).toEqual(['cat.png']);
      // Anonymous readers still may not write to it.
      expect((await c().anon().from(pub).upload('p/dog.png', PNG)).error).toMatchObject({ status: 401 });
      expect((await c().as(c().bob).from(pub).upload('p/dog.png', PNG)).error).toMatchObject({ status: 403 });

      const priv = `private-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(priv);
      await alice.from(priv).upload('x.txt', Buffer.from('x'));
      const r2 = await fetch(c().anon().from(priv).getPublicUrl('x.txt').data.publicUrl);
      expect(r2.status).toBe(404);
      expect(await r2.json()).toMatchObject({ statusCode: '404', error: 'NoSuchKey' });
      // Made public, the same URL works; made private again, it stops.
      await alice.updateBucket(priv, { public: true });
      expect((await fetch(c().anon().from(priv).getPublicUrl('x.txt').data.publicUrl)).status).toBe(200);
      await alice.updateBucket(priv, { public: false });
      expect((await fetch(c().anon().from(priv).getPublicUrl('x.txt').data.publicUrl)).status).toBe(404);
    });

    test('ETag, If-None-Match (304), Range (206/416), Cache-Control from cacheControl, download names', async () => {
      const alice = c().as(c().alice);
      const b = `http-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(b, { public: true });
      const bytes = randomBytes(100_000);
      await alice.from(b).upload('r.bin', bytes, { cacheControl: '600' });
      const url = c().anon().from(b).getPublicUrl('r.bin').data.publicUrl;
      const full = await fetch(url);
      expect(full.headers.get('etag')).toBe(`"${sha256(bytes)}"`);
      expect(full.headers.get('cache-control')).toBe('max-age=600');
      expect(full.headers.get('accept-ranges')).toBe('bytes');
      expect(full.headers.get('x-content-type-options')).toBe('nosniff');
      await full.arrayBuffer();
      expect((await fetch(url, { headers: { 'if-none-match': `"${sha256(bytes)}"` } })).status).toBe(304);
      const part = await fetch(url, { headers: { range: 'bytes=10-19' } });
      expect(part.status).toBe(206);
      expect(part.headers.get('content-range')).toBe(`bytes 10-19/${bytes.length}`);
      expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(10, 20))).toBe(true);
      expect((await fetch(url, { headers: { range: `bytes=${bytes.length}-` } })).status).toBe(416);
      const named = await fetch(c().anon().from(b).getPublicUrl('r.bin', { download: 'report.bin' }).data.publicUrl);
      expect(named.headers.get('content-disposition')).toMatch(/^attachment; filename="report.bin"/);
      await named.arrayBuffer();
      // HEAD (storage-js exists()) carries the headers without the body.
      const head = await fetch(url, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(bytes.length));
    });

    test('limits: over file_size_limit is 413, a refused type is 415 (by header or by magic number), nothing kept', async () => {
      const alice = c().as(c().alice);
      const b = `lim-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(b, { public: false, fileSizeLimit: 64 * 1024, allowedMimeTypes: ['image/png', 'image/jpeg'] });
      // Versions still queued for deletion (by earlier tests) do not count: the sweeper removes them
      // in the background, and the count must not change under this test.
      const liveReady = async () =>
        (await c().stack.sql<{ n: number }[]>`
          select count(*)::int as n from storage.blobs b
          where b.state = 'ready' and not exists (select 1 from storage.deletions d where d.object_id = b.id)`)[0].n;
      const blobsBefore = await liveReady();

      const big = await alice.from(b).upload('big.png', Buffer.concat([PNG, randomBytes(64 * 1024)]), { contentType: 'image/png' });
      expect(big.error).toMatchObject({ status: 413, statusCode: '413' });
      // Streamed without a length (a Node stream): refused as the limit is crossed.
      const { Readable } = await import('node:stream');
      const streamed = await alice.from(b).upload('big2.png', Readable.from([PNG, randomBytes(40 * 1024), randomBytes(40 * 1024)]), { contentType: 'image/png', duplex: 'half' });
      expect(streamed.error).toMatchObject({ status: 413 });

      expect((await alice.from(b).upload('doc.pdf', Buffer.from('%PDF-1.4 x'), { contentType: 'application/pdf' })).error).toMatchObject({ status: 415, statusCode: '415' });
      // Declared image/png, but the bytes are an executable: refused by what they are.
      const disguised = await alice.from(b).upload('evil.png', ELF, { contentType: 'image/png' });
      expect(disguised.error).toMatchObject({ status: 415 });
      expect(disguised.error!.message).toMatch(/application\/x-executable/);
      // Declared as plain text, but the bytes are a PNG: stored as image/png, and allowed.
      expect((await alice.from(b).upload('real.png', PNG, { contentType: 'text/plain' })).error).toBeNull();
      expect((await alice.from(b).info('real.png')).data).toMatchObject({ contentType: 'image/png' });

      expect((await alice.from(b).list()).data!.map((o) => o.name)).toEqual(['real.png']);
      expect(await liveReady()).toBe(blobsBefore + 1);
      const [{ writing }] = await c().stack.sql<{ writing: number }[]>`select count(*)::int as writing from storage.blobs where state = 'writing'`;
      expect(writing).toBe(0);
    });
  });

  describe('signed URLs', () => {
    test('createSignedUrl(s): works without a key until expiry; RLS is checked at creation; revocable; ended by delete and overwrite', async () => {
      const alice = c().as(c().alice);
      const b = `sign-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(b);
      const bytes = randomBytes(50_000);
      await alice.from(b).upload('s/a.bin', bytes);
      await alice.from(b).upload('s/b.bin', Buffer.from('b'));

      const { data, error } = await alice.from(b).createSignedUrl('s/a.bin', 60);
      expect(error).toBeNull();
      const res = await fetch(data!.signedUrl);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
      const dl = await fetch(`${data!.signedUrl}&download=a.bin`);
      expect(dl.headers.get('content-disposition')).toMatch(/^attachment/);
      await dl.arrayBuffer();

      // Bob cannot sign Alice's private object; a missing object cannot be signed.
      expect((await c().as(c().bob).from(b).createSignedUrl('s/a.bin', 60)).error).toMatchObject({ status: 404 });
      expect((await alice.from(b).createSignedUrl('s/none.bin', 60)).error).toMatchObject({ status: 404 });
      const many = await alice.from(b).createSignedUrls(['s/a.bin', 's/none.bin'], 60);
      expect(many.data![0]).toMatchObject({ path: 's/a.bin', error: null });
      expect(many.data![1]).toMatchObject({ path: 's/none.bin', signedUrl: null });
      expect(many.data![1].error).toMatch(/does not exist or you do not have access/);

      // A tampered token, and an expired URL, are refused with 400.
      const tampered = new URL(data!.signedUrl);
      const token = tampered.searchParams.get('token')!;
      // Another first character (a random token begins with 'x' one time in 64).
      tampered.searchParams.set('token', (token[0] === 'x' ? 'y' : 'x') + token.slice(1));
      expect((await fetch(tampered)).status).toBe(400);
      const short = (await alice.from(b).createSignedUrl('s/b.bin', 1)).data!.signedUrl;
      await c().stack.sql`update storage.signed_urls set expires_at = now() - interval '1 second' where expires_at < now() + interval '2 seconds'`;
      const expired = await fetch(short);
      expect(expired.status).toBe(400);
      expect(await expired.json()).toMatchObject({ statusCode: '400', error: 'ExpiredToken' });

      // Revoked by id: Bob may not, Alice may.
      const signed = await c().stack.fetch(`/storage/v1/object/sign/${b}/s/a.bin`, { method: 'POST', token: c().alice.token, json: { expiresIn: 60 } });
      const { signedURL, id } = await signed.json();
      const url = `${c().stack.url}/storage/v1${signedURL}`;
      expect((await fetch(url)).status).toBe(200);
      expect((await c().stack.fetch(`/storage/v1/signed-url/${id}`, { method: 'DELETE', token: c().bob.token })).status).toBe(404);
      expect((await c().stack.fetch(`/storage/v1/signed-url/${id}`, { method: 'DELETE', token: c().alice.token })).status).toBe(200);
      expect((await fetch(url)).status).toBe(400);

      // Overwriting the object ends its URLs; so does deleting it.
      const before = (await alice.from(b).createSignedUrl('s/a.bin', 60)).data!.signedUrl;
      await alice.from(b).upload('s/a.bin', Buffer.from('new'), { upsert: true });
      expect((await fetch(before)).status).toBe(400);
      const again = (await alice.from(b).createSignedUrl('s/a.bin', 60)).data!.signedUrl;
      expect(await (await fetch(again)).text()).toBe('new');
      await alice.from(b).remove(['s/a.bin']);
      expect((await fetch(again)).status).toBe(400);
    });

    test('signed upload URLs: created under RLS, then anyone holding one uploads once per name; upsert as signed', async () => {
      const alice = c().as(c().alice);
      const b = `signup-${randomBytes(3).toString('hex')}`;
      await alice.createBucket(b);
      expect((await c().as(c().bob).from(b).createSignedUploadUrl('u/x.txt')).error).toMatchObject({ status: 403 });
      const { data, error } = await alice.from(b).createSignedUploadUrl('u/x.txt');
      expect(error).toBeNull();
      // The holder needs no key of their own (here: the anon key's client).
      const up = await c().anon().from(b).uploadToSignedUrl('u/x.txt', data!.token, Buffer.from('via signed url'), { contentType: 'text/plain' });
      expect(up.error).toBeNull();
      expect(up.data).toMatchObject({ path: 'u/x.txt', fullPath: `${b}/u/x.txt` });
      expect(await (await alice.from(b).download('u/x.txt')).data!.text()).toBe('via signed url');
      expect((await alice.from(b).info('u/x.txt')).data).toMatchObject({ contentType: 'text/plain' });
      // Not an upsert URL: the name is taken now.
      expect((await c().anon().from(b).uploadToSignedUrl('u/x.txt', data!.token, Buffer.from('again'))).error).toMatchObject({ status: 409 });
      // Another name, or a bad token: refused.
      expect((await c().anon().from(b).uploadToSignedUrl('u/y.txt', data!.token, Buffer.from('y'))).error).toMatchObject({ status: 400 });
      expect((await c().anon().from(b).uploadToSignedUrl('u/x.txt', 'bogus', Buffer.from('y'))).error).toMatchObject({ status: 400 });
      const ups = await alice.from(b).createSignedUploadUrl('u/x.txt', { upsert: true });
      expect((await c().anon().from(b).uploadToSignedUrl('u/x.txt', ups.data!.token, Buffer.from('replaced'), { upsert: true })).error).toBeNull();
      expect(await (await alice.from(b).download('u/x.txt')).data!.text()).toBe('replaced');
    });
  });

  describe('migrations', () => {
    test('20250101000300_buckets, 20250101000301_signed_urls and 20250101000320_tus_uploads: down restores storage.objects as the blob table, up applies again', async () => {
      const read = (f: string) => fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', f), 'utf8').split('-- migrate:down');
      const [bucketsUp, bucketsDown] = read('20250101000300_buckets.sql');
      const [signedUp, signedDown] = read('20250101000301_signed_urls.sql');
      const [tusUp, tusDown] = read('20250101000320_tus_uploads.sql');
      const shape = async (tx: Stack['sql']) =>
        (await tx<{ s: string }[]>`
          select coalesce(to_regclass('storage.blobs')::text, '-') || ' ' || coalesce(to_regclass('storage.buckets')::text, '-') || ' ' ||
                 exists (select 1 from pg_attribute where attrelid = to_regclass('storage.objects') and attname = 'sha256')::text as s`)[0].s;
      class Rollback extends Error {}
      await expect(
        c().stack.sql.begin(async (tx) => {
          const t = tx as never as Stack['sql'];
          expect(await shape(t)).toBe('storage.blobs storage.buckets false');
          await tx.unsafe('delete from storage.signed_urls; delete from storage.objects; delete from storage.buckets');
          await tx.unsafe(tusDown);
          await tx.unsafe(signedDown);
          await tx.unsafe(bucketsDown);
          expect(await shape(t)).toBe('- - true');
          // The per-user files' functions read the old name again.
          await tx.unsafe(`select * from storage.find_file('x')`);
          await tx.unsafe(bucketsUp.replace('-- migrate:up', ''));
          await tx.unsafe(signedUp.replace('-- migrate:up', ''));
          await tx.unsafe(tusUp.replace('-- migrate:up', ''));
          expect(await shape(t)).toBe('storage.blobs storage.buckets false');
          await tx.unsafe(`select * from storage.find_file('x')`);
          throw new Rollback();
        }),
      ).rejects.toBeInstanceOf(Rollback);
    });
  });

  register(c);
}

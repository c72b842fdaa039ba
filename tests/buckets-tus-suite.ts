// Resumable uploads (TUS 1.0 at /storage/v1/upload/resumable), run once per byte store
// (buckets-tus-disk.test.ts, buckets-tus-s3.test.ts). Uploads go through the unmodified
// tus-js-client, as a Supabase app sends them; refusals are checked with plain requests.
import { StorageClient } from '@supabase/storage-js';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BackendUnderTest } from './files-suite.ts';
import { eventually, startStack, type Stack, type TestUser } from './harness.ts';

const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s).toString('base64');

interface Ctx {
  stack: Stack;
  backend: BackendUnderTest;
  alice: TestUser;
  bob: TestUser;
  storage(user: TestUser): StorageClient;
}

function tusHeaders(stack: Stack, token: string, extra: Record<string, string> = {}) {
  return { apikey: stack.anonKey, authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0', ...extra };
}

/** POST a new upload as `token`; returns the response (Location on 201). */
async function create(stack: Stack, token: string, bucket: string, name: string, length: number, extra: Record<string, string> = {}) {
  return fetch(`${stack.url}/storage/v1/upload/resumable`, {
    method: 'POST',
    headers: tusHeaders(stack, token, {
      'upload-length': String(length),
      'upload-metadata': `bucketName ${b64(bucket)},objectName ${b64(name)},contentType ${b64('application/octet-stream')}`,
      ...extra,
    }),
  });
}

function patch(stack: Stack, token: string, url: string, offset: number, body: Buffer) {
  return fetch(url, {
    method: 'PATCH',
    headers: tusHeaders(stack, token, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }),
    body: new Uint8Array(body),
  });
}

function head(stack: Stack, token: string, url: string) {
  return fetch(url, { method: 'HEAD', headers: tusHeaders(stack, token) });
}

/** Sends the first `cutAt` bytes of `data` as a PATCH from offset 0, then drops the connection. */
async function patchCut(stack: Stack, token: string, url: string, data: Buffer, cutAt: number) {
  const req = http.request(url, {
    method: 'PATCH',
    headers: tusHeaders(stack, token, { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(data.length) }),
  });
  req.on('error', () => {});
  for (let at = 0; at < cutAt; at += MiB) {
    await new Promise<void>((resolve, reject) => req.write(data.subarray(at, Math.min(at + MiB, cutAt)), (err) => (err ? reject(err) : resolve())));
  }
  req.destroy();
}

/** Runs a tus-js-client upload to the end. */
function tusUpload(stack: Stack, token: string, data: Buffer, options: Partial<tus.UploadOptions>) {
  return new Promise<{ url: string }>((resolve, reject) => {
    const upload: tus.Upload = new tus.Upload(data, {
      endpoint: `${stack.url}/storage/v1/upload/resumable`,
      headers: { apikey: stack.anonKey, authorization: `Bearer ${token}` },
      retryDelays: [],
      removeFingerprintOnSuccess: true,
      ...options,
      onError: reject,
      onSuccess: () => resolve({ url: upload.url! }),
    });
    upload.start();
  });
}

export function tusSuite(makeBackend: () => Promise<BackendUnderTest> | BackendUnderTest) {
  let ctx: Ctx;
  beforeAll(async () => {
    const backend = await makeBackend();
    const stack = await startStack({ env: { ...backend.env } });
    ctx = {
      stack,
      backend,
      alice: await stack.createUser(),
      bob: await stack.createUser(),
      storage: (u) => new StorageClient(`${stack.url}/storage/v1`, { apikey: stack.anonKey, Authorization: `Bearer ${u.token}` }),
    };
  });
  afterAll(async () => {
    await ctx?.stack.destroy();
    await ctx?.backend.stop();
  });

  async function bucket(user: TestUser, options: { fileSizeLimit?: string } = {}) {
    const id = `tus-${randomBytes(3).toString('hex')}`;
    const { error } = await ctx.storage(user).createBucket(id, { public: false, ...options });
    expect(error).toBeNull();
    return id;
  }

  test('a 40 MiB upload cut at 60% resumes with a new client from the stored URL; the object appears only when complete, byte for byte', async () => {
    const { stack, alice } = ctx;
    const id = await bucket(alice);
    const data = randomBytes(40 * MiB);
    const created = await create(stack, alice.token, id, 'big/video.bin', data.length, {
      'upload-metadata': `bucketName ${b64(id)},objectName ${b64('big/video.bin')},contentType ${b64('application/octet-stream')},cacheControl ${b64('60')}`,
    });
    expect(created.status).toBe(201);
    const first = { url: created.headers.get('location')! };
    expect(first.url).toMatch(new RegExp(`^${stack.url}/storage/v1/upload/resumable/[A-Za-z0-9_-]+$`));
    expect(Buffer.from(first.url.split('/').pop()!, 'base64url').toString()).toMatch(new RegExp(`^${id}/big/video\\.bin/[0-9a-f-]{36}$`));
    // The connection drops after 24 MiB of the PATCH body have left the client.
    await patchCut(stack, alice.token, first.url, data, 24 * MiB);

    // What arrived before the cut is kept; nothing is visible yet.
    const h = await eventually('the cut PATCH to be stored', async () => {
      const r = await head(stack, alice.token, first.url);
      return r.status === 200 && Number(r.headers.get('upload-offset')) > 0 ? r : undefined;
    });
    expect(h.headers.get('upload-length')).toBe(String(40 * MiB));
    const kept = Number(h.headers.get('upload-offset'));
    expect(kept).toBeLessThan(40 * MiB);
    expect((await ctx.storage(alice).from(id).download('big/video.bin')).error).not.toBeNull();

    let resumedFrom = -1;
    const second = await new Promise<void>((resolve, reject) => {
      const upload = new tus.Upload(data, {
        endpoint: `${stack.url}/storage/v1/upload/resumable`,
        uploadUrl: first.url,
        headers: { apikey: stack.anonKey, authorization: `Bearer ${alice.token}` },
        retryDelays: [],
        onProgress: (sent) => {
          if (resumedFrom < 0) resumedFrom = sent;
        },
        onError: reject,
        onSuccess: () => resolve(),
      });
      upload.start();
    });
    expect(second).toBeUndefined();
    expect(resumedFrom).toBeGreaterThanOrEqual(kept);

    const { data: blob, error } = await ctx.storage(alice).from(id).download('big/video.bin');
    expect(error).toBeNull();
    const got = Buffer.from(await blob!.arrayBuffer());
    expect(got.length).toBe(data.length);
    expect(sha256(got)).toBe(sha256(data));
    const info = await fetch(`${stack.url}/storage/v1/object/info/${id}/big/video.bin`, { headers: { apikey: stack.anonKey, authorization: `Bearer ${alice.token}` } });
    expect(await info.json()).toMatchObject({ size: 40 * MiB, cache_control: 'max-age=60', etag: `"${sha256(data)}"` });

    // The finished upload's URL is gone; its staged bytes too.
    expect((await head(stack, alice.token, first.url)).status).toBe(404);
    const uploadId = Buffer.from(first.url.split('/').pop()!, 'base64url').toString().split('/').pop()!;
    expect(fs.existsSync(path.join(stack.dataDir, 'storage', 'tus', `${uploadId}.part`))).toBe(false);
  });

  test('an offset that is not the upload\'s is 409; an unknown upload is 404; no Tus-Resumable is 412; OPTIONS describes the server', async () => {
    const { stack, alice } = ctx;
    const id = await bucket(alice);
    const res = await create(stack, alice.token, id, 'a.bin', 10);
    expect(res.status).toBe(201);
    expect(res.headers.get('tus-resumable')).toBe('1.0.0');
    const url = res.headers.get('location')!;
    expect((await patch(stack, alice.token, url, 3, Buffer.from('abc'))).status).toBe(409);
    const ok = await patch(stack, alice.token, url, 0, Buffer.from('01234'));
    expect(ok.status).toBe(204);
    expect(ok.headers.get('upload-offset')).toBe('5');
    expect((await patch(stack, alice.token, url, 0, Buffer.from('01234'))).status).toBe(409);

    const unknown = `${stack.url}/storage/v1/upload/resumable/${Buffer.from(`${id}/a.bin/00000000-0000-4000-8000-000000000000`).toString('base64url')}`;
    expect((await patch(stack, alice.token, unknown, 0, Buffer.from('x'))).status).toBe(404);
    expect((await head(stack, alice.token, unknown)).status).toBe(404);
    expect((await fetch(unknown, { method: 'HEAD', headers: { apikey: stack.anonKey, authorization: `Bearer ${alice.token}` } })).status).toBe(412);

    const options = await fetch(`${stack.url}/storage/v1/upload/resumable`, { method: 'OPTIONS' });
    expect(options.status).toBe(204);
    expect(options.headers.get('tus-version')).toBe('1.0.0');
    expect(options.headers.get('tus-extension')).toContain('creation');

    // The rest, then the object exists; DELETE of a finished upload is 404.
    const last = await patch(stack, alice.token, url, 5, Buffer.from('56789'));
    expect(last.status).toBe(204);
    const { data } = await ctx.storage(alice).from(id).download('a.bin');
    expect(Buffer.from(await data!.arrayBuffer()).toString()).toBe('0123456789');
    expect((await fetch(url, { method: 'DELETE', headers: tusHeaders(stack, alice.token) })).status).toBe(404);
  });

  test('another user can neither see nor continue nor cancel someone\'s upload (RLS), nor start one in a bucket they may not write', async () => {
    const { stack, alice, bob } = ctx;
    const id = await bucket(alice);
    const url = (await create(stack, alice.token, id, 'mine.bin', 6)).headers.get('location')!;
    expect((await patch(stack, alice.token, url, 0, Buffer.from('abc'))).status).toBe(204);

    expect((await patch(stack, bob.token, url, 3, Buffer.from('XYZ'))).status).toBe(404);
    expect((await head(stack, bob.token, url)).status).toBe(404);
    expect((await fetch(url, { method: 'DELETE', headers: tusHeaders(stack, bob.token) })).status).toBe(404);
    // Bob's own upload into Alice's bucket is refused by the bucket's policies at creation.
    expect((await create(stack, bob.token, id, 'bob.bin', 6)).status).toBe(403);

    const h = await head(stack, alice.token, url);
    expect(h.headers.get('upload-offset')).toBe('3');
    expect((await patch(stack, alice.token, url, 3, Buffer.from('def'))).status).toBe(204);
    const { data } = await ctx.storage(alice).from(id).download('mine.bin');
    expect(Buffer.from(await data!.arrayBuffer()).toString()).toBe('abcdef');
  });

  test('Upload-Length over the bucket\'s limit is 413 at creation; bytes past Upload-Length are 413 and not kept', async () => {
    const { stack, alice } = ctx;
    const id = await bucket(alice, { fileSizeLimit: '1MB' });
    const over = await create(stack, alice.token, id, 'big.bin', 2 * MiB);
    expect(over.status).toBe(413);
    expect(await over.json()).toMatchObject({ error: 'EntityTooLarge' });

    const url = (await create(stack, alice.token, id, 'small.bin', 4)).headers.get('location')!;
    expect((await patch(stack, alice.token, url, 0, Buffer.from('too long'))).status).toBe(413);
    expect((await head(stack, alice.token, url)).headers.get('upload-offset')).toBe('0');
    expect((await create(stack, alice.token, id, 'x.bin', 4, { 'upload-length': 'lots' })).status).toBe(400);
  });

  test('an existing object is 409 at creation unless x-upsert: true, which overwrites it when the upload completes', async () => {
    const { stack, alice } = ctx;
    const id = await bucket(alice);
    await tusUpload(stack, alice.token, Buffer.from('first'), { metadata: { bucketName: id, objectName: 'same.txt', contentType: 'text/plain' } });
    expect((await create(stack, alice.token, id, 'same.txt', 6)).status).toBe(409);
    await tusUpload(stack, alice.token, Buffer.from('second'), {
      metadata: { bucketName: id, objectName: 'same.txt', contentType: 'text/plain' },
      headers: { apikey: stack.anonKey, authorization: `Bearer ${alice.token}`, 'x-upsert': 'true' },
    });
    const { data } = await ctx.storage(alice).from(id).download('same.txt');
    expect(await data!.text()).toBe('second');
  });

  test('DELETE cancels an upload: its URL is gone and its staged bytes removed', async () => {
    const { stack, alice } = ctx;
    const id = await bucket(alice);
    const url = (await create(stack, alice.token, id, 'cancel.bin', 10)).headers.get('location')!;
    expect((await patch(stack, alice.token, url, 0, Buffer.from('01234'))).status).toBe(204);
    expect((await fetch(url, { method: 'DELETE', headers: tusHeaders(stack, alice.token) })).status).toBe(204);
    expect((await head(stack, alice.token, url)).status).toBe(404);
    const uploadId = Buffer.from(url.split('/').pop()!, 'base64url').toString().split('/').pop()!;
    expect((await ctx.backend.storedKeys(stack)).some((k) => k.includes(uploadId))).toBe(false);
  });

  describe('signed resumable uploads (x-signature at /upload/resumable/sign)', () => {
    const signEndpoint = () => `${ctx.stack.url}/storage/v1/upload/resumable/sign`;
    /** A signed upload token Alice creates (under her RLS), with its id for revoking it. */
    async function signFor(user: TestUser, bucketId: string, name: string, upsert = false) {
      const res = await ctx.stack.fetch(`/storage/v1/object/upload/sign/${bucketId}/${name}`, {
        method: 'POST', token: user.token, headers: upsert ? { 'x-upsert': 'true' } : {},
      });
      expect(res.status).toBe(200);
      return (await res.json()) as { token: string; id: string };
    }
    /** Headers of a holder with nothing but the anon key and the token. */
    const holder = (token: string | null, extra: Record<string, string> = {}) => ({
      apikey: ctx.stack.anonKey, 'tus-resumable': '1.0.0', ...(token === null ? {} : { 'x-signature': token }), ...extra,
    });
    const signedCreate = (token: string | null, bucketId: string, name: string, length: number, extra: Record<string, string> = {}) =>
      fetch(signEndpoint(), {
        method: 'POST',
        headers: holder(token, {
          'upload-length': String(length),
          'upload-metadata': `bucketName ${b64(bucketId)},objectName ${b64(name)},contentType ${b64('application/octet-stream')}`,
          ...extra,
        }),
      });
    const signedPatch = (token: string, url: string, offset: number, body: Buffer) =>
      fetch(url, { method: 'PATCH', headers: holder(token, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }), body: new Uint8Array(body) });

    test('the holder of a signed upload token, with only the anon key, uploads 12 MiB with tus-js-client, cut and resumed; the object is byte-exact and Alice\'s', async () => {
      const { stack, alice } = ctx;
      const id = await bucket(alice);
      const { token } = await signFor(alice, id, 'signed/video.bin');
      // Over S3's 5 MiB part size: the S3 run stores a part before the cut.
      const data = randomBytes(12 * MiB);
      const metadata = { bucketName: id, objectName: 'signed/video.bin', contentType: 'video/mp4', cacheControl: '30' };
      // The first client stops once its first 6 MiB PATCH is acknowledged.
      const first = await new Promise<{ url: string; aborted: boolean }>((resolve, reject) => {
        const upload: tus.Upload = new tus.Upload(data, {
          endpoint: signEndpoint(),
          headers: { apikey: stack.anonKey, 'x-signature': token },
          metadata,
          chunkSize: 6 * MiB,
          retryDelays: [],
          onChunkComplete: () => {
            const url = upload.url!;
            void upload.abort().then(() => resolve({ url, aborted: true }), reject);
          },
          onError: reject,
          onSuccess: () => resolve({ url: upload.url!, aborted: false }),
        });
        upload.start();
      });
      expect(first.aborted).toBe(true);
      expect(first.url).toMatch(new RegExp(`^${stack.url}/storage/v1/upload/resumable/sign/[A-Za-z0-9_-]+$`));
      const h = await fetch(first.url, { method: 'HEAD', headers: holder(token) });
      expect(h.status).toBe(200);
      expect(h.headers.get('upload-offset')).toBe(String(6 * MiB));
      expect((await ctx.storage(alice).from(id).download('signed/video.bin')).error).not.toBeNull();
      // The upload is Alice's: the anon key alone, at the plain door, does not see it.
      expect((await head(stack, stack.anonKey, first.url.replace('/resumable/sign/', '/resumable/'))).status).toBe(404);

      await new Promise<void>((resolve, reject) => {
        new tus.Upload(data, {
          endpoint: signEndpoint(),
          uploadUrl: first.url,
          headers: { apikey: stack.anonKey, 'x-signature': token },
          retryDelays: [],
          onError: reject,
          onSuccess: () => resolve(),
        }).start();
      });
      const { data: blob, error } = await ctx.storage(alice).from(id).download('signed/video.bin');
      expect(error).toBeNull();
      const got = Buffer.from(await blob!.arrayBuffer());
      expect(got.length).toBe(data.length);
      expect(sha256(got)).toBe(sha256(data));
      const info = await fetch(`${stack.url}/storage/v1/object/info/${id}/signed/video.bin`, { headers: { apikey: stack.anonKey, authorization: `Bearer ${alice.token}` } });
      expect(await info.json()).toMatchObject({ size: 12 * MiB, cache_control: 'max-age=30', etag: `"${sha256(data)}"` });
      const [row] = await stack.sql<{ owner: string }[]>`select owner from storage.objects where bucket_id = ${id} and name = 'signed/video.bin'`;
      expect(row.owner).toBe(alice.id);
    });

    test('no token, a wrong token, an expired token and a revoked token are refused with 400, as Supabase; revoking ends an upload in progress', async () => {
      const { stack, alice } = ctx;
      const id = await bucket(alice);

      // Through tus-js-client, as Supabase's own tests do.
      const refusal = async (headers: Record<string, string>) => {
        const err = await tusUpload(stack, '', Buffer.from('data'), {
          endpoint: signEndpoint(), headers, metadata: { bucketName: id, objectName: 'r.bin' },
        }).then(() => null, (e: tus.DetailedError) => e);
        return { status: err?.originalResponse?.getStatus(), body: JSON.parse(err?.originalResponse?.getBody() ?? '{}') };
      };
      expect(await refusal({ apikey: stack.anonKey })).toEqual({ status: 400, body: expect.objectContaining({ error: 'InvalidSignature', message: 'Missing x-signature header' }) });
      expect(await refusal({ apikey: stack.anonKey, 'x-signature': 'invalid-token' })).toMatchObject({ status: 400, body: { error: 'InvalidSignature' } });

      const expiring = await signFor(alice, id, 'r.bin');
      await stack.sql`update storage.signed_urls set expires_at = now() - interval '1 second' where id = ${expiring.id}`;
      expect(await refusal({ apikey: stack.anonKey, 'x-signature': expiring.token })).toMatchObject({ status: 400, body: { error: 'ExpiredToken' } });

      const revoked = await signFor(alice, id, 'r.bin');
      const created = await signedCreate(revoked.token, id, 'r.bin', 6);
      expect(created.status).toBe(201);
      const url = created.headers.get('location')!;
      expect((await signedPatch(revoked.token, url, 0, Buffer.from('abc'))).status).toBe(204);
      expect((await stack.fetch(`/storage/v1/signed-url/${revoked.id}`, { method: 'DELETE', token: alice.token })).status).toBe(200);
      const after = await signedPatch(revoked.token, url, 3, Buffer.from('def'));
      expect(after.status).toBe(400);
      expect(await after.json()).toMatchObject({ error: 'InvalidSignature' });
      expect((await fetch(url, { method: 'HEAD', headers: holder(revoked.token) })).status).toBe(400);
      expect((await signedCreate(revoked.token, id, 'r.bin', 6)).status).toBe(400);
      // Nothing was written; Alice herself still sees her unfinished upload at the plain door.
      expect((await ctx.storage(alice).from(id).download('r.bin')).error).not.toBeNull();
      expect((await head(stack, alice.token, url.replace('/resumable/sign/', '/resumable/'))).headers.get('upload-offset')).toBe('3');
    });

    test('a token uploads to its one object only: not another name, not another of its creator\'s uploads, and not over an object unless signed for upsert', async () => {
      const { stack, alice } = ctx;
      const id = await bucket(alice);
      const { token } = await signFor(alice, id, 'only/this.bin');

      // Another name in the metadata.
      const other = await signedCreate(token, id, 'only/that.bin', 3);
      expect(other.status).toBe(400);
      expect(await other.json()).toMatchObject({ error: 'InvalidSignature' });
      // Another of Alice's uploads: by its own URL (the token is not for its object), or by a URL
      // that names the token's object with that upload's id.
      const hers = (await create(stack, alice.token, id, 'only/that.bin', 3)).headers.get('location')!;
      const hersId = Buffer.from(hers.split('/').pop()!, 'base64url').toString().split('/').pop()!;
      const asSigned = hers.replace('/resumable/', '/resumable/sign/');
      expect((await signedPatch(token, asSigned, 0, Buffer.from('xyz'))).status).toBe(400);
      const forged = `${signEndpoint()}/${Buffer.from(`${id}/only/this.bin/${hersId}`).toString('base64url')}`;
      expect((await signedPatch(token, forged, 0, Buffer.from('xyz'))).status).toBe(404);
      expect((await fetch(forged, { method: 'HEAD', headers: holder(token) })).status).toBe(404);
      expect((await fetch(forged, { method: 'DELETE', headers: holder(token) })).status).toBe(404);
      expect((await head(stack, alice.token, hers)).headers.get('upload-offset')).toBe('0');
      expect((await ctx.storage(alice).from(id).download('only/that.bin')).error).not.toBeNull();

      // The token's own object: written once; x-upsert from the holder does not make it an upsert token.
      const mine = (await signedCreate(token, id, 'only/this.bin', 3)).headers.get('location')!;
      expect((await signedPatch(token, mine, 0, Buffer.from('one'))).status).toBe(204);
      expect(await (await ctx.storage(alice).from(id).download('only/this.bin')).data!.text()).toBe('one');
      expect((await signedCreate(token, id, 'only/this.bin', 3, { 'x-upsert': 'true' })).status).toBe(409);
      const ups = await signFor(alice, id, 'only/this.bin', true);
      const again = (await signedCreate(ups.token, id, 'only/this.bin', 3)).headers.get('location')!;
      expect((await signedPatch(ups.token, again, 0, Buffer.from('two'))).status).toBe(204);
      expect(await (await ctx.storage(alice).from(id).download('only/this.bin')).data!.text()).toBe('two');
    });
  });

  describe('with PLINTH_TUS_EXPIRY=10', () => {
    let short: Stack;
    beforeAll(async () => {
      short = await startStack({ env: { ...ctx.backend.env, PLINTH_TUS_EXPIRY: '10' } });
    });
    afterAll(async () => {
      await short?.destroy();
    });

    test('an abandoned upload (no PATCH for the expiry) is swept: its URL answers 404 and its bytes and parts are gone', async () => {
      const user = await short.createUser();
      const id = `tus-${randomBytes(3).toString('hex')}`;
      const storage = new StorageClient(`${short.url}/storage/v1`, { apikey: short.anonKey, Authorization: `Bearer ${user.token}` });
      expect((await storage.createBucket(id)).error).toBeNull();
      // Over S3's 5 MiB part size, so the S3 run has a stored part to abort too.
      const url = (await create(short, user.token, id, 'left.bin', 12 * MiB)).headers.get('location')!;
      expect((await patch(short, user.token, url, 0, randomBytes(9 * MiB))).status).toBe(204);
      const uploadId = Buffer.from(url.split('/').pop()!, 'base64url').toString().split('/').pop()!;
      // Ten seconds leave room for a loaded machine between creating the upload and its PATCH.
      await eventually('the abandoned upload is swept', async () => ((await head(short, user.token, url)).status === 404 ? true : undefined), 60_000);
      await eventually('its staged bytes are removed', async () =>
        fs.existsSync(path.join(short.dataDir, 'storage', 'tus', `${uploadId}.part`)) ? undefined : true);
      expect((await ctx.backend.storedKeys(short)).some((k) => k.includes(uploadId))).toBe(false);
    });
  });
}

// PLINTH_S3_DOWNLOADS=redirect: once the database has allowed a download, Plinth answers 302 to a
// short-lived presigned GetObject URL on s3rver instead of relaying the bytes. Refusals are the
// same as in proxy mode (a second stack, proxy mode, on its own s3rver, answers the same requests).
import { createClient } from '@supabase/supabase-js';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { eventually, startS3rver, startStack, type S3Peer, type Stack, type TestUser } from './harness.ts';

// Short enough for the expiry test to wait it out, long enough for every other test to follow its
// redirect on a loaded machine: X-Amz-Date has whole seconds, so a URL lives LIFETIME - 1 s at least.
const LIFETIME = 5;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Side {
  peer: S3Peer;
  stack: Stack;
  alice: TestUser;
  bob: TestUser;
}

async function side(env: Record<string, string>): Promise<Side> {
  const peer = await startS3rver();
  const stack = await startStack({ env: { ...peer.env, ...env } });
  return { peer, stack, alice: await stack.createUser(), bob: await stack.createUser() };
}

let redirect: Side;
let proxy: Side;

beforeAll(async () => {
  [redirect, proxy] = await Promise.all([side({ PLINTH_S3_DOWNLOADS: 'redirect', PLINTH_S3_REDIRECT_EXPIRY: String(LIFETIME) }), side({})]);
});
afterAll(async () => {
  for (const s of [redirect, proxy]) {
    await s?.stack.destroy();
    await s?.peer.stop();
  }
});

const storeFile = async (s: Side, path: string, bytes: Buffer, type = 'application/pdf') => {
  const res = await s.stack.fetch('/rpc/store_file', { method: 'POST', token: s.alice.token, body: bytes as Uint8Array<ArrayBuffer>, headers: { 'content-type': 'application/octet-stream', 'file-path': path, 'file-content-type': type } });
  expect(res.status).toBe(200);
};

/** What a refused request answers: status, body, and whether it pointed anywhere. */
const refusal = async (res: Response) => ({ status: res.status, body: await res.text(), location: res.headers.get('location') });

describe('redirect mode: /rpc/retrieve_file', () => {
  const bytes = randomBytes(300_000);

  beforeAll(async () => {
    await storeFile(redirect, 'docs/report.pdf', bytes);
    await storeFile(proxy, 'docs/report.pdf', bytes);
  });

  test('answers 302 to a presigned URL that serves exactly the stored bytes, with the headers the proxy sends', async () => {
    const res = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: redirect.alice.token, redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const location = res.headers.get('location')!;
    expect(location.startsWith(`${redirect.peer.endpoint}/${redirect.peer.bucket}/objects/`)).toBe(true);
    expect(new URL(location).searchParams.get('X-Amz-Expires')).toBe(String(LIFETIME));

    const fromS3 = await fetch(location);
    expect(fromS3.status).toBe(200);
    const proxied = await proxy.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: proxy.alice.token });
    expect(proxied.status).toBe(200);
    for (const h of ['content-type', 'content-disposition', 'cache-control', 'content-length']) expect(fromS3.headers.get(h), h).toBe(proxied.headers.get(h));
    expect(sha256(Buffer.from(await fromS3.arrayBuffer()))).toBe(sha256(bytes));
    expect(sha256(Buffer.from(await proxied.arrayBuffer()))).toBe(sha256(bytes));
  });

  test('a client that follows redirects (fetch, with its Authorization header) gets the bytes, and a Range', async () => {
    const whole = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: redirect.alice.token });
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);

    const part = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: redirect.alice.token, headers: { range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(1000, 2000))).toBe(true);
  });

  test('HEAD and a matching If-None-Match are still answered by Plinth', async () => {
    const head = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { method: 'HEAD', token: redirect.alice.token, redirect: 'manual' });
    const proxied = await proxy.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { method: 'HEAD', token: proxy.alice.token, redirect: 'manual' });
    expect(head.status).toBe(proxied.status);
    expect(head.headers.get('location')).toBeNull();
    expect(head.headers.get('etag')).toBe(`"${sha256(bytes)}"`);
    const cached = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: redirect.alice.token, headers: { 'if-none-match': `"${sha256(bytes)}"` }, redirect: 'manual' });
    expect(cached.status).toBe(304);
    expect(cached.headers.get('location')).toBeNull();
  });

  test('refusals are those of proxy mode, with no Location', async () => {
    const asked: [string, (s: Side) => Promise<Response>][] = [
      ['another user', (s) => s.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: s.bob.token, redirect: 'manual' })],
      ['no token', (s) => s.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { redirect: 'manual' })],
      ['the anon key', (s) => s.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { apikey: s.stack.anonKey, redirect: 'manual' })],
      ['a missing file', (s) => s.stack.fetch('/rpc/retrieve_file?p_file_path=docs/other.pdf', { token: s.alice.token, redirect: 'manual' })],
    ];
    for (const [who, ask] of asked) {
      const [r, p] = [await refusal(await ask(redirect)), await refusal(await ask(proxy))];
      expect(r, who).toEqual(p);
      expect(r.status, who).toBeGreaterThanOrEqual(400);
      expect(r.location, who).toBeNull();
    }
  });

  test(`the URL stops working after its lifetime (${LIFETIME} s): s3rver refuses it`, async () => {
    const res = await redirect.stack.fetch('/rpc/retrieve_file?p_file_path=docs/report.pdf', { token: redirect.alice.token, redirect: 'manual' });
    const location = res.headers.get('location')!;
    expect((await fetch(location)).status).toBe(200);
    const refused = await eventually('the presigned URL to expire', async () => {
      const later = await fetch(location);
      const body = await later.text();
      return later.status === 200 ? undefined : { status: later.status, body };
    });
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('Request has expired');
  });
});

describe('redirect mode: /storage/download (entity files)', () => {
  test('the row owner is redirected to the bytes; others get proxy mode\'s 404 and no Location', async () => {
    const bytes = randomBytes(5000);
    const ids: Record<string, number> = {};
    for (const s of [redirect, proxy]) {
      const [todo] = await (await s.stack.fetch('/todos', { method: 'POST', token: s.alice.token, json: { title: 'with attachment' }, headers: { prefer: 'return=representation' } })).json();
      const form = new FormData();
      form.append('entity', JSON.stringify({ table: 'todos', id: todo.id, field: 'attachment' }));
      form.append('file', new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }), 'plan.png');
      expect((await s.stack.fetch('/storage/upload', { method: 'POST', body: form, token: s.alice.token })).status).toBe(200);
      ids[s === redirect ? 'redirect' : 'proxy'] = todo.id;
    }
    const url = (s: Side) => `/storage/download/todos/${ids[s === redirect ? 'redirect' : 'proxy']}/attachment/plan.png`;

    const res = await redirect.stack.fetch(url(redirect), { token: redirect.alice.token, redirect: 'manual' });
    expect(res.status).toBe(302);
    const fromS3 = await fetch(res.headers.get('location')!);
    const proxied = await proxy.stack.fetch(url(proxy), { token: proxy.alice.token });
    for (const h of ['content-type', 'content-disposition']) expect(fromS3.headers.get(h), h).toBe(proxied.headers.get(h));
    expect(Buffer.from(await fromS3.arrayBuffer()).equals(bytes)).toBe(true);

    for (const [who, init] of [['bob', { token: 'bob' }], ['the anon key', { apikey: 'anon' }]] as const) {
      const ask = (s: Side) => s.stack.fetch(url(s), { ...('token' in init ? { token: s.bob.token } : { apikey: s.stack.anonKey }), redirect: 'manual' });
      const [r, p] = [await refusal(await ask(redirect)), await refusal(await ask(proxy))];
      expect(r, who).toEqual(p);
      expect(r.status, who).toBe(404);
      expect(r.location, who).toBeNull();
    }
  });
});

describe('redirect mode: buckets (Supabase Storage API)', () => {
  const bytes = randomBytes(70_000);

  beforeAll(async () => {
    for (const s of [redirect, proxy]) {
      const supabase = createClient(s.stack.url, s.stack.anonKey, {
        auth: { persistSession: false, autoRefreshToken: false },
        global: { headers: { authorization: `Bearer ${s.alice.token}` } },
        realtime: { transport: WebSocket as never },
      });
      expect((await supabase.storage.createBucket('photos', { public: false })).error).toBeNull();
      expect((await supabase.storage.createBucket('site', { public: true })).error).toBeNull();
      for (const b of ['photos', 'site']) {
        expect((await supabase.storage.from(b).upload('a/cat.png', bytes, { contentType: 'image/png', cacheControl: '120' })).error).toBeNull();
      }
    }
  });

  const client = (s: Side, token?: string) =>
    createClient(s.stack.url, s.stack.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      ...(token ? { global: { headers: { authorization: `Bearer ${token}` } } } : {}),
      realtime: { transport: WebSocket as never },
    });

  test('supabase-js download() follows the redirect and gets the bytes', async () => {
    const { data, error } = await client(redirect, redirect.alice.token).storage.from('photos').download('a/cat.png');
    expect(error).toBeNull();
    expect(Buffer.from(await data!.arrayBuffer()).equals(bytes)).toBe(true);
    const pub = await client(redirect).storage.from('site').download('a/cat.png');
    expect(pub.error).toBeNull();
    expect(Buffer.from(await pub.data!.arrayBuffer()).equals(bytes)).toBe(true);
  });

  test('authenticated, public and signed-URL downloads answer 302 with the proxy\'s headers; HEAD still answers here', async () => {
    const paths: [string, (s: Side) => Promise<string>][] = [
      ['authenticated', async () => '/storage/v1/object/authenticated/photos/a/cat.png'],
      ['object', async () => '/storage/v1/object/photos/a/cat.png?download=kitty.png'],
      ['public', async () => '/storage/v1/object/public/site/a/cat.png'],
      ['signed', async (s) => {
        const { data } = await client(s, s.alice.token).storage.from('photos').createSignedUrl('a/cat.png', 60);
        const signed = new URL(data!.signedUrl);
        return signed.pathname + signed.search;
      }],
    ];
    for (const [name, path] of paths) {
      const auth: Record<string, string> = name === 'public' || name === 'signed' ? {} : { authorization: `Bearer ${redirect.alice.token}` };
      const res = await fetch(`${redirect.stack.url}${await path(redirect)}`, { headers: auth, redirect: 'manual' });
      expect(res.status, name).toBe(302);
      expect(res.headers.get('cache-control'), name).toBe('no-store');
      const fromS3 = await fetch(res.headers.get('location')!);
      expect(fromS3.status, name).toBe(200);
      const proxyAuth: Record<string, string> = name === 'public' || name === 'signed' ? {} : { authorization: `Bearer ${proxy.alice.token}` };
      const proxied = await fetch(`${proxy.stack.url}${await path(proxy)}`, { headers: proxyAuth });
      expect(proxied.status, name).toBe(200);
      for (const h of ['content-type', 'content-disposition', 'cache-control']) expect(fromS3.headers.get(h), `${name} ${h}`).toBe(proxied.headers.get(h));
      expect(Buffer.from(await fromS3.arrayBuffer()).equals(bytes), name).toBe(true);
      await proxied.arrayBuffer();
    }
    const head = await fetch(`${redirect.stack.url}/storage/v1/object/photos/a/cat.png`, { method: 'HEAD', headers: { authorization: `Bearer ${redirect.alice.token}` }, redirect: 'manual' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(bytes.length));
  });

  test('a Range through the redirect is served by S3', async () => {
    // A closed range: s3rver reads a suffix range (bytes=-N) as bytes=0-N, unlike S3.
    const res = await fetch(`${redirect.stack.url}/storage/v1/object/photos/a/cat.png`, { headers: { authorization: `Bearer ${redirect.alice.token}`, range: 'bytes=65000-69999' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 65000-69999/${bytes.length}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(65000, 70000))).toBe(true);
  });

  test('refusals are those of proxy mode, with no Location; supabase-js sees the same error', async () => {
    const asked: [string, (s: Side) => Promise<Response>][] = [
      ['bob, private bucket', (s) => fetch(`${s.stack.url}/storage/v1/object/photos/a/cat.png`, { headers: { authorization: `Bearer ${s.bob.token}` }, redirect: 'manual' })],
      ['anon, private bucket, public path', (s) => fetch(`${s.stack.url}/storage/v1/object/public/photos/a/cat.png`, { redirect: 'manual' })],
      ['no token, authenticated path', (s) => fetch(`${s.stack.url}/storage/v1/object/authenticated/photos/a/cat.png`, { redirect: 'manual' })],
      ['a bad signed token', (s) => fetch(`${s.stack.url}/storage/v1/object/sign/photos/a/cat.png?token=nope`, { redirect: 'manual' })],
    ];
    for (const [who, ask] of asked) {
      const [r, p] = [await refusal(await ask(redirect)), await refusal(await ask(proxy))];
      expect(r, who).toEqual(p);
      expect(r.status, who).toBeGreaterThanOrEqual(400);
      expect(r.location, who).toBeNull();
    }
    const [r, p] = await Promise.all([redirect, proxy].map(async (s) => (await client(s, s.bob.token).storage.from('photos').download('a/cat.png')).error));
    expect(r).not.toBeNull();
    expect({ name: r!.name, status: (r as { status?: number }).status }).toEqual({ name: p!.name, status: (p as { status?: number }).status });
  });
});

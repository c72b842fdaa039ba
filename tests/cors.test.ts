// Browser apps on any origin: CORS on every answer (routes of the sidecar, PostgREST's, errors),
// preflights without a key, the allowed-origins setting; the OpenAPI document's address; long
// URLs as PostgREST takes them; and more schemas than `public`. From Node, and from a page on
// another origin in chromium (playwright-core), as an app developer's page would call Plinth.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startStack, type Stack, launchChromium } from './harness.ts';

/**
 * GET with a larger response-header allowance than fetch's 16 KiB: PostgREST repeats the URL in
 * Content-Location, so a client of long URLs needs room for it (browsers have it).
 */
function longGet(stack: Stack, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${stack.url}${path}`, { headers, maxHeaderSize: 256 * 1024 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

const OTHER = 'http://app.example.test';
const PUBLIC_URL = 'https://api.example.test';

let open: Stack;
let listed: Stack;

beforeAll(async () => {
  [open, listed] = await Promise.all([
    startStack({ env: { PLINTH_DB_SCHEMAS: 'public,api', PLINTH_PUBLIC_URL: PUBLIC_URL } }),
    startStack({ env: { PLINTH_CORS_ORIGINS: `${OTHER}, http://second.example.test:8080` } }),
  ]);
  for (const stack of [open, listed]) await stack.sql`insert into api.notes (body) values ('served from the api schema')`;
}, 180_000);

afterAll(async () => {
  await Promise.all([open?.destroy(), listed?.destroy()]);
});

const preflight = (stack: Stack, path: string, origin: string, method = 'POST', requested = 'apikey, content-type, prefer') =>
  fetch(`${stack.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': requested },
  });

describe('preflights', () => {
  test.each(['/posts', '/rpc/login', '/storage/upload', '/auth/v1/token', '/health', '/no/such/path'])('OPTIONS %s is answered without a key, as PostgREST does', async (path) => {
    const r = await preflight(open, path, OTHER);
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-allow-methods')).toBe('GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD');
    expect(r.headers.get('access-control-allow-headers')).toBe('Authorization, apikey, content-type, prefer, Accept, Accept-Language, Content-Language');
    expect(r.headers.get('access-control-max-age')).toBe('86400');
    // Never credentials: the console's refresh cookie must stay unusable from other origins.
    expect(r.headers.get('access-control-allow-credentials')).toBeNull();
    expect(await r.text()).toBe('');
  });

  test('a listed origin is echoed, with Vary: Origin', async () => {
    for (const origin of [OTHER, 'http://second.example.test:8080']) {
      const r = await preflight(listed, '/posts', origin);
      expect(r.status).toBe(200);
      expect(r.headers.get('access-control-allow-origin')).toBe(origin);
      expect(r.headers.get('vary')).toBe('Origin');
      expect(r.headers.get('access-control-allow-credentials')).toBeNull();
    }
  });

  test('an origin not listed is refused, and told why', async () => {
    const r = await preflight(listed, '/posts', 'http://evil.example.test');
    expect(r.status).toBe(403);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    expect(await r.json()).toMatchObject({ code: 'PLINTH403', message: 'Pages on http://evil.example.test may not call this API', hint: expect.stringContaining('PLINTH_CORS_ORIGINS') });
  });

  test('an OPTIONS request that is not a preflight is the API’s own: it still needs a key', async () => {
    const r = await fetch(`${open.url}/posts`, { method: 'OPTIONS', headers: { origin: OTHER } });
    expect(r.status).toBe(401);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    const keyed = await fetch(`${open.url}/posts`, { method: 'OPTIONS', headers: { origin: OTHER, apikey: open.anonKey } });
    expect(keyed.status).toBe(200);
    expect(keyed.headers.get('allow')).toContain('GET');
  });
});

describe('answers carry CORS headers', () => {
  const exposed = (r: Response) => (r.headers.get('access-control-expose-headers') ?? '').split(', ');
  const needed = ['Content-Range', 'Content-Location', 'Preference-Applied', 'ETag', 'Location', 'Range-Unit', 'Retry-After', 'WWW-Authenticate', 'Content-Disposition'];

  test('a table read through the proxy, once, with the headers clients need exposed', async () => {
    const r = await open.fetch('/posts?select=id', { apikey: open.anonKey, headers: { origin: OTHER, prefer: 'count=exact' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-range')).toMatch(/^\d+-\d+\/\d+$|^\*\/0$/);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(exposed(r)).toEqual(expect.arrayContaining(needed));
    // PostgREST adds none of its own: one value, not two.
    expect(r.headers.get('access-control-allow-origin')).not.toContain(',');
  });

  test('the proxy’s own 401 (no key) carries them', async () => {
    const r = await fetch(`${open.url}/posts`, { headers: { origin: OTHER } });
    expect(r.status).toBe(401);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('www-authenticate')).toBe('Bearer');
    expect(exposed(r)).toContain('WWW-Authenticate');
    expect((await r.json()).code).toBe('PGRST301');
  });

  test('PostgREST’s errors carry them', async () => {
    const r = await open.fetch('/no_such_table', { apikey: open.anonKey, headers: { origin: OTHER } });
    expect(r.status).toBe(404);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect((await r.json()).code).toBe('42P01');
  });

  test('the sidecar’s routes carry them, success and error', async () => {
    const ok = await fetch(`${open.url}/health`, { headers: { origin: OTHER } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('*');
    const bad = await fetch(`${open.url}/rpc/login`, { method: 'POST', headers: { origin: OTHER, 'content-type': 'application/json' }, body: '{"email":"nobody@example.test","password":"wrong-password"}' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('access-control-allow-origin')).toBe('*');
    expect(await bad.json()).toMatchObject({ message: 'Invalid email or password' });
    const unauth = await fetch(`${open.url}/rpc/retrieve_file?p_file_path=a.txt`, { headers: { origin: OTHER } });
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('access-control-allow-origin')).toBe('*');
  });

  test('a request without Origin gets no CORS headers', async () => {
    const r = await open.fetch('/posts', { apikey: open.anonKey });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('with a list, a listed origin is echoed and any other gets none (the browser then hides the answer)', async () => {
    const ok = await listed.fetch('/posts', { apikey: listed.anonKey, headers: { origin: OTHER } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(OTHER);
    expect(ok.headers.get('vary')).toContain('Origin');
    expect(exposed(ok)).toEqual(expect.arrayContaining(needed));
    const err = await fetch(`${listed.url}/posts`, { headers: { origin: OTHER } });
    expect(err.status).toBe(401);
    expect(err.headers.get('access-control-allow-origin')).toBe(OTHER);
    const other = await listed.fetch('/posts', { apikey: listed.anonKey, headers: { origin: 'http://evil.example.test' } });
    expect(other.status).toBe(200);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('access-control-expose-headers')).toBeNull();
  });
});

describe('the OpenAPI document names the public address', () => {
  test('PLINTH_PUBLIC_URL when set', async () => {
    const r = await open.fetch('/', { apikey: open.anonKey });
    expect(r.status).toBe(200);
    const doc = await r.json();
    expect(doc).toMatchObject({ host: 'api.example.test:443', basePath: '/', schemes: ['https'] });
  });

  test('else the host the request was sent to', async () => {
    const r = await listed.fetch('/', { apikey: listed.anonKey, headers: { origin: OTHER } });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe(OTHER);
    const doc = await r.json();
    expect(doc).toMatchObject({ host: `127.0.0.1:${listed.port}`, basePath: '/', schemes: ['http'] });
    expect(Object.keys(doc.paths)).toContain('/posts');
    expect(Number(r.headers.get('content-length'))).toBe(Buffer.byteLength(JSON.stringify(doc)));
  });
});

describe('long URLs', () => {
  const uuids = (n: number) => Array.from({ length: n }, () => randomUUID());

  test.each([420, 1080])('an in.() filter of %i uuids is answered by PostgREST', async (n) => {
    const ids = uuids(n);
    const inserted = await open.fetch('/cors_items', { method: 'POST', apikey: open.anonKey, json: { id: ids[n - 1], label: 'last' } });
    expect(inserted.status).toBe(201);
    const path = `/cors_items?id=in.(${ids.join(',')})`;
    expect(path.length).toBeGreaterThan(n === 420 ? 15_000 : 39_000);
    const r = await longGet(open, path, { apikey: open.anonKey, prefer: 'count=exact' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual([{ id: ids[n - 1], label: 'last' }]);
    expect(r.headers['content-range']).toBe('0-0/1');
  });

  test('past what PostgREST accepts: 414 that says so', async () => {
    const path = `/cors_items?id=in.(${uuids(1450).join(',')})`;
    const r = await open.fetch(path, { apikey: open.anonKey, headers: { origin: OTHER } });
    expect(r.status).toBe(414);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    const body = await r.json();
    expect(body).toMatchObject({ code: 'PLINTH414', hint: expect.stringContaining('POST') });
    expect(body.message).toMatch(/URL .*too long.*PostgREST accepts at most 50688/);
  });

  test('past what the front door reads: 431 that says so', async () => {
    const path = `/cors_items?id=in.(${uuids(2000).join(',')})`;
    const r = await open.fetch(path, { apikey: open.anonKey });
    expect(r.status).toBe(431);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(await r.json()).toMatchObject({ code: 'PLINTH431', message: "The request's URL and headers are longer than 65536 bytes in all" });
  });
});

describe('exposed schemas', () => {
  test('Accept-Profile picks a listed schema', async () => {
    const r = await open.fetch('/notes?select=body', { apikey: open.anonKey, headers: { 'accept-profile': 'api' } });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual([{ body: 'served from the api schema' }]);
  });

  test.each(['auth', 'storage'])('Accept-Profile: %s is refused', async (schema) => {
    const r = await open.fetch('/users', { apikey: open.serviceKey, headers: { 'accept-profile': schema } });
    expect(r.status).toBe(406);
    expect(await r.json()).toMatchObject({ code: 'PGRST106' });
  });

  test('without PLINTH_DB_SCHEMAS only public is served', async () => {
    const r = await listed.fetch('/notes', { apikey: listed.anonKey, headers: { 'accept-profile': 'api' } });
    expect(r.status).toBe(406);
  });

  test('PLINTH_DB_SCHEMAS=public,auth stops the start with one clear line', async () => {
    const failed = await startStack({ env: { PLINTH_DB_SCHEMAS: 'public,auth' }, expectFailure: true });
    try {
      expect(failed.exitCode).toBe(1);
      expect(failed.output.trim()).toBe('plinth: PLINTH_DB_SCHEMAS may not include auth: it holds private data (accounts, files, internals) that the API never serves');
    } finally {
      await failed.destroy();
    }
  });
});

describe('a page on another origin, in chromium', () => {
  let browser: Browser;
  let site: http.Server;
  let siteUrl: string;

  beforeAll(async () => {
    site = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>an app</title><p>an app on another origin</p>');
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => site?.close(resolve));
  });

  test('reads a table, reads a 401 body, POSTs JSON with Prefer, reads Content-Range', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(siteUrl);
    const result = await page.evaluate(
      async ({ api, key }) => {
        const read = await fetch(`${api}/posts?select=id,title`, { headers: { apikey: key, prefer: 'count=exact', range: '0-0' } });
        const denied = await fetch(`${api}/todos`);
        const note = `from the page ${Math.random()}`;
        const posted = await fetch(`${api}/guestbook`, {
          method: 'POST',
          headers: { apikey: key, 'content-type': 'application/json', prefer: 'return=representation' },
          body: JSON.stringify({ note }),
        });
        const profiled = await fetch(`${api}/notes?select=body`, { headers: { apikey: key, 'accept-profile': 'api' } });
        return {
          origin: location.origin,
          read: { status: read.status, range: read.headers.get('content-range'), body: await read.json() },
          denied: { status: denied.status, challenge: denied.headers.get('www-authenticate'), body: await denied.json() },
          posted: { status: posted.status, body: await posted.json(), note },
          profiled: { status: profiled.status, body: await profiled.json() },
        };
      },
      { api: open.url, key: open.anonKey },
    );
    expect(result.origin).not.toBe(new URL(open.url).origin);
    expect(result.read.status).toBeLessThan(300);
    expect(result.read.range).toMatch(/^(0-0|\*)\/\d+$/);
    expect(Array.isArray(result.read.body)).toBe(true);
    expect(result.denied).toMatchObject({ status: 401, challenge: 'Bearer', body: { code: 'PGRST301' } });
    expect(result.posted.status).toBe(201);
    expect(result.posted.body).toEqual([{ id: expect.any(Number), note: result.posted.note }]);
    expect(result.profiled).toEqual({ status: 200, body: [{ body: 'served from the api schema' }] });
    await context.close();
  });

  test('a request with credentials (cookies) from another origin is never readable', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(siteUrl);
    const outcomes = await page.evaluate(async ({ api }) => {
      const attempt = async (path: string, init: RequestInit) => {
        try {
          return `read ${(await fetch(`${api}${path}`, { ...init, credentials: 'include' })).status}`;
        } catch (err) {
          return `refused: ${(err as Error).name}`;
        }
      };
      return [
        await attempt('/health', {}),
        await attempt('/auth/refresh', { method: 'POST', headers: { 'x-plinth-session': 'cookie', 'content-type': 'application/json' }, body: '{}' }),
      ];
    }, { api: open.url });
    expect(outcomes).toEqual(['refused: TypeError', 'refused: TypeError']);
    await context.close();
  });

  test('a page on an origin not listed cannot read the API', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(siteUrl);
    const outcome = await page.evaluate(async ({ api, key }) => {
      try {
        const r = await fetch(`${api}/posts`, { headers: { apikey: key } });
        return `read ${r.status}`;
      } catch (err) {
        return `refused: ${(err as Error).name}`;
      }
    }, { api: listed.url, key: listed.anonKey });
    expect(outcome).toBe('refused: TypeError');
    await context.close();
  });
});

// How the sidecar serves the web console: /console/ with caching headers, SPA fallback, no
// escape from console/dist, and console/dist kept in step with its sources.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildConsole, buildNeed, CONSOLE_DIR, ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { REPO_ROOT, startStack, TEST_OUTPUT, type Stack } from './harness.ts';

let stack: Stack;
beforeAll(async () => {
  // The stack would build a missing or stale dist in the background; build first so every test sees it.
  await ensureConsoleBuilt();
  stack = await startStack();
});
afterAll(() => stack?.destroy());

const get = (p: string, headers: Record<string, string> = {}) => fetch(`${stack.url}${p}`, { headers, redirect: 'manual' });

/** A request whose path is sent exactly as written (fetch would resolve `..` and `%2e%2e` first). */
function rawGet(rawPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: stack.port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('/console redirects to /console/, which serves the page without any key', async () => {
  const r = await get('/console?x=1');
  expect(r.status).toBe(301);
  expect(r.headers.get('location')).toBe('/console/?x=1');

  const page = await get('/console/');
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(page.headers.get('cache-control')).toBe('no-cache');
  expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
  expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'");
  const html = await page.text();
  expect(html).toContain('<title>Plinth console</title>');
  expect(html).toMatch(/<script type="module" crossorigin src="\/console\/assets\/index-[\w-]+\.js"><\/script>/);
  // Nothing in the page points at another origin.
  expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
});

test('hashed assets are cached for a year; index.html is revalidated with an ETag', async () => {
  const html = await (await get('/console/')).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]);
  expect(assets.length).toBeGreaterThanOrEqual(2);
  for (const a of assets) {
    const r = await get(a);
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(r.headers.get('content-type')).toMatch(a.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
    const body = Buffer.from(await r.arrayBuffer());
    expect(body.equals(fs.readFileSync(path.join(CONSOLE_DIR, 'dist', a.slice('/console/'.length))))).toBe(true);
    // The bundle makes no request to another origin.
    if (a.endsWith('.js')) expect(body.toString()).not.toMatch(/fetch\(\s*["'`]https?:|XMLHttpRequest[^;]*https?:\/\//);
  }
  const first = await get('/console/');
  const etag = first.headers.get('etag')!;
  expect(etag).toMatch(/^W\/"/);
  const again = await get('/console/', { 'if-none-match': etag });
  expect(again.status).toBe(304);
  expect(await again.text()).toBe('');

  const head = await fetch(`${stack.url}/console/`, { method: 'HEAD' });
  expect(head.status).toBe(200);
  expect(head.headers.get('cache-control')).toBe('no-cache');
});

test('console routes fall back to index.html; missing assets and escapes are 404', async () => {
  for (const route of ['/console/files', '/console/tables/todos', '/console/admin', '/console/verify?token=abc']) {
    const r = await get(route);
    expect(r.status, route).toBe(200);
    expect(await r.text()).toContain('<title>Plinth console</title>');
  }
  const missing = await get('/console/assets/index-doesnotexist.js');
  expect(missing.status).toBe(404);
  expect(missing.headers.get('content-type')).toMatch(/^application\/json/);
  expect((await missing.json()).message).toContain('No console file');

  const pkg = fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8');
  const escapes = ['/console/../package.json', '/console/%2e%2e/package.json', '/console/..%2fpackage.json', '/console/assets/..%2f..%2f..%2fpackage.json', '/console/%2e%2e/%2e%2e/package.json', '/console/assets/%00.js'];
  for (const escape of escapes) {
    const r = await rawGet(escape);
    expect(r.status, escape).toBe(404);
    expect(r.body).not.toBe(pkg);
  }
});

test('console/dist is rebuilt when it is missing or older than the sources', async () => {
  // A copy of the console inside the repository (so `vite` resolves from node_modules).
  const copy = path.join(TEST_OUTPUT, 'console-build-copy');
  fs.rmSync(copy, { recursive: true, force: true });
  fs.mkdirSync(copy, { recursive: true });
  for (const entry of ['src', 'index.html', 'vite.config.ts']) fs.cpSync(path.join(CONSOLE_DIR, entry), path.join(copy, entry), { recursive: true });
  expect(buildNeed(copy)).toBe('missing');

  expect(await buildConsole(copy).done).toBe(true);
  const html = fs.readFileSync(path.join(copy, 'dist', 'index.html'), 'utf8');
  expect(html).toContain('/console/assets/index-');
  expect(buildNeed(copy)).toBe('none');
  // No temporary directory or lock is left behind.
  expect(fs.readdirSync(copy).sort()).toEqual(['dist', 'index.html', 'src', 'vite.config.ts']);

  const later = new Date(Date.now() + 5000);
  fs.utimesSync(path.join(copy, 'src', 'main.ts'), later, later);
  expect(buildNeed(copy)).toBe('stale');
  fs.rmSync(copy, { recursive: true, force: true });
});

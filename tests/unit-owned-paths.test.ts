// Which paths the sidecar serves itself and which go to PostgREST, without a stack: OwnedPaths on
// its own, then the real front door (app/server.ts) with every feature's routes registered, a fake
// key ring, and a PostgREST address where nothing listens.
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from '../sidecar/app/server.js';
import { healthRoutes } from '../sidecar/app/health.js';
import { OwnedPaths } from '../sidecar/app/owned-paths.js';
import { accountRoutes } from '../sidecar/auth/routes.js';
import type { AccountsService } from '../sidecar/auth/service.js';
import { consoleRoutes } from '../sidecar/console/routes.js';
import type { ConsoleService } from '../sidecar/console/service.js';
import { loadConfig } from '../sidecar/core/config.js';
import type { Plinth } from '../sidecar/core/context.js';
import { unauthorized } from '../sidecar/core/errors.js';
import type { KeyRing } from '../sidecar/core/keys.js';
import { createLogger } from '../sidecar/core/log.js';
import { realtimeRoutes } from '../sidecar/realtime/routes.js';
import type { RealtimeService } from '../sidecar/realtime/service.js';
import { storageRoutes } from '../sidecar/storage/routes.js';
import type { StorageService } from '../sidecar/storage/service.js';

describe('OwnedPaths', () => {
  const owned = new OwnedPaths();
  for (const pattern of ['/', '/health', '/rpc/login', '/auth/admin/users/:id', '/files/:bucket/objects', '/storage/*', '/console', '/console/*', '/console/*']) {
    owned.add(pattern);
  }

  it.each<[string, boolean]>([
    // a static route owns exactly its path
    ['/health', true],
    ['/rpc/login', true],
    ['/', true],
    ['/console', true],
    ['/health/', false],
    ['/healthz', false],
    ['/HEALTH', false],
    ['/rpc/login/', false],
    ['/rpc/logins', false],
    ['/rpc/other_function', false],
    ['/todos', false],
    // a parametric or wildcard route owns everything under its static prefix
    ['/auth/admin/users/0f8fad5b-d9cb-469f-a165-70867728950e', true],
    ['/auth/admin/users/', true],
    ['/auth/admin/users', false],
    ['/auth/admin', false],
    ['/files/avatars/objects', true],
    ['/files/avatars/anything/else', true],
    ['/files', false],
    ['/storage/abc', true],
    ['/storage/a/b/c', true],
    ['/storage/', true],
    ['/storage', false],
    ['/storagex/abc', false],
    ['/console/', true],
    ['/console/assets/index-abc.js', true],
    // the query string never decides
    ['/health?verbose=1', true],
    ['/?select=*', true],
    ['/rpc/login?', true],
    ['/storage/x?download=1', true],
    ['/todos?next=/storage/x', false],
    ['/todos?select=*&path=/health', false],
    ['/storage?x=/storage/', false],
  ])('%s → %s', (url, expected) => {
    expect(owned.owns(url)).toBe(expected);
  });

  it.each(['/*', '/:table', '/:schema/:table', '/*/rpc'])('refuses %s, which would take every path from the REST API', (pattern) => {
    expect(() => new OwnedPaths().add(pattern)).toThrow(`route ${pattern} would take every path from the REST API`);
  });
});

describe('the front door: a route registered by a feature is owned, anything else is proxied', () => {
  const verify = async (token: string) => {
    if (token === 'good') return { role: 'anon', exp: Math.floor(Date.now() / 1000) + 60 };
    throw unauthorized('JWT invalid: malformed token');
  };
  // Only what registering the routes and answering the few requests below touches.
  const keys = {
    jwksDocument: { keys: [{ kid: 'test-key' }] },
    forPostgrest: () => undefined,
    verifyForPostgrest: async (token: string) => ({ claims: await verify(token), forPostgrest: 'internal' }),
    verify,
    onReload: () => () => {},
  } as unknown as KeyRing;
  const plinth: Plinth = {
    config: loadConfig({ PLINTH_LOG_LEVEL: 'silent' }, os.tmpdir()),
    sql: (() => {
      throw new Error('no database in this test');
    }) as unknown as Plinth['sql'],
    callerSql: (() => {
      throw new Error('no database in this test');
    }) as unknown as Plinth['callerSql'],
    keys,
    // Port 9 (discard): nothing listens, so a proxied request meets a refused connection.
    postgrest: { origin: 'http://127.0.0.1:9' },
    log: createLogger('silent'),
    health: new Map(),
  };
  const registered: string[] = [];
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = await createServer(plinth);
    const { app } = server;
    app.addHook('onRoute', (route) => void registered.push(route.url));
    // The same plugins app/start.ts registers, with stand-ins for the services they are handed.
    await app.register(healthRoutes, { plinth });
    await app.register(storageRoutes, { plinth, storage: { plinth, backend: {}, writing: new Set(), stop() {} } as unknown as StorageService });
    await app.register(realtimeRoutes, { plinth, realtime: { hub: { position: '0' }, tables: {}, clients: new Set(), stop() {} } as unknown as RealtimeService });
    await app.register(consoleRoutes, { plinth, consoleBuild: { building: false, error: null, stop() {} } as ConsoleService });
    await app.register(accountRoutes, { plinth, accounts: { mailer: {}, stop() {} } as unknown as AccountsService });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await server?.app.close();
  });

  it('owns every route the features registered, parameters and wildcards filled in', () => {
    expect(registered).toEqual(expect.arrayContaining(['/health', '/rpc/login', '/rpc/store_file', '/realtime', '/console/*', '/auth/admin/users/:id']));
    const sample = (url: string) => url.replace(/:[^/]+/g, 'x').replace(/\*/g, 'a/b');
    expect(registered.filter((url) => !server.owned.owns(sample(url)))).toEqual([]);
  });

  it.each(['/todos', '/rpc/some_app_function', '/', '/auth', '/storage'])('does not own %s', (url) => {
    expect(server.owned.owns(url)).toBe(false);
  });

  it('answers an owned path from the feature route', async () => {
    const r = await fetch(`${base}/auth/jwks`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ keys: [{ kid: 'test-key' }] });
  });

  it('sends other paths to the proxy: 401 without a key, 503 when PostgREST cannot be reached', async () => {
    const noKey = await fetch(`${base}/todos`);
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('www-authenticate')).toBe('Bearer');
    expect((await noKey.json()).message).toMatch(/^No API key found in request/);

    const badKey = await fetch(`${base}/todos`, { headers: { apikey: 'forged' } });
    expect(badKey.status).toBe(401);
    expect((await badKey.json()).message).toBe('JWT invalid: malformed token');

    const down = await fetch(`${base}/todos?select=*`, { headers: { apikey: 'good' } });
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ code: 'PLINTH503', message: 'The REST API (PostgREST) is unavailable; the request was not sent. Try again shortly' });
    expect(down.headers.get('retry-after')).toBe('1');
  });

  it('answers an unknown path under an owned prefix itself, not from PostgREST', async () => {
    const r = await fetch(`${base}/storage/nothing-here`, { headers: { apikey: 'good' } });
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ code: 'PLINTH404', message: 'No route GET /storage/nothing-here' });
  });
});

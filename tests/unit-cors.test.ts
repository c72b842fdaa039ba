// The CORS policy and the OpenAPI rewrite without a stack: what each Origin gets, what a
// preflight answers, and the settings that configure them.
import { describe, expect, it } from 'vitest';
import { allowedHeaders, createCors, EXPOSED_HEADERS, isPreflight } from '../sidecar/app/cors.js';
import { withServer } from '../sidecar/app/proxy.js';
import { ConfigError, loadConfig } from '../sidecar/core/config.js';

const pairs = (flat: readonly string[] | null) => (flat === null ? null : Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]])));

describe('createCors', () => {
  it('allows any origin with *, never credentials, the same array every time', () => {
    const cors = createCors('*');
    expect(pairs(cors.forOrigin('https://a.example'))).toEqual({ 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSED_HEADERS });
    expect(cors.forOrigin('https://a.example')).toBe(cors.forOrigin('http://b.example'));
    expect(cors.rawLines).toBe(`access-control-allow-origin: *\r\naccess-control-expose-headers: ${EXPOSED_HEADERS}\r\n`);
  });

  it('echoes a listed origin with Vary, and gives any other only Vary', () => {
    const cors = createCors(['https://app.example']);
    expect(pairs(cors.forOrigin('https://app.example'))).toEqual({ 'access-control-allow-origin': 'https://app.example', 'access-control-expose-headers': EXPOSED_HEADERS, vary: 'Origin' });
    expect(pairs(cors.forOrigin('https://app.example.evil'))).toEqual({ vary: 'Origin' });
    expect(pairs(cors.forOrigin('null'))).toEqual({ vary: 'Origin' });
    expect(cors.rawLines).toBe('');
  });

  it.each<[string, '*' | string[], string, number, Record<string, string>]>([
    ['any origin', '*', 'https://x.example', 200, { 'access-control-allow-origin': '*', 'access-control-max-age': '86400' }],
    ['a listed origin', ['https://x.example'], 'https://x.example', 200, { 'access-control-allow-origin': 'https://x.example', vary: 'Origin' }],
    ['another origin', ['https://x.example'], 'https://y.example', 403, { vary: 'Origin' }],
  ])('preflight from %s', (_name, origins, origin, status, headers) => {
    const answer = createCors(origins).preflight(origin, 'apikey,Prefer');
    expect(answer.status).toBe(status);
    expect(answer.headers).toMatchObject(headers);
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
    if (status === 200) {
      expect(answer.headers['access-control-allow-methods']).toBe('GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD');
      expect(answer.body).toBe('');
    } else {
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'PLINTH403', message: `Pages on ${origin} may not call this API` });
    }
  });

  it.each<[string | undefined, string]>([
    [undefined, 'Authorization, Accept, Accept-Language, Content-Language'],
    ['Foo,Bar', 'Authorization, Foo, Bar, Accept, Accept-Language, Content-Language'],
    [' apikey , content-type,, prefer ', 'Authorization, apikey, content-type, prefer, Accept, Accept-Language, Content-Language'],
  ])('allowed headers for %j', (requested, expected) => expect(allowedHeaders(requested)).toBe(expected));

  it.each<[string, Record<string, string>, boolean]>([
    ['OPTIONS', { origin: 'https://a', 'access-control-request-method': 'POST' }, true],
    ['OPTIONS', { origin: 'https://a' }, false],
    ['OPTIONS', { 'access-control-request-method': 'POST' }, false],
    ['GET', { origin: 'https://a', 'access-control-request-method': 'POST' }, false],
  ])('isPreflight(%s, %j) is %s', (method, headers, expected) => expect(isPreflight(method, headers)).toBe(expected));

  it('lists the headers clients read', () => {
    for (const h of ['Content-Range', 'Content-Location', 'Preference-Applied', 'ETag', 'Location', 'Range-Unit', 'Retry-After', 'WWW-Authenticate', 'Content-Disposition']) {
      expect(EXPOSED_HEADERS.split(', ')).toContain(h);
    }
  });
});

describe('withServer', () => {
  const server = { scheme: 'https', host: 'api.example.com:443', basePath: '/' };
  it('replaces the address of a Swagger document', () => {
    const doc = withServer('{"swagger":"2.0","host":"127.0.0.1:3000","basePath":"/","schemes":["http"],"paths":{"/":{}}}', server);
    expect(JSON.parse(doc)).toEqual({ swagger: '2.0', host: 'api.example.com:443', basePath: '/', schemes: ['https'], paths: { '/': {} } });
  });
  it.each(['not json', '[1,2]', '{"openapi":"3.0.0"}', 'null'])('leaves %j as it is', (body) => expect(withServer(body, server)).toBe(body));
});

describe('configuration', () => {
  const load = (env: Record<string, string>) => loadConfig(env, '/srv/app');

  it.each<[Record<string, string>, unknown]>([
    [{}, '*'],
    [{ PLINTH_CORS_ORIGINS: '*' }, '*'],
    [{ PLINTH_CORS_ORIGINS: 'https://App.Example.com/, http://localhost:5173' }, ['https://app.example.com', 'http://localhost:5173']],
    [{ PLINTH_CORS_ORIGINS: 'https://a.example:443,https://a.example' }, ['https://a.example']],
  ])('PLINTH_CORS_ORIGINS %j', (env, expected) => expect(load(env).frontDoor.corsOrigins).toEqual(expected));

  it.each(['https://a.example/app', 'a.example', 'ftp://a.example', 'https://u:p@a.example', ',', 'https://a.example?x=1'])('PLINTH_CORS_ORIGINS=%j is refused', (value) => {
    expect(() => load({ PLINTH_CORS_ORIGINS: value })).toThrow(ConfigError);
    expect(() => load({ PLINTH_CORS_ORIGINS: value })).toThrow(/PLINTH_CORS_ORIGINS must be \* or a comma-separated list of origins/);
  });

  it.each<[Record<string, string>, string[]]>([
    [{}, ['public']],
    [{ PLINTH_DB_SCHEMAS: 'public,api' }, ['public', 'api']],
    [{ PLINTH_DB_SCHEMAS: ' api , public, api' }, ['api', 'public']],
  ])('PLINTH_DB_SCHEMAS %j', (env, expected) => expect(load(env).database.schemas).toEqual(expected));

  it.each(['auth', 'storage', 'realtime', 'plinth', 'extensions', 'pg_catalog', 'information_schema', 'pg_toast', 'pg_temp_1'])('PLINTH_DB_SCHEMAS may not expose %s', (schema) => {
    expect(() => load({ PLINTH_DB_SCHEMAS: `public,${schema}` })).toThrow(
      `PLINTH_DB_SCHEMAS may not include ${schema}: it holds private data (accounts, files, internals) that the API never serves`,
    );
  });

  it.each(['"Api"', 'api;drop', 'API', ','])('PLINTH_DB_SCHEMAS=%j is refused', (value) => expect(() => load({ PLINTH_DB_SCHEMAS: value })).toThrow(ConfigError));

  it('knows whether PLINTH_PUBLIC_URL was given', () => {
    expect(load({}).publicUrlSet).toBe(false);
    expect(load({ PLINTH_PUBLIC_URL: 'https://api.example.com' }).publicUrlSet).toBe(true);
  });
});

// The REST API through the sidecar's front door: keys, RLS per role, PostgREST filters, bad tokens.
import * as jose from 'jose';
import { createHmac } from 'node:crypto';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startStack, type Stack, type TestUser } from './harness.ts';

let stack: Stack;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  stack = await startStack();
  alice = await stack.createUser();
  bob = await stack.createUser();
  const [project] = await stack.sql`insert into projects (user_id, name) values (${alice.id}, 'Home') returning id`;
  await stack.sql`
    insert into todos (user_id, project_id, title, priority, done) values
      (${alice.id}, ${project.id}, 'Buy milk', 1, false),
      (${alice.id}, ${project.id}, 'buy bread', 2, true),
      (${alice.id}, null, 'Write report', 3, false),
      (${alice.id}, null, 'Call mom', 5, false),
      (${bob.id}, null, 'Bob secret', 4, false)`;
  await stack.sql`insert into posts (author_id, title, published) values (${bob.id}, 'Hello world', true), (${bob.id}, 'Draft', false)`;
});
afterAll(() => stack?.destroy());

const titles = async (r: Response) => ((await r.json()) as { title: string }[]).map((t) => t.title);

describe('keys and roles', () => {
  test('a request with neither a token nor an apikey is refused with 401 before PostgREST', async () => {
    const r = await stack.fetch('/todos');
    expect(r.status).toBe(401);
    expect(r.headers.get('server')).toBeNull(); // PostgREST would have said "postgrest/12.0.2"
    expect(await r.json()).toMatchObject({ code: 'PGRST301', message: expect.stringMatching(/No API key/) });
  });

  test('the anon key reads public rows and nothing private', async () => {
    expect(await titles(await stack.fetch('/posts', { apikey: stack.anonKey }))).toEqual(['Hello world']);
    const r = await stack.fetch('/todos', { apikey: stack.anonKey });
    expect(r.status).toBe(403); // no grant on todos for anon
    expect((await r.json()).message).toMatch(/permission denied for table todos/);
  });

  test('each user sees and changes only their own rows', async () => {
    expect(await titles(await stack.fetch('/todos?order=id', { token: bob.token }))).toEqual(['Bob secret']);
    expect(await titles(await stack.fetch('/todos?order=id', { token: alice.token }))).toEqual(['Buy milk', 'buy bread', 'Write report', 'Call mom']);

    // Bob's update and delete of Alice's rows match nothing.
    const patch = await stack.fetch('/todos?title=eq.Buy%20milk', { method: 'PATCH', token: bob.token, json: { title: 'hacked' }, headers: { prefer: 'return=representation' } });
    expect(patch.status).toBe(200);
    expect(await patch.json()).toEqual([]);
    const del = await stack.fetch('/todos?title=eq.Call%20mom', { method: 'DELETE', token: bob.token, headers: { prefer: 'return=representation' } });
    expect(await del.json()).toEqual([]);
    // Bob cannot insert a row owned by Alice.
    const forged = await stack.fetch('/todos', { method: 'POST', token: bob.token, json: { title: 'forged', user_id: alice.id } });
    expect(forged.status).toBe(403);
    expect((await forged.json()).code).toBe('42501');

    const [{ n }] = await stack.sql`select count(*)::int as n from todos where user_id = ${alice.id} and title in ('Buy milk', 'Call mom')`;
    expect(n).toBe(2);
  });

  test('a user can change their own rows', async () => {
    const r = await stack.fetch('/todos?title=eq.Write%20report', { method: 'PATCH', token: alice.token, json: { done: true }, headers: { prefer: 'return=representation' } });
    expect((await r.json())[0]).toMatchObject({ title: 'Write report', done: true });
    await stack.fetch('/todos?title=eq.Write%20report', { method: 'PATCH', token: alice.token, json: { done: false } });
  });

  test('the service key sees every row', async () => {
    const r = await stack.fetch('/todos?select=title&order=id', { apikey: stack.serviceKey });
    expect(await titles(r)).toEqual(['Buy milk', 'buy bread', 'Write report', 'Call mom', 'Bob secret']);
    expect(await titles(await stack.fetch('/posts?order=id', { apikey: stack.serviceKey }))).toEqual(['Hello world', 'Draft']);
  });

  test('a bearer token wins over the apikey header', async () => {
    const r = await stack.fetch('/todos', { apikey: stack.anonKey, token: bob.token });
    expect(await titles(r)).toEqual(['Bob secret']);
  });
});

describe('PostgREST filters through the proxy', () => {
  const get = (q: string, headers: Record<string, string> = {}) => stack.fetch(`/todos?${q}`, { token: alice.token, headers });

  test.each([
    ['priority=eq.2', ['buy bread']],
    ['priority=neq.2&order=priority', ['Buy milk', 'Write report', 'Call mom']],
    ['priority=gt.2&order=priority', ['Write report', 'Call mom']],
    ['priority=lte.2&order=priority', ['Buy milk', 'buy bread']],
    ['title=like.Buy*', ['Buy milk']],
    ['title=ilike.buy*&order=priority', ['Buy milk', 'buy bread']],
    ['priority=in.(1,5)&order=priority', ['Buy milk', 'Call mom']],
    ['order=priority.desc', ['Call mom', 'Write report', 'buy bread', 'Buy milk']],
    ['order=priority&limit=2', ['Buy milk', 'buy bread']],
    ['order=priority&limit=2&offset=2', ['Write report', 'Call mom']],
    ['done=is.true', ['buy bread']],
  ])('%s', async (q, expected) => {
    const r = await get(q);
    expect(r.status).toBe(200);
    expect(await titles(r)).toEqual(expected);
  });

  test('select with embedding', async () => {
    const r = await get('select=title,projects(name)&project_id=not.is.null&order=priority');
    expect(await r.json()).toEqual([
      { title: 'Buy milk', projects: { name: 'Home' } },
      { title: 'buy bread', projects: { name: 'Home' } },
    ]);
  });

  test('Prefer: count=exact with Content-Range, and Range headers pass through', async () => {
    const r = await get('select=title&order=priority', { prefer: 'count=exact', range: '0-1' });
    expect(r.status).toBe(206);
    expect(r.headers.get('content-range')).toBe('0-1/4');
    expect(await titles(r)).toEqual(['Buy milk', 'buy bread']);
  });

  test('Prefer: return=representation on insert, and Content-Profile errors from PostgREST', async () => {
    const r = await stack.fetch('/todos?select=title,priority,user_id', { method: 'POST', token: alice.token, json: { title: 'New one', priority: 9 }, headers: { prefer: 'return=representation' } });
    expect(r.status).toBe(201);
    expect(await r.json()).toEqual([{ title: 'New one', priority: 9, user_id: alice.id }]);
    await stack.fetch('/todos?title=eq.New%20one', { method: 'DELETE', token: alice.token });

    const hidden = await stack.fetch('/users', { token: alice.token, headers: { 'accept-profile': 'auth' } });
    expect(hidden.status).toBe(406);
    expect((await hidden.json()).code).toBe('PGRST106'); // the auth schema is not exposed
  });

  test('a large JSON body streams through the proxy', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => ({ title: `bulk ${i} ${'x'.repeat(200)}` }));
    const r = await stack.fetch('/todos', { method: 'POST', token: bob.token, json: rows, headers: { prefer: 'count=exact' } });
    expect(r.status).toBe(201);
    const count = await stack.fetch('/todos?title=like.bulk*', { token: bob.token, headers: { prefer: 'count=exact' }, method: 'HEAD' });
    expect(count.headers.get('content-range')).toBe('0-4999/5000');
    await stack.fetch('/todos?title=like.bulk*', { method: 'DELETE', token: bob.token });
  });
});

describe('bad tokens get 401 and reach nothing', () => {
  async function forgeries(): Promise<[string, string][]> {
    const valid = alice.token;
    const [h, p] = valid.split('.');
    const claims = { sub: alice.id, role: 'service_role', aud: 'plinth', exp: Math.floor(Date.now() / 1000) + 3600 };
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const kid = JSON.parse(Buffer.from(h, 'base64url').toString()).kid;

    const expired = await stack.mint({ sub: alice.id, role: 'authenticated' }, -60);
    const otherSig = bob.token.split('.')[2];
    const tampered = `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), role: 'service_role' })}.${valid.split('.')[2]}`;
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const [row] = await stack.sql`select public_jwk from auth.signing_keys order by created_at desc limit 1`;
    const publicKeyText = JSON.stringify(row.public_jwk);
    const hsInput = `${b64({ alg: 'HS256', typ: 'JWT', kid })}.${b64(claims)}`;
    const hs256 = `${hsInput}.${createHmac('sha256', publicKeyText).update(hsInput).digest('base64url')}`;
    const pem = await jose.exportSPKI(await jose.importJWK(row.public_jwk, 'ES256') as jose.CryptoKey);
    const hs256pem = `${hsInput}.${createHmac('sha256', pem).update(hsInput).digest('base64url')}`;
    const foreignPair = await jose.generateKeyPair('ES256');
    const foreign = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).sign(foreignPair.privateKey);

    return [
      ['expired', expired],
      ['wrong signature', `${h}.${p}.${otherSig}`],
      ['tampered payload', tampered],
      ['alg none', none],
      ['HS256 signed with the public JWK text', hs256],
      ['HS256 signed with the public key PEM', hs256pem],
      ['signed by a key that is not Plinth\'s', foreign],
      ['garbage', 'not-a-jwt'],
    ];
  }

  test('each forgery is refused as bearer and as apikey, and writes nothing', async () => {
    const before = (await stack.sql`select count(*)::int as n from todos`)[0].n;
    for (const [name, token] of await forgeries()) {
      for (const how of ['token', 'apikey'] as const) {
        const r = await stack.fetch('/todos', { method: 'POST', [how]: token, json: { title: `forged ${name}`, user_id: alice.id } });
        expect(r.status, `${name} as ${how}`).toBe(401);
        const body = await r.json();
        expect(body.code, name).toBe('PGRST301');
        expect(body.message, name).toMatch(name === 'expired' ? /JWT expired/ : /JWT invalid/);
        expect(r.headers.get('www-authenticate')).toBe('Bearer');
      }
    }
    const after = (await stack.sql`select count(*)::int as n from todos`)[0].n;
    expect(after).toBe(before);
  });

  test('PostgREST itself refuses the same forgeries, and every token a user holds (defence in depth)', async () => {
    // Straight to PostgREST's unix socket, bypassing the sidecar.
    const client = new Client('http://localhost', { socketPath: `${stack.dataDir}/postgrest.sock` });
    const status = async (token: string) => {
      const res = await client.request({ method: 'GET', path: '/todos', headers: { authorization: `Bearer ${token}` } });
      await res.body.text();
      return res.statusCode;
    };
    try {
      for (const [name, token] of await forgeries()) expect(await status(token), name).toBe(401);
      // Genuine user tokens and API keys are verified by the sidecar only: PostgREST refuses them.
      expect(await status(alice.token)).toBe(401);
      expect(await status(stack.serviceKey)).toBe(401);
      // ...and accepts the same claims signed with the internal secret, so the refusals above are about the tokens.
      const [{ secret }] = await stack.sql`select secret from auth.postgrest_secret`;
      const internal = await new jose.SignJWT(jose.decodeJwt(alice.token)).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
      expect(await status(internal)).toBe(200);
    } finally {
      await client.close();
    }
  });
});

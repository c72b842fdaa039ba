// Accounts over HTTP against the real stack: signup, login, sessions with rotating refresh
// tokens, validation, rate limits, app roles and who may change them.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { downAndUpAgain, startStack, type Stack } from './harness.ts';

const PER_EMAIL = 4;
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    env: { PLINTH_RATE_LIMIT_PER_IP: '1000', PLINTH_RATE_LIMIT_PER_EMAIL: String(PER_EMAIL), PLINTH_RATE_LIMIT_WINDOW: '600' },
  });
});
afterAll(() => stack?.destroy());

const email = () => `acct-${randomUUID().slice(0, 8)}@Example.test`;
const PASSWORD = 'correct horse battery staple';

function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}
function headerOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
}

async function signup(address = email(), password = PASSWORD) {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: address, password } });
  expect(r.status).toBe(201);
  return r.json();
}

async function login(address: string, password = PASSWORD) {
  const r = await stack.fetch('/rpc/login', { method: 'POST', json: { email: address, password } });
  expect(r.status).toBe(200);
  const body = await r.json();
  expect(body).toHaveLength(1);
  return body[0];
}

const refresh = (refresh_token: string) => stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token } });

describe('sessions', () => {
  test('signup → login → query as the user → refresh → reuse revokes the family → logout', async () => {
    const address = email();
    const created = await signup(address);
    expect(Object.keys(created)).toEqual(['token', 'refresh_token', 'expires_in', 'user']);
    expect(created.user).toMatchObject({ email: address.toLowerCase(), app_role: 'editor' });
    expect(created.user.password_hash).toBeUndefined();

    const session = await login(address.toUpperCase());
    expect(Object.keys(session)).toEqual(['token', 'refresh_token', 'expires_in', 'user']);
    expect(session.expires_in).toBe(3600);
    const claims = claimsOf(session.token);
    expect(claims).toMatchObject({ sub: created.user.id, email: address.toLowerCase(), role: 'authenticated', app_role: 'editor', aud: 'authenticated' });
    // GoTrue's claims ride along, for supabase-js and policies written for Supabase.
    expect(claims).toMatchObject({ app_metadata: { provider: 'email', providers: ['email'], app_role: 'editor' }, user_metadata: {}, is_anonymous: false, session_id: expect.any(String) });
    expect((claims.exp as number) - (claims.iat as number)).toBe(3600);
    const jwks = await (await stack.fetch('/auth/jwks')).json();
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(headerOf(session.token).kid);

    // The token works through PostgREST, under RLS.
    const todo = await stack.fetch('/todos', { method: 'POST', token: session.token, json: { title: 'mine' }, headers: { prefer: 'return=representation' } });
    expect(todo.status).toBe(201);
    expect((await todo.json())[0]).toMatchObject({ title: 'mine', user_id: created.user.id });
    expect((await (await stack.fetch('/todos', { token: session.token })).json()).map((t: { title: string }) => t.title)).toEqual(['mine']);

    const me = await stack.fetch('/auth/user', { token: session.token });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ id: created.user.id, email: address.toLowerCase(), app_role: 'editor' });

    // Refresh rotates: a new pair, the new access token works.
    const r1 = await refresh(session.refresh_token);
    expect(r1.status).toBe(200);
    const second = await r1.json();
    expect(second.refresh_token).not.toBe(session.refresh_token);
    expect(claimsOf(second.token).sub).toBe(created.user.id);
    expect((await stack.fetch('/todos', { token: second.token })).status).toBe(200);
    const r2 = await refresh(second.refresh_token);
    expect(r2.status).toBe(200);
    const third = await r2.json();

    // Presenting an already-used token: 401, and the whole family dies, newest token included.
    const reuse = await refresh(session.refresh_token);
    expect(reuse.status).toBe(401);
    expect(await reuse.json()).toMatchObject({ code: 'PGRST301', message: expect.stringMatching(/refresh token/i) });
    expect((await refresh(third.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: third.token })).status).toBe(401);

    // Another sign-in is a new family, untouched by that revocation; logout ends it.
    const fresh = await login(address);
    const logout = await stack.fetch('/auth/logout', { method: 'POST', token: fresh.token });
    expect(logout.status).toBe(204);
    expect((await refresh(fresh.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: fresh.token })).status).toBe(401);
  });

  test('the same refresh token twice within moments (two tabs of one browser) keeps the session; a stale one still ends it', async () => {
    const session = await signup();
    // Sent twice at once, and once more right after: every answer is a working pair.
    const [a, b] = await Promise.all([refresh(session.refresh_token), refresh(session.refresh_token)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const late = await refresh(session.refresh_token);
    expect(late.status).toBe(200);
    const pairs = [await a.json(), await b.json(), await late.json()];
    // The same successor every time: concurrent refreshes never fork the session.
    expect(new Set(pairs.map((p) => p.refresh_token)).size).toBe(1);
    for (const p of pairs) expect((await stack.fetch('/auth/user', { token: p.token })).status).toBe(200);
    // One tab goes on with its pair; once a successor has been used, the old token is reuse.
    const r = await refresh(pairs[0].refresh_token);
    expect(r.status).toBe(200);
    const current = await r.json();
    expect((await refresh(session.refresh_token)).status).toBe(401);
    expect((await refresh(current.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: current.token })).status).toBe(401);
  });

  test('logout with scope global ends every session of the user, and only theirs', async () => {
    const address = email();
    const a = await signup(address);
    const b = await login(address);
    const other = await signup();
    expect((await stack.fetch('/auth/logout', { method: 'POST', token: a.token, json: { scope: 'global' } })).status).toBe(204);
    expect((await refresh(a.refresh_token)).status).toBe(401);
    expect((await refresh(b.refresh_token)).status).toBe(401);
    expect((await refresh(other.refresh_token)).status).toBe(200);
  });

  test('logout and /auth/user need a user token, not an API key', async () => {
    expect((await stack.fetch('/auth/logout', { method: 'POST' })).status).toBe(401);
    const r = await stack.fetch('/auth/logout', { method: 'POST', apikey: stack.anonKey });
    expect(r.status).toBe(403);
    expect((await r.json()).message).toMatch(/access token/);
    expect((await stack.fetch('/auth/user', { apikey: stack.serviceKey })).status).toBe(403);
    expect((await stack.fetch('/auth/user', { token: 'not-a-jwt' })).status).toBe(401);
  });

  test('an unknown or malformed refresh token is refused with 401', async () => {
    expect((await refresh('x'.repeat(43))).status).toBe(401);
    expect((await stack.fetch('/auth/refresh', { method: 'POST', json: {} })).status).toBe(400);
  });

  test('two users see only their own rows with tokens from /rpc/login', async () => {
    const [alice, bob] = [email(), email()];
    await signup(alice);
    await signup(bob);
    const a = await login(alice);
    const b = await login(bob);
    for (const [s, title] of [[a, 'alice todo'], [b, 'bob todo']] as const) {
      expect((await stack.fetch('/todos', { method: 'POST', token: s.token, json: { title } })).status).toBe(201);
    }
    expect((await (await stack.fetch('/todos', { token: a.token })).json()).map((t: { title: string }) => t.title)).toEqual(['alice todo']);
    expect((await (await stack.fetch('/todos', { token: b.token })).json()).map((t: { title: string }) => t.title)).toEqual(['bob todo']);
    // Bob cannot touch Alice's row: RLS hides it, so the update matches nothing.
    const sneaky = await stack.fetch('/todos?title=eq.alice%20todo', { method: 'PATCH', token: b.token, json: { done: true }, headers: { prefer: 'return=representation' } });
    expect(await sneaky.json()).toEqual([]);
  });
});

describe('login and signup input', () => {
  test('bad credentials answer exactly the seed body, for an unknown email as for a wrong password', async () => {
    const address = email();
    await signup(address);
    for (const json of [{ email: address, password: 'wrong password!' }, { email: email(), password: PASSWORD }]) {
      const r = await stack.fetch('/rpc/login', { method: 'POST', json });
      expect(r.status).toBe(400);
      expect(await r.text()).toBe('{"message":"Invalid email or password"}');
    }
  });

  test('an account made without a password cannot log in with any password', async () => {
    const user = await stack.createUser();
    const r = await stack.fetch('/rpc/login', { method: 'POST', json: { email: user.email, password: PASSWORD } });
    expect(r.status).toBe(400);
  });

  test('duplicate email in another case → 409; weak or oversized passwords → 400', async () => {
    const address = email();
    await signup(address);
    const dup = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: address.toUpperCase(), password: PASSWORD } });
    expect(dup.status).toBe(409);
    expect((await dup.json()).message).toBe('An account with this email already exists');

    const short = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: email(), password: 'seven77' } });
    expect(short.status).toBe(400);
    expect(await short.json()).toMatchObject({ code: 'PLINTH400', message: 'Password must be at least 8 characters long' });
    const long = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: email(), password: 'é'.repeat(513) } });
    expect(long.status).toBe(400);
    expect((await long.json()).message).toBe('Password must be at most 1024 bytes long');
    // Exactly at the limits is fine.
    expect((await stack.fetch('/rpc/signup', { method: 'POST', json: { email: email(), password: 'é'.repeat(512) } })).status).toBe(201);
    expect((await stack.fetch('/rpc/signup', { method: 'POST', json: { email: email(), password: '12345678' } })).status).toBe(201);
  });

  test('unknown fields, wrong types, missing fields and bad emails are refused before any handler', async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['/rpc/signup', { email: email(), password: PASSWORD, app_role: 'admin' }, /unknown field "app_role"/],
      ['/rpc/signup', { email: email(), password: 12345678 }, /body\.password must be of type string/],
      ['/rpc/login', { email: email() }, /missing the field "password"/],
      ['/rpc/login', { email: 'not-an-email', password: PASSWORD }, /body\.email is not an email address/],
      ['/rpc/login', ['a', 'b'], /body must be of type object/],
      ['/rpc/signup', { email: 'nul\u0000@example.test', password: PASSWORD }, /body\.email is not an email address/],
      ['/rpc/login', { email: 'two@at@example.test', password: PASSWORD }, /body\.email is not an email address/],
      ['/auth/refresh', { refresh_token: 5 }, /must be of type string/],
      ['/auth/magic-link', { email: email(), redirect: 'http://evil' }, /unknown field "redirect"/],
    ];
    for (const [path, json, message] of cases) {
      const r = await stack.fetch(path, { method: 'POST', json });
      expect(r.status, path).toBe(400);
      const body = await r.json();
      expect(Object.keys(body).sort()).toEqual(['code', 'details', 'hint', 'message']);
      expect(body.message).toMatch(message);
    }
    const notJson = await stack.fetch('/rpc/login', { method: 'POST', body: '{"email":', headers: { 'content-type': 'application/json' } });
    expect(notJson.status).toBe(400);
  });

  test('a body over 64 KiB → 413 in PostgREST error shape, and no account is created', async () => {
    const address = email();
    const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: address, password: 'x'.repeat(70 * 1024) } });
    expect(r.status).toBe(413);
    const body = await r.json();
    expect(Object.keys(body).sort()).toEqual(['code', 'details', 'hint', 'message']);
    const [{ n }] = await stack.sql`select count(*)::int as n from auth.users where email = ${address.toLowerCase()}`;
    expect(n).toBe(0);
  });

  test('brute force against one account hits 429 with Retry-After, even with the right password', async () => {
    const address = email();
    await signup(address);
    const statuses: number[] = [];
    let last!: Response;
    for (let i = 0; i < PER_EMAIL + 2; i++) {
      last = await stack.fetch('/rpc/login', { method: 'POST', json: { email: address, password: `guess-${i}-guess` } });
      statuses.push(last.status);
    }
    expect(statuses).toEqual([...Array(PER_EMAIL).fill(400), 429, 429]);
    const retryAfter = Number(last.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(600);
    expect(await last.json()).toMatchObject({ code: 'PLINTH429', message: expect.stringMatching(/try again in \d+ seconds/) });
    // The real password is refused too while the window lasts; the counter lives in PostgreSQL.
    const right = await stack.fetch('/rpc/login', { method: 'POST', json: { email: address.toUpperCase(), password: PASSWORD } });
    expect(right.status).toBe(429);
    const [{ n }] = await stack.sql`select count(*)::int as n from auth.rate_limits where bucket like 'login:email:%'`;
    expect(n).toBeGreaterThan(0);
  });
});

describe('app roles', () => {
  test('a user cannot change their own app_role through PostgREST or any endpoint', async () => {
    const s = await signup();
    const id = s.user.id;
    // The admin endpoint refuses user tokens (decided by auth.set_app_role in SQL).
    const patch = await stack.fetch(`/auth/admin/users/${id}`, { method: 'PATCH', token: s.token, json: { app_role: 'admin' } });
    expect(patch.status).toBe(403);
    expect((await patch.json()).message).toBe("Changing an app role needs the service key or an admin's token");
    // The auth schema is not exposed by PostgREST, by any spelling.
    expect((await stack.fetch('/rpc/set_app_role', { method: 'POST', token: s.token, json: { p_user_id: id, p_app_role: 'admin' } })).status).toBe(404);
    expect((await stack.fetch('/users', { method: 'PATCH', token: s.token, json: { app_role: 'admin' } })).status).toBe(404);
    // Asking PostgREST for the auth schema by profile header is refused (406: only public is served).
    const writes = { 'content-profile': 'auth' };
    expect((await stack.fetch(`/users?id=eq.${id}`, { method: 'PATCH', token: s.token, json: { app_role: 'admin' }, headers: writes })).status).toBe(406);
    expect((await stack.fetch('/rpc/set_app_role', { method: 'POST', token: s.token, json: { p_user_id: id, p_app_role: 'admin' }, headers: writes })).status).toBe(406);
    const reads = await stack.fetch('/users', { token: s.token, headers: { 'accept-profile': 'auth' } });
    expect(reads.status).toBe(406);
    expect((await reads.json()).message).toBe('The schema must be one of the following: public');
    // Even the service key gets no way in through PostgREST.
    expect((await stack.fetch('/rpc/set_app_role', { method: 'POST', apikey: stack.serviceKey, json: { p_user_id: id, p_app_role: 'admin' }, headers: writes })).status).toBe(406);
    // Nor by signing up as an admin, nor with a refresh.
    const again = await (await refresh(s.refresh_token)).json();
    expect(claimsOf(again.token).app_role).toBe('editor');
    const [{ app_role }] = await stack.sql`select app_role from auth.users where id = ${id}`;
    expect(app_role).toBe('editor');
  });

  test('the service key sets an app role, which ends the user\'s sessions; the next sign-in carries it; admins list users', async () => {
    const s = await signup();
    const editor = await signup();
    const anonList = await stack.fetch('/auth/admin/users', { apikey: stack.anonKey });
    expect(anonList.status).toBe(403);
    const editorList = await stack.fetch('/auth/admin/users', { token: editor.token });
    expect(editorList.status).toBe(403);
    expect((await editorList.json()).message).toMatch(/service key or an admin/);

    const promoted = await stack.fetch(`/auth/admin/users/${s.user.id}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'admin' } });
    expect(promoted.status).toBe(200);
    expect(await promoted.json()).toMatchObject({ id: s.user.id, app_role: 'admin' });
    // The change ended the user's sessions; the next sign-in carries the new role.
    expect((await refresh(s.refresh_token)).status).toBe(401);
    const admin = await login(s.user.email);
    expect(claimsOf(admin.token).app_role).toBe('admin');

    const list = await stack.fetch('/auth/admin/users?limit=1000', { token: admin.token });
    expect(list.status).toBe(200);
    const users = await list.json();
    expect(users.map((u: { id: string }) => u.id)).toEqual(expect.arrayContaining([s.user.id, editor.user.id]));
    expect(users.every((u: Record<string, unknown>) => !('password_hash' in u))).toBe(true);
    const page = await (await stack.fetch('/auth/admin/users?limit=1&offset=1', { apikey: stack.serviceKey })).json();
    expect(page).toHaveLength(1);
    expect(page[0].id).toBe(users[1].id);

    // An admin may set an editor's role, never their own (nor another admin's); demoted, their still-valid token lists nothing.
    expect((await stack.fetch(`/auth/admin/users/${s.user.id}`, { method: 'PATCH', token: admin.token, json: { app_role: 'editor' } })).status).toBe(403);
    const byAdmin = await stack.fetch(`/auth/admin/users/${editor.user.id}`, { method: 'PATCH', token: admin.token, json: { app_role: 'admin' } });
    expect(byAdmin.status).toBe(200);
    expect(await byAdmin.json()).toMatchObject({ id: editor.user.id, app_role: 'admin' });
    expect((await stack.fetch(`/auth/admin/users/${editor.user.id}`, { method: 'PATCH', token: admin.token, json: { app_role: 'editor' } })).status).toBe(403);
    expect((await stack.fetch(`/auth/admin/users/${s.user.id}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'editor' } })).status).toBe(200);
    expect((await stack.fetch('/auth/admin/users', { token: admin.token })).status).toBe(403);
  });

  test('setting a role: unknown user → 404, bad id or role → 400', async () => {
    const missing = await stack.fetch(`/auth/admin/users/${randomUUID()}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'admin' } });
    expect(missing.status).toBe(404);
    const badId = await stack.fetch('/auth/admin/users/42', { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'admin' } });
    expect(badId.status).toBe(400);
    expect((await badId.json()).message).toMatch(/params\.id is not a UUID/);
    const badRole = await stack.fetch(`/auth/admin/users/${randomUUID()}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'owner' } });
    expect(badRole.status).toBe(400);
    expect((await badRole.json()).message).toMatch(/must be one of "editor", "admin"/);
  });

  test('JWKS at /auth/jwks and /.well-known/jwks.json: public halves only', async () => {
    const a = await (await stack.fetch('/auth/jwks')).json();
    const b = await (await stack.fetch('/.well-known/jwks.json')).json();
    expect(a).toEqual(b);
    expect(a.keys.length).toBeGreaterThan(0);
    for (const k of a.keys) {
      expect(k.kid).toBeTruthy();
      expect(k.d).toBeUndefined();
    }
  });
});

test('the periodic sweep drops finished rate windows and spent sessions, and keeps live ones', async () => {
  const live = await signup();
  await stack.sql`insert into auth.rate_limits values ('test:old', now() - interval '2 hours', 3), ('test:live', now(), 1)`;
  const dead = await signup();
  await stack.fetch('/auth/logout', { method: 'POST', token: dead.token });
  await stack.sql`update auth.sessions set revoked_at = now() - interval '2 days' where user_id = ${dead.user.id}`;
  await stack.sql`select auth.sweep_expired(3600)`;
  const buckets = await stack.sql`select bucket from auth.rate_limits where bucket like 'test:%'`;
  expect(buckets.map((b) => b.bucket)).toEqual(['test:live']);
  const [{ n }] = await stack.sql`select count(*)::int as n from auth.sessions where user_id = ${dead.user.id}`;
  expect(n).toBe(0);
  expect((await refresh(live.refresh_token)).status).toBe(200);
});

test('the accounts migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  await downAndUpAgain(
    stack.sql,
    '20250101000010_accounts.sql',
    async (tx) => {
      const [{ gone }] = await tx`select to_regclass('auth.sessions') is null and to_regclass('auth.rate_limits') is null as gone`;
      expect(gone).toBe(true);
    },
    async (tx) => {
      const [{ back }] = await tx`select to_regprocedure('auth.set_app_role(uuid,text)') is not null as back`;
      expect(back).toBe(true);
    },
  );
});

test('a password sign-in counts the attempt in both buckets, records last_sign_in_at and logs one auth.sign_in row, attributed to the user', async () => {
  const address = email();
  const { user } = await signup(address);
  const [before] = await stack.sql<{ hits: number }[]>`select coalesce(sum(hits), 0)::int as hits from auth.rate_limits where bucket like 'login:%'`;
  const session = await login(address);
  expect(new Date(session.user.last_sign_in_at).getTime()).toBeGreaterThanOrEqual(new Date(user.created_at).getTime());
  const [after] = await stack.sql<{ hits: number }[]>`select coalesce(sum(hits), 0)::int as hits from auth.rate_limits where bucket like 'login:%'`;
  expect(after.hits - before.hits).toBe(2);
  const rows = await stack.sql<{ action: string; actor_id: string; actor_role: string; details: Record<string, unknown> }[]>`
    select action, actor_id, actor_role, details from audit.activity
     where (target = ${user.id} or target = ${address.toLowerCase()}) and action <> 'auth.sign_up' order by id`;
  // The signup's own session, then the login's; recording last_sign_in_at adds no row.
  expect(rows.map((r) => r.action)).toEqual(['auth.sign_in', 'auth.sign_in']);
  expect(rows[1]).toMatchObject({ actor_id: user.id, details: { method: 'password', session_id: claimsOf(session.token).session_id } });
});

test('the cheaper sign-in migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  await downAndUpAgain(
    stack.sql,
    '20250101000900_cheaper_sign_in.sql',
    async (tx) => {
      const [row] = await tx`
        select (select count(*)::int from pg_trigger where tgname in ('users_audit_update', 'sessions_audit_update')) as split,
               (select count(*)::int from pg_trigger where tgname in ('users_audit', 'sessions_audit')) as whole`;
      expect(row).toEqual({ split: 0, whole: 2 });
    },
    async (tx) => {
      const [row] = await tx`
        select (select count(*)::int from pg_trigger where tgname in ('users_audit_update', 'sessions_audit_update')) as split`;
      expect(row).toEqual({ split: 2 });
    },
  );
});

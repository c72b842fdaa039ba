// supabase-js's auth client, unmodified, against Plinth's /auth/v1: GoTrue's routes and shapes
// over the same accounts, sessions and rules as Plinth's own /auth/* routes. Mail goes to a real
// SMTP catcher; tokens from one face work on the other.
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { AuthApiError, createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { downAndUpAgain, launchChromium, startStack, type Stack } from './harness.ts';
import { mailCatcher, type Received } from './mailbox.ts';

const { inbox, smtp } = mailCatcher();
const PASSWORD = 'a long password';

let stack: Stack;
beforeAll(async () => {
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const port = (smtp.server.address() as AddressInfo).port;
  stack = await startStack({ env: { SMTP_URL: `smtp://127.0.0.1:${port}`, PLINTH_RATE_LIMIT_PER_IP: '1000' } });
});
afterAll(async () => {
  await stack?.destroy();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

function client(key = stack.anonKey, url = stack.url): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket as never },
  });
}

const newEmail = (what: string) => `${what}-${randomUUID().slice(0, 8)}@example.test`;

function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

function decodeQuotedPrintable(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The token of the newest mail to `address` whose subject matches. */
// Mail is sent after the answer, in the background: on a loaded machine it can take a while.
async function mailedToken(address: string, subject: RegExp, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = inbox.filter((m: Received) => m.to.includes(address) && subject.test(m.raw)).pop();
    if (found) {
      const m = /[?&]token=([A-Za-z0-9_-]+)/.exec(decodeQuotedPrintable(found.raw));
      if (!m) throw new Error(`no token in:\n${found.raw}`);
      inbox.splice(inbox.indexOf(found), 1);
      return m[1];
    }
    if (Date.now() > deadline) throw new Error(`no mail "${subject}" for ${address} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The link of the newest mail to `address` whose subject matches. */
async function mailedLink(address: string, subject: RegExp): Promise<URL> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = inbox.filter((m: Received) => m.to.includes(address) && subject.test(m.raw)).pop();
    if (found) {
      inbox.splice(inbox.indexOf(found), 1);
      return new URL(/(https?:\/\/[^\s"<>]+)/.exec(decodeQuotedPrintable(found.raw))![1]);
    }
    if (Date.now() > deadline) throw new Error(`no mail "${subject}" for ${address}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Follows a mailed /auth/v1/verify link as a browser does: the page (which spends nothing), then
 * its form posted back; returns where the browser is sent.
 */
async function followInBrowser(link: URL): Promise<URL> {
  const page = await fetch(`${stack.url}${link.pathname}${link.search}`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  const html = await page.text();
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([a-z_]+)" value="([^"]*)">/g)) form.set(m[1], m[2].replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))));
  const posted = await fetch(`${stack.url}/auth/v1/verify`, { method: 'POST', body: form, redirect: 'manual' });
  expect(posted.status).toBe(303);
  return new URL(posted.headers.get('location')!);
}

/** A signed-up, signed-in supabase-js client. */
async function signedUp(what: string, data: Record<string, unknown> = {}) {
  const email = newEmail(what);
  const supabase = client();
  const { data: out, error } = await supabase.auth.signUp({ email, password: PASSWORD, options: { data } });
  expect(error).toBeNull();
  return { supabase, email, id: out.user!.id, session: out.session! };
}

describe('sign-up, sign-in and the session', () => {
  test('signUp returns a GoTrue session; its token carries the claims RLS and supabase-js expect', async () => {
    const email = newEmail('Shape');
    const supabase = client();
    const { data, error } = await supabase.auth.signUp({ email, password: PASSWORD, options: { data: { name: 'Ada' } } });
    expect(error).toBeNull();
    const session = data.session!;
    expect(session).toMatchObject({ token_type: 'bearer', expires_in: 3600, refresh_token: expect.any(String), access_token: expect.any(String) });
    expect(session.expires_at).toBe(claimsOf(session.access_token).exp);
    expect(data.user).toMatchObject({
      id: expect.any(String),
      aud: 'authenticated',
      role: 'authenticated',
      email: email.toLowerCase(),
      app_metadata: { provider: 'email', providers: ['email'], app_role: 'editor' },
      user_metadata: { name: 'Ada' },
      is_anonymous: false,
    });
    expect(data.user!.identities![0]).toMatchObject({ provider: 'email', user_id: data.user!.id });
    expect(claimsOf(session.access_token)).toMatchObject({
      sub: data.user!.id,
      role: 'authenticated',
      aud: 'authenticated',
      email: email.toLowerCase(),
      session_id: expect.any(String),
      app_metadata: { provider: 'email', providers: ['email'], app_role: 'editor' },
      user_metadata: { name: 'Ada' },
      app_role: 'editor',
      is_anonymous: false,
    });
    const { data: got } = await supabase.auth.getUser();
    expect(got.user).toMatchObject({ id: data.user!.id, email: email.toLowerCase(), user_metadata: { name: 'Ada' } });
    // getClaims() verifies the token locally against /auth/v1/.well-known/jwks.json.
    const { data: verified, error: claimsError } = await supabase.auth.getClaims();
    expect(claimsError).toBeNull();
    expect(verified!.claims).toMatchObject({ sub: data.user!.id, role: 'authenticated', email: email.toLowerCase() });
    const { data: current } = await supabase.auth.getSession();
    expect(current.session!.access_token).toBe(session.access_token);
  });

  test('signInWithPassword, then from() with RLS and rpc() through /rest/v1 as that user', async () => {
    const { email, id } = await signedUp('rls');
    const other = await signedUp('rls-other');
    await other.supabase.from('todos').insert({ title: 'not yours' });
    const supabase = client();
    const { data, error } = await supabase.auth.signInWithPassword({ email: email.toUpperCase(), password: PASSWORD });
    expect(error).toBeNull();
    expect(data.user!.id).toBe(id);
    const inserted = await supabase.from('todos').insert({ title: 'mine', priority: 3 }).select('title, user_id').single();
    expect(inserted.data).toEqual({ title: 'mine', user_id: id });
    const mine = await supabase.from('todos').select('title');
    expect(mine.data).toEqual([{ title: 'mine' }]);
    const who = await supabase.rpc('whoami');
    expect(who.data).toMatchObject({ uid: id, role: 'authenticated', aud: 'authenticated', provider: 'email' });
    expect((await supabase.rpc('count_my_todos', { min_priority: 1 })).data).toBe(1);
  });

  test('refreshSession rotates the refresh token; the spent one is refused as GoTrue refuses it', async () => {
    const { supabase, session } = await signedUp('refresh');
    const { data, error } = await supabase.auth.refreshSession();
    expect(error).toBeNull();
    expect(data.session!.refresh_token).not.toBe(session.refresh_token);
    expect(data.session!.user.id).toBe(session.user.id);
    // A spent token presented again (past the reuse interval's grace: its successor was used).
    await client().auth.refreshSession({ refresh_token: data.session!.refresh_token });
    const replay = await client().auth.refreshSession({ refresh_token: session.refresh_token });
    expect(replay.error).toBeInstanceOf(AuthApiError);
    expect(replay.error).toMatchObject({ status: 400, code: 'refresh_token_not_found' });
  });

  test('error cases carry the GoTrue codes auth-js maps', async () => {
    const { email } = await signedUp('errors');
    const wrong = await client().auth.signInWithPassword({ email, password: 'not the password' });
    expect(wrong.error).toBeInstanceOf(AuthApiError);
    expect(wrong.error).toMatchObject({ status: 400, code: 'invalid_credentials', message: 'Invalid login credentials' });
    const unknown = await client().auth.signInWithPassword({ email: newEmail('nobody'), password: PASSWORD });
    expect(unknown.error).toMatchObject({ status: 400, code: 'invalid_credentials' });

    const weak = await client().auth.signUp({ email: newEmail('weak'), password: 'short' });
    expect(weak.error).toMatchObject({ status: 422, code: 'weak_password', name: 'AuthWeakPasswordError', reasons: ['length'] });
    const duplicate = await client().auth.signUp({ email: email.toUpperCase(), password: PASSWORD });
    expect(duplicate.error).toMatchObject({ status: 422, code: 'user_already_exists' });

    // Without auth-js's API version header: GoTrue's older shape, {code: status, error_code, msg}.
    const raw = await stack.fetch('/auth/v1/token?grant_type=password', { method: 'POST', apikey: stack.anonKey, json: { email, password: 'nope nope nope' } });
    expect(raw.status).toBe(400);
    expect(raw.headers.get('x-sb-error-code')).toBe('invalid_credentials');
    expect(await raw.json()).toEqual({ code: 400, error_code: 'invalid_credentials', msg: 'Invalid login credentials' });
    const noToken = await stack.fetch('/auth/v1/token?grant_type=refresh_token', { method: 'POST', json: {} });
    expect(await noToken.json()).toEqual({ error: 'invalid_request', error_description: 'refresh_token required' });
    const unknownPath = await stack.fetch('/auth/v1/factors', { method: 'POST', json: {} });
    expect(unknownPath.status).toBe(404);
    expect((await unknownPath.json()).error_code).toBe('not_found');
  });

  test('a token from /auth/v1 works on Plinth\'s own routes, and a token from /rpc/login on /auth/v1', async () => {
    const { email, id, session } = await signedUp('faces');
    const plinthUser = await stack.fetch('/auth/user', { token: session.access_token });
    expect(plinthUser.status).toBe(200);
    expect((await plinthUser.json()).id).toBe(id);
    const refreshed = await stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: session.refresh_token } });
    expect(refreshed.status).toBe(200);

    const login = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password: PASSWORD } });
    const [{ token, refresh_token }] = await login.json();
    const { data, error } = await client().auth.getUser(token);
    expect(error).toBeNull();
    expect(data.user).toMatchObject({ id, aud: 'authenticated' });
    const viaGoTrue = await client().auth.refreshSession({ refresh_token });
    expect(viaGoTrue.error).toBeNull();
    expect(viaGoTrue.data.user!.id).toBe(id);
  });
});

describe('the signed-in user', () => {
  test('updateUser: user_metadata merges (null removes a key) and reaches the next token', async () => {
    const { supabase } = await signedUp('meta', { theme: 'dark', lang: 'en' });
    const { data, error } = await supabase.auth.updateUser({ data: { lang: null, plan: 'pro' } });
    expect(error).toBeNull();
    expect(data.user!.user_metadata).toEqual({ theme: 'dark', plan: 'pro' });
    const { data: refreshed } = await supabase.auth.refreshSession();
    expect(claimsOf(refreshed.session!.access_token).user_metadata).toEqual({ theme: 'dark', plan: 'pro' });
  });

  test('updateUser password: needs the current one; this session goes on, the others end', async () => {
    const { supabase, email } = await signedUp('password');
    const elsewhere = client();
    await elsewhere.auth.signInWithPassword({ email, password: PASSWORD });

    const missing = await supabase.auth.updateUser({ password: 'a brand new password' });
    expect(missing.error).toMatchObject({ status: 400, code: 'current_password_required' });
    const wrong = await supabase.auth.updateUser({ password: 'a brand new password', current_password: 'not it at all' } as never);
    expect(wrong.error).toMatchObject({ status: 400, code: 'current_password_invalid' });
    const weak = await supabase.auth.updateUser({ password: 'short', current_password: PASSWORD } as never);
    expect(weak.error).toMatchObject({ status: 422, code: 'weak_password' });

    const changed = await supabase.auth.updateUser({ password: 'a brand new password', current_password: PASSWORD } as never);
    expect(changed.error).toBeNull();
    expect((await supabase.auth.getUser()).data.user!.email).toBe(email);
    expect((await supabase.auth.refreshSession()).error).toBeNull();
    // The other device's session ended with the change.
    const other = await elsewhere.auth.getUser();
    expect(other.error).toMatchObject({ name: 'AuthSessionMissingError' });
    expect((await client().auth.signInWithPassword({ email, password: PASSWORD })).error).toMatchObject({ code: 'invalid_credentials' });
    expect((await client().auth.signInWithPassword({ email, password: 'a brand new password' })).error).toBeNull();
  });

  test('updateUser email: a link goes to the new address; verifyOtp(email_change) moves the account', async () => {
    const { supabase, id } = await signedUp('old-address');
    const target = newEmail('new-address');
    const asked = await supabase.auth.updateUser({ email: target });
    expect(asked.error).toBeNull();
    expect(asked.data.user!.email).not.toBe(target); // not until the link is followed
    const token = await mailedToken(target, /Subject: Confirm your new email address/);
    const { data, error } = await client().auth.verifyOtp({ token_hash: token, type: 'email_change' });
    expect(error).toBeNull();
    expect(data.user).toMatchObject({ id, email: target });
    const again = await client().auth.verifyOtp({ token_hash: token, type: 'email_change' });
    expect(again.error).toMatchObject({ status: 403, code: 'otp_expired' });
  });

  test('signOut scopes: others, local, global', async () => {
    const { supabase: a, email } = await signedUp('scopes');
    const b = client();
    const c = client();
    await b.auth.signInWithPassword({ email, password: PASSWORD });
    await c.auth.signInWithPassword({ email, password: PASSWORD });
    const bRefresh = (await b.auth.getSession()).data.session!.refresh_token;

    expect((await a.auth.signOut({ scope: 'others' })).error).toBeNull();
    expect((await a.auth.getUser()).error).toBeNull();
    expect((await client().auth.refreshSession({ refresh_token: bRefresh })).error).toMatchObject({ code: 'refresh_token_not_found' });
    expect((await c.auth.getUser()).error).toMatchObject({ name: 'AuthSessionMissingError' });

    const aToken = (await a.auth.getSession()).data.session!.access_token;
    expect((await a.auth.signOut({ scope: 'local' })).error).toBeNull();
    expect((await a.auth.getSession()).data.session).toBeNull();
    // session_not_found, which auth-js turns into AuthSessionMissingError.
    expect((await client().auth.getUser(aToken)).error).toMatchObject({ name: 'AuthSessionMissingError' });
    const raw = await stack.fetch('/auth/v1/user', { token: aToken, headers: { 'x-supabase-api-version': '2024-01-01' } });
    expect(raw.status).toBe(403);
    expect(await raw.json()).toMatchObject({ code: 'session_not_found' });

    const d = client();
    const e = client();
    await d.auth.signInWithPassword({ email, password: PASSWORD });
    await e.auth.signInWithPassword({ email, password: PASSWORD });
    const eToken = (await e.auth.getSession()).data.session!.access_token;
    expect((await d.auth.signOut()).error).toBeNull(); // global by default
    expect((await client().auth.getUser(eToken)).error).toMatchObject({ name: 'AuthSessionMissingError' });
  });
});

describe('mailed links', () => {
  test('signInWithOtp mails a magic link; verifyOtp(magiclink) signs in once', async () => {
    const { email, id } = await signedUp('otp');
    const supabase = client();
    expect((await supabase.auth.signInWithOtp({ email, options: { shouldCreateUser: false } })).error).toBeNull();
    const token = await mailedToken(email, /Subject: Your sign-in link/);
    const { data, error } = await supabase.auth.verifyOtp({ token_hash: token, type: 'magiclink' });
    expect(error).toBeNull();
    expect(data.session!.user.id).toBe(id);
    expect(claimsOf(data.session!.access_token).amr).toEqual([{ method: 'otp', timestamp: expect.any(Number) }]);
    expect((await supabase.from('todos').select('id')).error).toBeNull();
    const twice = await client().auth.verifyOtp({ token_hash: token, type: 'magiclink' });
    expect(twice.error).toMatchObject({ status: 403, code: 'otp_expired' });
  });

  test('signInWithOtp for a new address creates a passwordless account while sign-up is open', async () => {
    const email = newEmail('otp-new');
    expect((await client().auth.signInWithOtp({ email, options: { data: { from: 'otp' } } })).error).toBeNull();
    const token = await mailedToken(email, /Subject: Your sign-in link/);
    const { data } = await client().auth.verifyOtp({ token_hash: token, type: 'email' });
    expect(data.user).toMatchObject({ email, user_metadata: { from: 'otp' }, email_confirmed_at: expect.any(String) });
  });

  test('recover → verifyOtp(recovery) → updateUser without the old password → sign in with the new one', async () => {
    const { email, id } = await signedUp('recover');
    const supabase = client();
    expect((await supabase.auth.resetPasswordForEmail(email)).error).toBeNull();
    const unknown = await supabase.auth.resetPasswordForEmail(newEmail('nobody'));
    expect(unknown.error).toBeNull(); // the same answer: no account is revealed
    const token = await mailedToken(email, /Subject: Reset your password/);
    const { data, error } = await supabase.auth.verifyOtp({ token_hash: token, type: 'recovery' });
    expect(error).toBeNull();
    expect(data.user!.id).toBe(id);
    const changed = await supabase.auth.updateUser({ password: 'recovered password' });
    expect(changed.error).toBeNull();
    expect((await client().auth.signInWithPassword({ email, password: 'recovered password' })).error).toBeNull();
    expect((await client().auth.signInWithPassword({ email, password: PASSWORD })).error).toMatchObject({ code: 'invalid_credentials' });
  });

  test('a mailed link followed in a browser lands on the app\'s redirectTo with the session; other sites are not trusted', async () => {
    const { email, id } = await signedUp('browser');
    const home = `http://localhost:${stack.port}`; // PLINTH_PUBLIC_URL's default in the tests
    await client().auth.signInWithOtp({ email, options: { shouldCreateUser: false, emailRedirectTo: `${home}/app/welcome?x=1` } });
    const link = await mailedLink(email, /Subject: Your sign-in link/);
    expect(link.pathname).toBe('/auth/v1/verify');
    expect(link.searchParams.get('type')).toBe('magiclink');
    expect(link.searchParams.get('redirect_to')).toBe(`${home}/app/welcome?x=1`);
    const landed = await followInBrowser(link);
    expect(`${landed.origin}${landed.pathname}${landed.search}`).toBe(`${home}/app/welcome?x=1`);
    const fragment = new URLSearchParams(landed.hash.slice(1));
    expect(fragment.get('type')).toBe('magiclink');
    expect(claimsOf(fragment.get('access_token')!).sub).toBe(id);
    // The client takes the session over from those values.
    const app = client();
    const set = await app.auth.setSession({ access_token: fragment.get('access_token')!, refresh_token: fragment.get('refresh_token')! });
    expect(set.error).toBeNull();
    expect((await app.auth.getUser()).data.user!.id).toBe(id);

    await client().auth.resetPasswordForEmail(email, { redirectTo: 'https://evil.example/steal' });
    const reset = await mailedLink(email, /Subject: Reset your password/);
    expect(reset.searchParams.get('type')).toBe('recovery');
    expect(reset.searchParams.get('redirect_to')).toBe(home);
  });

  test('settings say what this server allows', async () => {
    const r = await stack.fetch('/auth/v1/settings', { apikey: stack.anonKey });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ external: { email: true, phone: false }, disable_signup: false, mailer_autoconfirm: true });
  });
});

describe('admin endpoints with the service key', () => {
  test('createUser, getUserById, listUsers with pagination, updateUserById, deleteUser', async () => {
    const admin = client(stack.serviceKey).auth.admin;
    const email = newEmail('admin-made');
    const created = await admin.createUser({ email, password: PASSWORD, email_confirm: true, user_metadata: { team: 'red' } });
    expect(created.error).toBeNull();
    expect(created.data.user).toMatchObject({ email, user_metadata: { team: 'red' }, email_confirmed_at: expect.any(String), aud: 'authenticated' });
    const id = created.data.user!.id;
    const got = await admin.getUserById(id);
    expect(got.data.user).toMatchObject({ id, email });

    await admin.createUser({ email: newEmail('admin-made'), password: PASSWORD });
    const page1 = await admin.listUsers({ page: 1, perPage: 1 });
    expect(page1.error).toBeNull();
    expect(page1.data.users).toHaveLength(1);
    const [{ n }] = await stack.sql<{ n: number }[]>`select count(*)::int as n from auth.users`;
    expect(page1.data).toMatchObject({ total: n, nextPage: 2 });
    // auth-js reads only the first digit of a page number from Link: the header itself, in full.
    const raw = await stack.fetch('/auth/v1/admin/users?page=2&per_page=1', { token: stack.serviceKey });
    expect(raw.headers.get('x-total-count')).toBe(String(n));
    expect(raw.headers.get('link')).toBe(`</auth/v1/admin/users?page=3&per_page=1>; rel="next", </auth/v1/admin/users?page=${n}&per_page=1>; rel="last"`);
    expect((await raw.json()).users).toHaveLength(1);

    const updated = await admin.updateUserById(id, { user_metadata: { team: 'blue' }, app_metadata: { app_role: 'admin' } });
    expect(updated.error).toBeNull();
    expect(updated.data.user).toMatchObject({ user_metadata: { team: 'blue' }, app_metadata: { app_role: 'admin' } });
    const banned = await admin.updateUserById(id, { ban_duration: '876000h' });
    expect(banned.data.user!.banned_until).toBeDefined();
    expect((await client().auth.signInWithPassword({ email, password: PASSWORD })).error).toMatchObject({ code: 'user_banned' });
    await admin.updateUserById(id, { ban_duration: 'none' });
    expect((await client().auth.signInWithPassword({ email, password: PASSWORD })).error).toBeNull();

    const deleted = await admin.deleteUser(id);
    expect(deleted.error).toBeNull();
    expect((await admin.getUserById(id)).error).toMatchObject({ status: 404, code: 'user_not_found' });
    const dup = await admin.createUser({ email: newEmail('dup') });
    const again = await admin.createUser({ email: dup.data.user!.email! });
    expect(again.error).toMatchObject({ status: 422, code: 'email_exists' });
  });

  test('inviteUserByEmail mails an invitation; verifyOtp(invite) then updateUser sets the first password', async () => {
    const admin = client(stack.serviceKey).auth.admin;
    const email = newEmail('invited');
    const invited = await admin.inviteUserByEmail(email, { data: { invited_by: 'test' } });
    expect(invited.error).toBeNull();
    expect(invited.data.user).toMatchObject({ email, user_metadata: { invited_by: 'test' } });
    const token = await mailedToken(email, /Subject: You are invited/);
    const supabase = client();
    expect((await supabase.auth.verifyOtp({ token_hash: token, type: 'invite' })).error).toBeNull();
    expect((await supabase.auth.updateUser({ password: 'my first password' })).error).toBeNull();
    expect((await client().auth.signInWithPassword({ email, password: 'my first password' })).error).toBeNull();
  });

  test('generateLink hands out a working link; a user\'s token is refused with not_admin', async () => {
    const { email, id, supabase } = await signedUp('linked');
    const admin = client(stack.serviceKey).auth.admin;
    const link = await admin.generateLink({ type: 'magiclink', email });
    expect(link.error).toBeNull();
    expect(link.data.properties).toMatchObject({ verification_type: 'magiclink', hashed_token: expect.any(String) });
    expect(link.data.properties!.action_link).toContain('/auth/v1/verify?');
    const { data } = await client().auth.verifyOtp({ token_hash: link.data.properties!.hashed_token, type: 'magiclink' });
    expect(data.user!.id).toBe(id);

    // The action link, followed by a browser: a redirect with the session in the fragment. Only
    // the page's form spends it: fetching the link (a mail scanner) leaves it usable.
    const again = await admin.generateLink({ type: 'magiclink', email });
    const actionLink = new URL(again.data.properties!.action_link);
    for (let i = 0; i < 3; i++) expect((await fetch(`${stack.url}${actionLink.pathname}${actionLink.search}`)).status).toBe(200);
    const fragment = new URLSearchParams((await followInBrowser(actionLink)).hash.slice(1));
    expect(claimsOf(fragment.get('access_token')!).sub).toBe(id);
    const spent = await followInBrowser(actionLink);
    expect(new URLSearchParams(spent.hash.slice(1)).get('error_code')).toBe('otp_expired');

    const token = (await supabase.auth.getSession()).data.session!.access_token;
    const refused = await client(token).auth.admin.listUsers();
    expect(refused.error).toMatchObject({ status: 403, code: 'not_admin' });
  });
});

test('with PLINTH_SIGNUP=closed, signUp is GoTrue\'s signup_disabled and the settings say so', async () => {
  const closed = await startStack({ env: { PLINTH_SIGNUP: 'closed' } });
  try {
    const supabase = createClient(closed.url, closed.anonKey, { auth: { persistSession: false }, realtime: { transport: WebSocket as never } });
    const { error } = await supabase.auth.signUp({ email: newEmail('closed'), password: PASSWORD });
    expect(error).toMatchObject({ status: 422, code: 'signup_disabled' });
    expect(await (await closed.fetch('/auth/v1/settings')).json()).toMatchObject({ disable_signup: true });
  } finally {
    await closed.destroy();
  }
});

test('the GoTrue face migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  await downAndUpAgain(
    stack.sql,
    '20250101000400_gotrue_face.sql',
    async (tx) => {
      const [{ gone }] = await tx`select to_regprocedure('auth.admin_get_user(uuid)') is null and not exists (select from information_schema.columns where table_schema = 'auth' and table_name = 'users' and column_name = 'user_metadata') as gone`;
      expect(gone).toBe(true);
    },
    async (tx) => {
      const [{ back }] = await tx`select to_regprocedure('auth.admin_get_user(uuid)') is not null as back`;
      expect(back).toBe(true);
    },
  );
});

test('a page on another origin can read what auth-js reads from an error (CORS)', async () => {
  const r = await stack.fetch('/auth/v1/token?grant_type=password', {
    method: 'POST',
    headers: { origin: 'https://app.example', 'x-supabase-api-version': '2024-01-01' },
    json: { email: newEmail('cors'), password: 'wrong password' },
  });
  expect(r.status).toBe(400);
  expect(r.headers.get('access-control-allow-origin')).toBe('*');
  expect(r.headers.get('x-supabase-api-version')).toBe('2024-01-01');
  expect(r.headers.get('access-control-expose-headers')!.split(', ')).toEqual(expect.arrayContaining(['X-Supabase-Api-Version', 'X-Total-Count', 'Link']));
  expect(await r.json()).toEqual({ code: 'invalid_credentials', message: 'Invalid login credentials' });
});

test('with PLINTH_CONFIRM_EMAIL=true, signUp gives the user and no session until verifyOtp(signup)', async () => {
  const port = (smtp.server.address() as AddressInfo).port;
  const confirming = await startStack({ env: { PLINTH_CONFIRM_EMAIL: 'true', SMTP_URL: `smtp://127.0.0.1:${port}` } });
  try {
    const supabase = createClient(confirming.url, confirming.anonKey, { auth: { persistSession: false }, realtime: { transport: WebSocket as never } });
    const email = newEmail('confirm');
    const { data, error } = await supabase.auth.signUp({ email, password: PASSWORD });
    expect(error).toBeNull();
    expect(data.session).toBeNull();
    expect(data.user).toMatchObject({ email, aud: 'authenticated' });
    expect(data.user!.email_confirmed_at).toBeUndefined();
    const early = await supabase.auth.signInWithPassword({ email, password: PASSWORD });
    expect(early.error).toMatchObject({ status: 400, code: 'email_not_confirmed' });
    expect(await (await confirming.fetch('/auth/v1/settings')).json()).toMatchObject({ mailer_autoconfirm: false });

    const token = await mailedToken(email, /Subject: Confirm your email address/);
    const confirmed = await supabase.auth.verifyOtp({ token_hash: token, type: 'signup' });
    expect(confirmed.error).toBeNull();
    expect(confirmed.data.user!.email_confirmed_at).toEqual(expect.any(String));
    expect((await supabase.auth.signInWithPassword({ email, password: PASSWORD })).error).toBeNull();
  } finally {
    await confirming.destroy();
  }
});

test('in a real browser, the verify page submits itself (its script allowed by its CSP) and lands with the session', async () => {
  const browser = await launchChromium();
  try {
    const email = newEmail('chromium');
    const admin = client(stack.serviceKey).auth.admin;
    const created = await admin.createUser({ email, password: PASSWORD, email_confirm: true });
    const link = await admin.generateLink({ type: 'magiclink', email, options: { redirectTo: `http://localhost:${stack.port}/welcome` } });
    const action = new URL(link.data.properties!.action_link);
    const page = await browser.newPage();
    const blocked: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy/.test(m.text())) blocked.push(m.text()); });
    await page.goto(`${stack.url}${action.pathname}${action.search}`);
    await page.waitForURL(/#access_token=/, { timeout: 30_000 });
    const landed = new URL(page.url());
    expect(landed.pathname).toBe('/welcome');
    expect(claimsOf(new URLSearchParams(landed.hash.slice(1)).get('access_token')!).sub).toBe(created.data.user!.id);
    expect(blocked).toEqual([]);
  } finally {
    await browser.close();
  }
});

// The account lifecycle over real SMTP: password change and reset, email confirmation and change,
// sign-up modes and invitations, and the admin operations on users, each decided in SQL.
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, REPO_ROOT, startStack, type Stack } from './harness.ts';
import { mailCatcher, type Received } from './mailbox.ts';
import { RealtimeClient } from './realtime-client.ts';

const { inbox, smtp } = mailCatcher();

const ADMIN_EMAIL = 'root@lifecycle.test';
const ADMIN_PASSWORD = 'the admin password';
const PASSWORD = 'a long password';

let stack: Stack;
beforeAll(async () => {
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const port = (smtp.server.address() as AddressInfo).port;
  stack = await startStack({
    env: {
      SMTP_URL: `smtp://127.0.0.1:${port}`,
      PLINTH_RATE_LIMIT_PER_IP: '1000',
      PLINTH_CONFIRM_EMAIL: 'true',
      PLINTH_ADMIN_EMAIL: ADMIN_EMAIL,
      PLINTH_ADMIN_PASSWORD: ADMIN_PASSWORD,
    },
  });
});
afterAll(async () => {
  await stack?.destroy();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

function decodeQuotedPrintable(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The nth mail (0-based) to this address whose subject matches. */
// Mail is sent after the answer, in the background: on a loaded machine it can take a while.
async function mailTo(address: string, subject: RegExp, nth = 0, timeoutMs = 30_000): Promise<Received> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = inbox.filter((m) => m.to.includes(address) && subject.test(decodeQuotedPrintable(m.raw)));
    if (found.length > nth) return found[nth];
    if (Date.now() > deadline) throw new Error(`no mail ${subject} for ${address} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The token of the console link in a mail, checking the page it leads to. */
function tokenIn(mail: Received, page: string): string {
  const m = new RegExp(`https?://[^\\s"<>]+/console/${page}\\?token=([A-Za-z0-9_-]+)`).exec(decodeQuotedPrintable(mail.raw));
  if (!m) throw new Error(`no ${page} link in:\n${mail.raw}`);
  return m[1];
}

const email = (tag: string) => `${tag}-${randomUUID().slice(0, 8)}@lifecycle.test`;
const post = (path: string, json: unknown, auth: { token?: string; apikey?: string } = {}) => stack.fetch(path, { method: 'POST', json, ...auth });
const login = (address: string, password = PASSWORD) => post('/rpc/login', { email: address, password });
const refresh = (refresh_token: string) => post('/auth/refresh', { refresh_token });

async function session(address: string, password = PASSWORD) {
  const r = await login(address, password);
  expect(r.status).toBe(200);
  return (await r.json())[0] as { token: string; refresh_token: string; user: { id: string; email: string } };
}

/** A confirmed editor with a password, created by the service key. */
async function confirmedUser(tag = 'user') {
  const address = email(tag);
  const r = await post('/auth/admin/users', { email: address, password: PASSWORD, email_confirmed: true }, { apikey: stack.serviceKey });
  expect(r.status).toBe(201);
  return (await r.json()) as { id: string; email: string };
}

describe('with PLINTH_CONFIRM_EMAIL=true', () => {
  test('sign-up mails a confirmation link; until it is followed the password does not sign in; the link works once', async () => {
    const address = email('confirm');
    const signed = await post('/rpc/signup', { email: address, password: PASSWORD });
    expect(signed.status).toBe(201);
    const body = await signed.json();
    expect(body).not.toHaveProperty('token');
    expect(body).not.toHaveProperty('refresh_token');
    expect(body.user.email_confirmed_at).toBeNull();

    const refused = await login(address);
    expect(refused.status).toBe(403);
    expect((await refused.json()).message).toMatch(/Confirm your email address/);
    // A wrong password still gets the usual answer: the 403 is only for whoever knows the password.
    expect((await login(address, 'not the password')).status).toBe(400);

    const token = tokenIn(await mailTo(address, /Confirm your email address/), 'confirm-email');
    const confirmed = await post('/auth/confirm', { token });
    expect(confirmed.status).toBe(200);
    const s = await confirmed.json();
    expect(s.user.email_confirmed_at).not.toBeNull();
    expect((await stack.fetch('/auth/user', { token: s.token })).status).toBe(200);
    expect((await post('/auth/confirm', { token })).status).toBe(401);
    await session(address);
  });

  test('GET /auth/settings says how sign-up works', async () => {
    const r = await stack.fetch('/auth/settings');
    expect(await r.json()).toEqual({ signup: 'open', confirm_email: true });
  });
});

test('password change needs the current password, ends the other sessions, and hands back a new one', async () => {
  const user = await confirmedUser('change');
  const other = await session(user.email);
  const mine = await session(user.email);

  const wrong = await post('/auth/password', { current_password: 'not it at all', new_password: 'a new password' }, { token: mine.token });
  expect(wrong.status).toBe(400);
  expect((await wrong.json()).message).toBe('The current password is wrong');
  const weak = await post('/auth/password', { current_password: PASSWORD, new_password: 'short' }, { token: mine.token });
  expect(weak.status).toBe(400);
  // An API key is no user: 403, as for GET /auth/user.
  expect((await post('/auth/password', { current_password: PASSWORD, new_password: 'a new password' }, { apikey: stack.anonKey })).status).toBe(403);

  const changed = await post('/auth/password', { current_password: PASSWORD, new_password: 'a new password' }, { token: mine.token });
  expect(changed.status).toBe(200);
  const fresh = await changed.json();
  expect((await refresh(other.refresh_token)).status).toBe(401);
  expect((await refresh(mine.refresh_token)).status).toBe(401);
  expect((await refresh(fresh.refresh_token)).status).toBe(200);
  expect((await login(user.email)).status).toBe(400);
  await session(user.email, 'a new password');
});

describe('password reset', () => {
  test('the same answer for an unknown email; the link sets a password once and ends every session', async () => {
    const user = await confirmedUser('reset');
    const before = await session(user.email);
    const unknown = email('nobody');
    const a = await post('/auth/recover', { email: unknown });
    const b = await post('/auth/recover', { email: user.email.toUpperCase() });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(await a.text()).toBe(await b.text());

    const mail = await mailTo(user.email, /Reset your password/);
    expect(inbox.some((m) => m.to.includes(unknown))).toBe(false);
    const token = tokenIn(mail, 'reset-password');
    // A link is stored only as its SHA-256.
    const [{ n }] = await stack.sql`select count(*)::int as n from auth.one_time_tokens where token_hash = sha256(convert_to(${token}, 'UTF8'))`;
    expect(n).toBe(1);

    expect((await post('/auth/reset', { token, password: 'short' })).status).toBe(400);
    const reset = await post('/auth/reset', { token, password: 'the reset password' });
    expect(reset.status).toBe(200);
    expect((await refresh(before.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: before.token })).status).toBe(401);
    expect((await login(user.email)).status).toBe(400);
    await session(user.email, 'the reset password');

    const again = await post('/auth/reset', { token, password: 'yet another password' });
    expect(again.status).toBe(401);
    expect((await again.json()).message).toBe('This link is invalid, already used or expired; ask for a new one');
  });

  test('an expired reset link is refused', async () => {
    const user = await confirmedUser('expired');
    await post('/auth/recover', { email: user.email });
    const token = tokenIn(await mailTo(user.email, /Reset your password/), 'reset-password');
    await stack.sql`update auth.one_time_tokens set expires_at = now() - interval '1 second' where user_id = ${user.id} and purpose = 'password_reset'`;
    expect((await post('/auth/reset', { token, password: 'the reset password' })).status).toBe(401);
    await session(user.email);
  });

  test('requests that mail are rate limited per email, known or not, with the same answer', async () => {
    const known = await confirmedUser('limited');
    for (const address of [known.email, email('unknown')]) {
      const statuses: number[] = [];
      for (let i = 0; i < 11; i++) statuses.push((await post('/auth/recover', { email: address })).status);
      expect(statuses).toEqual([...Array(10).fill(200), 429]);
    }
  });
});

test('email change: a link to the new address moves the account, once', async () => {
  const user = await confirmedUser('move');
  const s = await session(user.email);
  const target = email('moved');
  const asked = await post('/auth/email', { email: target }, { token: s.token });
  expect(asked.status).toBe(200);
  const token = tokenIn(await mailTo(target, /Confirm your new email address/), 'confirm-email-change');
  // Until it is followed, the account keeps its address.
  expect((await stack.fetch('/auth/user', { token: s.token }).then((r) => r.json())).email).toBe(user.email);

  const done = await post('/auth/email/confirm', { token });
  expect(done.status).toBe(200);
  expect(await done.json()).toMatchObject({ id: user.id, email: target });
  expect((await post('/auth/email/confirm', { token })).status).toBe(401);
  expect((await login(user.email)).status).toBe(400);
  await session(target);

  // A taken address gets no mail and the same answer.
  const other = await confirmedUser('taken');
  const same = await post('/auth/email', { email: other.email }, { token: (await session(target)).token });
  expect(same.status).toBe(200);
  expect((await same.json()).message).toMatch(/A link to confirm the new address is on its way/);
});

describe('admin operations', () => {
  test('a disabled user cannot sign in or refresh, their socket closes, they get no links; enabled again, they can', async () => {
    const user = await confirmedUser('disabled');
    const s = await session(user.email);
    const socket = await RealtimeClient.open(stack.url, s.token);
    expect(await socket.subscribe({ id: 't', table: 'todos' })).toMatchObject({ type: 'subscribed' });
    const disabled = await post(`/auth/admin/users/${user.id}/disable`, {}, { apikey: stack.serviceKey });
    expect(disabled.status).toBe(200);
    expect((await disabled.json()).disabled_at).not.toBeNull();

    const refused = await login(user.email);
    expect(refused.status).toBe(403);
    expect((await refused.json()).message).toBe('This account is disabled');
    expect((await refresh(s.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: s.token })).status).toBe(401);
    // The open socket closes with the session.
    expect(await socket.waitClosed(30_000)).toEqual({ code: 4001, reason: 'session ended' });
    // Asking for a reset answers as usual, but mails nothing while the account is disabled.
    expect((await post('/auth/recover', { email: user.email })).status).toBe(200);

    const enabled = await post(`/auth/admin/users/${user.id}/enable`, undefined, { apikey: stack.serviceKey });
    expect(enabled.status).toBe(200);
    expect((await enabled.json()).disabled_at).toBeNull();
    await session(user.email);
    expect((await post('/auth/recover', { email: user.email })).status).toBe(200);
    await mailTo(user.email, /Reset your password/);
    expect(inbox.filter((m) => m.to.includes(user.email) && /Reset your password/.test(m.raw))).toHaveLength(1);
  });

  test('revoking all sessions ends refresh tokens; delete removes the account', async () => {
    const user = await confirmedUser('revoke');
    const s1 = await session(user.email);
    const s2 = await session(user.email);
    const revoked = await stack.fetch(`/auth/admin/users/${user.id}/sessions`, { method: 'DELETE', apikey: stack.serviceKey });
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toEqual({ ended: 2 });
    expect((await refresh(s1.refresh_token)).status).toBe(401);
    expect((await refresh(s2.refresh_token)).status).toBe(401);

    const s3 = await session(user.email);
    const stored = await stack.fetch('/rpc/store_file', {
      method: 'POST',
      token: s3.token,
      headers: { 'content-type': 'application/octet-stream', 'file-path': 'notes/a.txt' },
      body: 'bytes of a deleted user',
    });
    expect(stored.status).toBe(200);
    const fileId = await stored.json();
    const [{ object_id }] = await stack.sql`select object_id from storage.file_links where file_id = ${fileId}`;
    const deleted = await stack.fetch(`/auth/admin/users/${user.id}`, { method: 'DELETE', apikey: stack.serviceKey });
    expect(deleted.status).toBe(200);
    expect((await deleted.json()).id).toBe(user.id);
    expect((await refresh(s3.refresh_token)).status).toBe(401);
    expect((await login(user.email)).status).toBe(400);
    expect((await stack.fetch(`/auth/admin/users/${user.id}`, { method: 'DELETE', apikey: stack.serviceKey })).status).toBe(404);
    // Their files went with them: the row at once, the stored object once the sweeper has run.
    expect(await stack.sql`select 1 from public.files where id = ${fileId}`).toHaveLength(0);
    await eventually('the deleted user\'s object to be swept', async () =>
      (await stack.sql`select 1 from storage.blobs where id = ${object_id}`).length === 0 || undefined);
  });

  test('create without a password, search and paginate', async () => {
    const tag = `srch${randomUUID().slice(0, 6)}`;
    const created = [];
    for (let i = 0; i < 3; i++) {
      const r = await post('/auth/admin/users', { email: `${tag}-${i}@lifecycle.test` }, { apikey: stack.serviceKey });
      expect(r.status).toBe(201);
      created.push(await r.json());
    }
    expect(created[0]).toMatchObject({ has_password: false, email_confirmed_at: null, disabled_at: null, app_role: 'editor' });
    expect((await post('/auth/admin/users', { email: `${tag}-0@lifecycle.test`.toUpperCase() }, { apikey: stack.serviceKey })).status).toBe(409);
    // Without a password, the account cannot sign in with one.
    expect((await login(created[0].email, '')).status).toBe(400);

    const page1 = await stack.fetch(`/auth/admin/users?q=${tag.toUpperCase()}&limit=2`, { apikey: stack.serviceKey });
    expect(page1.headers.get('x-total-count')).toBe('3');
    const page2 = await stack.fetch(`/auth/admin/users?q=${tag}&limit=2&offset=2`, { apikey: stack.serviceKey });
    const ids = [...(await page1.json()), ...(await page2.json())].map((u: { id: string }) => u.id);
    expect(ids).toEqual(created.map((u) => u.id));
  });

  test('an admin may act on editors, not on admins or themself; an editor and the anon key are refused everywhere with 403', async () => {
    const admin = await session(ADMIN_EMAIL, ADMIN_PASSWORD);
    const editorUser = await confirmedUser('editor');
    const editor = await session(editorUser.email);
    const victim = await confirmedUser('victim');

    const routes: [string, string, unknown?][] = [
      ['GET', '/auth/admin/users'],
      ['POST', '/auth/admin/users', { email: email('x') }],
      ['POST', '/auth/admin/invite', { email: email('x') }],
      ['PATCH', `/auth/admin/users/${victim.id}`, { app_role: 'admin' }],
      ['POST', `/auth/admin/users/${victim.id}/disable`, {}],
      ['POST', `/auth/admin/users/${victim.id}/enable`, {}],
      ['DELETE', `/auth/admin/users/${victim.id}/sessions`],
      ['DELETE', `/auth/admin/users/${victim.id}`],
    ];
    for (const auth of [{ token: editor.token }, { apikey: stack.anonKey }]) {
      for (const [method, path, json] of routes) {
        const r = await stack.fetch(path, { method, json, ...auth });
        expect(`${method} ${path} ${r.status}`).toBe(`${method} ${path} 403`);
      }
    }
    // Nothing happened to the victim.
    await session(victim.email);

    const asAdmin = { token: admin.token };
    expect((await stack.fetch(`/auth/admin/users?q=${victim.email}`, asAdmin).then((r) => r.json()))[0].id).toBe(victim.id);
    expect((await post('/auth/admin/users', { email: email('byadmin'), password: PASSWORD, email_confirmed: true }, asAdmin)).status).toBe(201);
    expect((await post(`/auth/admin/users/${victim.id}/disable`, {}, asAdmin)).status).toBe(200);
    expect((await login(victim.email)).status).toBe(403);
    expect((await stack.fetch(`/auth/admin/users/${victim.id}`, { method: 'DELETE', ...asAdmin })).status).toBe(200);
    const adminId = admin.user.id;
    const self = await post(`/auth/admin/users/${adminId}/disable`, {}, asAdmin);
    expect(self.status).toBe(403);
    expect((await stack.fetch(`/auth/admin/users/${adminId}`, { method: 'DELETE', ...asAdmin })).status).toBe(403);
  });
});

describe('sign-up modes', () => {
  test('invite: sign-up is refused; an invited address joins by its link, once', async () => {
    stack.env.PLINTH_SIGNUP = 'invite';
    await stack.restart();
    expect(await (await stack.fetch('/auth/settings')).json()).toMatchObject({ signup: 'invite' });
    const address = email('invited');
    const refused = await post('/rpc/signup', { email: address, password: PASSWORD });
    expect(refused.status).toBe(403);
    expect((await refused.json()).message).toMatch(/invitation only/);

    const invited = await post('/auth/admin/invite', { email: address }, { apikey: stack.serviceKey });
    expect(invited.status).toBe(201);
    expect(await invited.json()).toMatchObject({ email: address, has_password: false });
    const token = tokenIn(await mailTo(address, /You are invited/), 'accept-invite');
    const joined = await post('/auth/invite/accept', { token, password: PASSWORD });
    expect(joined.status).toBe(200);
    const s = await joined.json();
    expect(s.user).toMatchObject({ email: address });
    expect(s.user.email_confirmed_at).not.toBeNull();
    expect((await post('/auth/invite/accept', { token, password: 'another password' })).status).toBe(401);
    await session(address);
    // The account exists now: inviting it again is a conflict.
    expect((await post('/auth/admin/invite', { email: address }, { apikey: stack.serviceKey })).status).toBe(409);
  });

  test('closed: sign-up is refused; admins still create accounts', async () => {
    stack.env.PLINTH_SIGNUP = 'closed';
    await stack.restart();
    const refused = await post('/rpc/signup', { email: email('closed'), password: PASSWORD });
    expect(refused.status).toBe(403);
    expect((await refused.json()).message).toBe('Sign-up is closed on this server');
    await session((await confirmedUser('closed')).email);
  });
});

test('the lifecycle migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  const file = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000110_account_lifecycle.sql'), 'utf8');
  const up = file.slice(file.indexOf('-- migrate:up'), file.indexOf('-- migrate:down'));
  const down = file.slice(file.indexOf('-- migrate:down'));
  // Later migrations built on this one (the GoTrue face uses its admin functions) step down first.
  const later = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000400_gotrue_face.sql'), 'utf8');
  const laterUp = later.slice(later.indexOf('-- migrate:up'), later.indexOf('-- migrate:down'));
  const laterDown = later.slice(later.indexOf('-- migrate:down'));
  const rollback = new Error('rollback');
  await expect(
    stack.sql.begin(async (tx) => {
      await tx.unsafe(laterDown);
      await tx.unsafe(down);
      const [{ gone }] = await tx`select to_regprocedure('auth.admin_delete_user(uuid)') is null and not exists (select from information_schema.columns where table_schema = 'auth' and table_name = 'users' and column_name = 'disabled_at') as gone`;
      expect(gone).toBe(true);
      await tx.unsafe(up);
      await tx.unsafe(laterUp);
      const [{ back }] = await tx`select to_regprocedure('auth.admin_delete_user(uuid)') is not null as back`;
      expect(back).toBe(true);
      throw rollback;
    }),
  ).rejects.toBe(rollback);
});

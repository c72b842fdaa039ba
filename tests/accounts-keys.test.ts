// Signing-key rotation and the admin account from the environment, across restarts of the real
// stack. This stack has no SMTP_URL: magic links go to the log (development mode).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { Client } from 'undici';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { REPO_ROOT, startStack, type Stack } from './harness.ts';

// Tests that restart the stack get room for slow starts on a busy machine.
const RESTARTS = 240_000;

const run = promisify(execFile);
const ADMIN = 'Admin@Plinth.Test';
const ADMIN_PASSWORD = 'first admin password';
// Per client address and action; the earlier tests here sign up twice from 127.0.0.1.
const PER_IP = 8;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { PLINTH_ADMIN_EMAIL: ADMIN, PLINTH_ADMIN_PASSWORD: ADMIN_PASSWORD, PLINTH_RATE_LIMIT_PER_IP: String(PER_IP) } });
});
afterAll(() => stack?.destroy());

const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid as string;
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());

/** The `plinth` command against this stack's database, as an operator would run it. */
function plinth(...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sidecar', 'cli.ts'), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...stack.env } });
}

async function login(email: string, password: string) {
  return stack.fetch('/rpc/login', { method: 'POST', json: { email, password } });
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the admin account from PLINTH_ADMIN_EMAIL is created once, kept across restarts, and updated', async () => {
  const first = await login(ADMIN.toLowerCase(), ADMIN_PASSWORD);
  expect(first.status).toBe(200);
  const [session] = await first.json();
  expect(session.user.app_role).toBe('admin');
  expect(claimsOf(session.token).app_role).toBe('admin');
  expect((await stack.fetch('/auth/admin/users', { token: session.token })).status).toBe(200);

  // Demoted by the service key, then restarted: admin again, still one account with the same id.
  await stack.fetch(`/auth/admin/users/${session.user.id}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role: 'editor' } });
  await stack.restart();
  const rows = await stack.sql`select id, app_role from auth.users where lower(email) = ${ADMIN.toLowerCase()}`;
  expect(rows).toEqual([{ id: session.user.id, app_role: 'admin' }]);
  expect((await login(ADMIN, ADMIN_PASSWORD)).status).toBe(200);

  // A new password in the environment replaces the old one at the next start.
  stack.env.PLINTH_ADMIN_PASSWORD = 'second admin password';
  await stack.restart();
  expect((await login(ADMIN, ADMIN_PASSWORD)).status).toBe(400);
  const again = await login(ADMIN, 'second admin password');
  expect(again.status).toBe(200);
  expect((await again.json())[0].user.id).toBe(session.user.id);
  const [{ n }] = await stack.sql`select count(*)::int as n from auth.users where lower(email) = ${ADMIN.toLowerCase()}`;
  expect(n).toBe(1);
}, RESTARTS);

test('a too-short PLINTH_ADMIN_PASSWORD stops the start with a clear message', async () => {
  const bad = await startStack({ env: { PLINTH_ADMIN_EMAIL: 'a@b.test', PLINTH_ADMIN_PASSWORD: 'short' }, expectFailure: true });
  try {
    expect(bad.exitCode).not.toBe(0);
    expect(bad.output).toMatch(/PLINTH_ADMIN_PASSWORD is not acceptable: Password must be at least 8 characters long/);
    expect(bad.output).not.toContain('short\n');
  } finally {
    await bad.destroy();
  }
}, RESTARTS);

test('key rotation: old tokens keep working through PostgREST and the sidecar; new tokens carry the new kid', async () => {
  const email = `rotate-${randomUUID().slice(0, 8)}@example.test`;
  const signup = await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password: 'rotation password' } });
  expect(signup.status).toBe(201);
  const old = await signup.json();
  const oldKid = kidOf(old.token);
  expect((await stack.fetch('/todos', { method: 'POST', token: old.token, json: { title: 'before rotation' } })).status).toBe(201);

  const cli = await plinth('keys', 'rotate', '--json');
  const rotated = JSON.parse(cli.stdout) as { kid: string; anonKey: string; serviceKey: string };
  expect(rotated.kid).not.toBe(oldKid);

  // The running sidecar hears about the key (LISTEN plinth_keys) and publishes it.
  const jwks = await eventually('the new key in /auth/jwks', async () => {
    const doc = await (await stack.fetch('/.well-known/jwks.json')).json();
    return doc.keys.length === 2 ? doc : undefined;
  });
  expect(jwks.keys.map((k: { kid: string }) => k.kid)).toEqual([oldKid, rotated.kid]);

  const fresh = await login(email, 'rotation password');
  const [session] = await fresh.json();
  expect(kidOf(session.token)).toBe(rotated.kid);
  // PostgREST reloads its JWKS (NOTIFY pgrst 'reload config'): the new token is accepted.
  const rows = await eventually('PostgREST to accept the new key', async () => {
    const r = await stack.fetch('/todos', { token: session.token });
    return r.status === 200 ? r.json() : undefined;
  });
  expect(rows.map((t: { title: string }) => t.title)).toEqual(['before rotation']);

  // The token signed by the previous key still works, both through the proxy and the sidecar.
  const oldRows = await stack.fetch('/todos', { token: old.token });
  expect(oldRows.status).toBe(200);
  expect((await oldRows.json()).map((t: { title: string }) => t.title)).toEqual(['before rotation']);
  expect((await stack.fetch('/auth/user', { token: old.token })).status).toBe(200);
  // Refreshing a session started before the rotation yields a token from the new key.
  const refreshed = await (await stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: old.refresh_token } })).json();
  expect(kidOf(refreshed.token)).toBe(rotated.kid);
  expect((await stack.fetch('/todos', { token: refreshed.token })).status).toBe(200);
  // The new API keys work; so do the old ones.
  expect((await stack.fetch('/posts', { apikey: rotated.anonKey })).status).toBe(200);
  expect((await stack.fetch('/posts', { apikey: stack.anonKey })).status).toBe(200);

  // Retiring the old key: what it signed stops working everywhere; the newest cannot be retired.
  const refusal = await plinth('keys', 'retire', rotated.kid).catch((err: { code: number; stderr: string }) => err);
  expect(refusal).toMatchObject({ code: 1, stderr: expect.stringMatching(/is the newest signing key/) });
  // A key id may begin with '-' (a thumbprint is base64url): it is still read as the key id.
  const dashed = await plinth('keys', 'retire', '-dNoSuchKey').catch((err: { code: number; stderr: string }) => err);
  expect(dashed).toMatchObject({ code: 1, stderr: expect.stringMatching(/no signing key with kid "-dNoSuchKey"/) });
  const listed = JSON.parse((await plinth('keys', 'list', '--json')).stdout).map((k: { kid: string }) => k.kid);
  expect(listed).toEqual([oldKid, rotated.kid]);
  await plinth('keys', 'retire', oldKid);
  await eventually('the old key gone from /auth/jwks', async () => {
    const doc = await (await stack.fetch('/auth/jwks')).json();
    return doc.keys.length === 1 ? doc : undefined;
  });
  for (const path of ['/todos', '/auth/user']) {
    const r = await stack.fetch(path, { token: old.token });
    expect(r.status, path).toBe(401);
  }
  expect((await stack.fetch('/posts', { apikey: stack.anonKey })).status).toBe(401);
  // PostgREST itself, asked directly on its socket, trusts no token a user holds, of any key:
  // only the sidecar's internal tokens, so a retired key is refused everywhere at once.
  const postgrest = new Client('http://postgrest', { socketPath: path.join(stack.dataDir, 'postgrest.sock') });
  try {
    const direct = async (token: string) => (await postgrest.request({ path: '/todos', method: 'GET', headers: { authorization: `Bearer ${token}` } })).statusCode;
    expect(await direct(old.token)).toBe(401);
    expect(await direct(refreshed.token)).toBe(401);
    expect(await direct(rotated.serviceKey)).toBe(401);
  } finally {
    await postgrest.close();
  }
  expect((await stack.fetch('/todos', { token: refreshed.token })).status).toBe(200);
  expect((await stack.fetch('/posts', { apikey: rotated.anonKey })).status).toBe(200);
}, RESTARTS);

test('without SMTP_URL the start warns loudly and the magic link is written to the log', async () => {
  expect(stack.output).toMatch(/SMTP_URL is not set: magic-link emails are NOT sent/);
  const email = `devmail-${randomUUID().slice(0, 8)}@example.test`;
  expect((await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password: 'dev mode password' } })).status).toBe(201);
  expect((await stack.fetch('/auth/magic-link', { method: 'POST', json: { email } })).status).toBe(200);
  const token = await eventually('the link in the log', async () => {
    const m = new RegExp(`mail to ${email.replace(/[.]/g, '\\.')}[\\s\\S]*?/auth/verify\\?token=([A-Za-z0-9_-]+)`).exec(stack.output);
    return m?.[1];
  });
  expect((await stack.fetch(`/auth/verify?token=${token}`)).status).toBe(200);
  // Passwords never reach the log.
  expect(stack.output).not.toContain('dev mode password');
  expect(stack.output).not.toContain('second admin password');
});

test('signups from one address hit 429 whatever the email, and the count survives a restart (it lives in PostgreSQL)', async () => {
  const statuses: number[] = [];
  let last!: Response;
  for (let i = 0; i < PER_IP; i++) {
    last = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: `flood-${i}-${randomUUID().slice(0, 6)}@example.test`, password: 'flood password' } });
    statuses.push(last.status);
  }
  const firstRefusal = statuses.indexOf(429);
  expect(firstRefusal).toBeGreaterThan(0);
  expect(statuses.slice(0, firstRefusal).every((s) => s === 201)).toBe(true);
  expect(statuses.slice(firstRefusal).every((s) => s === 429)).toBe(true);
  expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);

  await stack.restart();
  const after = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: `flood-late-${randomUUID().slice(0, 6)}@example.test`, password: 'flood password' } });
  expect(after.status).toBe(429);
  // Other actions have their own counters: login from the same address still answers.
  expect((await login(ADMIN, 'second admin password')).status).toBe(200);
}, RESTARTS);

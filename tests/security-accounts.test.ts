// Attacks on accounts and on the sidecar's database connections, each replayed against the real
// stack: an address squatted before the operator names it the admin, a refresh token spent twice,
// a demoted admin's unexpired token, and SQL that escapes the caller's role.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { callerPassword, callerUrl, connect, type Sql } from '../sidecar/core/db.ts';
import { SAMPLE_APP_MIGRATIONS, startStack, type Stack } from './harness.ts';

const RESTARTS = 240_000;
const PASSWORD = 'correct horse battery staple';

// An app table whose trigger records which login wrote each row: it shows on which connection
// the sidecar ran the caller's UPDATE (entity-linked uploads run one as the caller).
const probeMigrations = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-probe-'));
fs.writeFileSync(
  path.join(probeMigrations, '20250701000001_login_probe.sql'),
  `-- migrate:up
CREATE TABLE public.probes (id int PRIMARY KEY, user_id uuid NOT NULL DEFAULT auth.uid(), attachment text, written_by text);
ALTER TABLE public.probes ENABLE ROW LEVEL SECURITY;
CREATE POLICY probes_owner ON public.probes TO authenticated USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
GRANT SELECT, INSERT, UPDATE, DELETE ON public.probes TO authenticated;
CREATE FUNCTION public.probe_login() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.written_by := session_user; RETURN NEW; END $$;
CREATE TRIGGER probes_login BEFORE UPDATE ON public.probes FOR EACH ROW EXECUTE FUNCTION public.probe_login();
-- migrate:down
DROP TABLE public.probes;
DROP FUNCTION public.probe_login();
`,
);

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ appMigrations: [SAMPLE_APP_MIGRATIONS, probeMigrations], env: { PLINTH_RATE_LIMIT_PER_IP: '1000' } });
});
afterAll(async () => {
  await stack?.destroy();
  fs.rmSync(probeMigrations, { recursive: true, force: true });
});

const email = () => `sec-${randomUUID().slice(0, 8)}@example.test`;

async function signup(address = email()) {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: address, password: PASSWORD } });
  expect(r.status).toBe(201);
  return r.json();
}
async function login(address: string, password = PASSWORD) {
  const r = await stack.fetch('/rpc/login', { method: 'POST', json: { email: address, password } });
  expect(r.status).toBe(200);
  return (await r.json())[0];
}
const refresh = (refresh_token: string) => stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token } });
const setRole = (id: string, app_role: string) =>
  stack.fetch(`/auth/admin/users/${id}`, { method: 'PATCH', apikey: stack.serviceKey, json: { app_role } });

describe('admin pre-claim', () => {
  test('an account squatting PLINTH_ADMIN_EMAIL stops the start; adopting it on purpose ends the squatter\'s sessions', async () => {
    const own = await startStack({ env: { PLINTH_RATE_LIMIT_PER_IP: '1000' } });
    try {
      const address = email();
      const r = await own.fetch('/rpc/signup', { method: 'POST', json: { email: address, password: PASSWORD } });
      const squatter = await r.json();
      await own.stop();

      // The operator names that address the admin: the start refuses, in one line naming the way out.
      Object.assign(own.env, { PLINTH_ADMIN_EMAIL: address, PLINTH_ADMIN_PASSWORD: 'the operator password' });
      await own.launch(true);
      expect(own.exitCode).toBe(1);
      const refusal = own.output.split('\n').filter((l) => l.startsWith('plinth: '));
      expect(refusal).toHaveLength(1);
      expect(refusal[0]).toMatch(/^plinth: an account with PLINTH_ADMIN_EMAIL .* already exists and is not an admin.*set PLINTH_ADMIN_ADOPT=true/);
      expect(own.output).not.toContain('the operator password');

      // Adopted on purpose: it is the admin now, and the squatter's refresh token mints nothing.
      own.env.PLINTH_ADMIN_ADOPT = 'true';
      await own.launch();
      const stolen = await own.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: squatter.refresh_token } });
      expect(stolen.status).toBe(401);
      expect((await own.fetch('/auth/user', { token: squatter.token })).status).toBe(401);
      expect((await own.fetch('/rpc/login', { method: 'POST', json: { email: address, password: PASSWORD } })).status).toBe(400);
      const admin = await own.fetch('/rpc/login', { method: 'POST', json: { email: address, password: 'the operator password' } });
      expect(admin.status).toBe(200);
      expect((await admin.json())[0].user).toMatchObject({ id: squatter.user.id, app_role: 'admin' });
    } finally {
      await own.destroy();
    }
  }, RESTARTS);

  test('a new PLINTH_ADMIN_PASSWORD between starts ends the admin\'s old sessions', async () => {
    const address = email();
    const own = await startStack({ env: { PLINTH_ADMIN_EMAIL: address, PLINTH_ADMIN_PASSWORD: 'first admin password' } });
    try {
      const r = await own.fetch('/rpc/login', { method: 'POST', json: { email: address, password: 'first admin password' } });
      const [old] = await r.json();
      own.env.PLINTH_ADMIN_PASSWORD = 'second admin password';
      await own.restart();
      expect((await own.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: old.refresh_token } })).status).toBe(401);
      expect((await own.fetch('/auth/user', { token: old.token })).status).toBe(401);
      // A restart with an unchanged password keeps sessions.
      const fresh = (await (await own.fetch('/rpc/login', { method: 'POST', json: { email: address, password: 'second admin password' } })).json())[0];
      await own.restart();
      expect((await own.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: fresh.refresh_token } })).status).toBe(200);
    } finally {
      await own.destroy();
    }
  }, RESTARTS);

  test('set_app_role ends every session of that user, and only theirs', async () => {
    const address = email();
    const a = await signup(address);
    const b = await login(address);
    const other = await signup();
    expect((await setRole(a.user.id, 'admin')).status).toBe(200);
    expect((await refresh(a.refresh_token)).status).toBe(401);
    expect((await refresh(b.refresh_token)).status).toBe(401);
    expect((await stack.fetch('/auth/user', { token: b.token })).status).toBe(401);
    expect((await refresh(other.refresh_token)).status).toBe(200);
    // Signing in again gives a token with the new role.
    expect((await login(address)).user.app_role).toBe('admin');
  });
});

describe('refresh-token fork', () => {
  test('a refresh token spent twice within the reuse interval yields one successor, and the copy cannot live on as a second branch', async () => {
    const session = await signup();
    const [ra, rb] = await Promise.all([refresh(session.refresh_token), refresh(session.refresh_token)]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    const [a, b] = [await ra.json(), await rb.json()];
    expect(b.refresh_token).toBe(a.refresh_token);
    const [{ live }] = await stack.sql`
      select count(*)::int as live from auth.refresh_tokens t join auth.sessions s on s.id = t.session_id
       where s.user_id = ${session.user.id} and t.used_at is null`;
    expect(live).toBe(1);

    // One holder goes on; the other copy, coming back once the line has moved on, is reuse.
    const a2 = await (await refresh(a.refresh_token)).json();
    const a3r = await refresh(a2.refresh_token);
    expect(a3r.status).toBe(200);
    const a3 = await a3r.json();
    expect((await refresh(b.refresh_token)).status).toBe(401);
    expect((await refresh(a3.refresh_token)).status).toBe(401);
  });
});

describe('demoted admin', () => {
  test("a demoted admin's unexpired token sees only their own rows of /files", async () => {
    const owner = await signup();
    const stored = await stack.fetch('/rpc/store_file', {
      method: 'POST',
      token: owner.token,
      body: 'private bytes',
      headers: { 'content-type': 'application/octet-stream', 'file-path': 'secret.txt' },
    });
    expect(stored.status).toBe(200);
    const address = email();
    const admin = await signup(address);
    expect((await setRole(admin.user.id, 'admin')).status).toBe(200);
    const token = (await login(address)).token;
    const before = await (await stack.fetch(`/files?owner_id=eq.${owner.user.id}`, { token })).json();
    expect(before.map((f: { path: string }) => f.path)).toEqual(['secret.txt']);

    expect((await setRole(admin.user.id, 'editor')).status).toBe(200);
    const after = await stack.fetch(`/files?owner_id=eq.${owner.user.id}`, { token });
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual([]);
  });
});

describe('caller SQL', () => {
  let caller: Sql;
  beforeAll(async () => {
    caller = connect(callerUrl(stack.databaseUrl, await callerPassword(stack.sql)), 1, 'security test');
  });
  afterAll(() => caller?.end({ timeout: 5 }));

  test('the sidecar runs caller SQL on a login that RESET ROLE cannot turn into a superuser', async () => {
    // The caller's UPDATE of an entity row (an upload) records the login it ran on.
    const user = await signup();
    await stack.sql`insert into public.probes (id, user_id) values (1, ${user.user.id})`;
    const form = new FormData();
    form.append('entity', JSON.stringify({ table: 'probes', id: '1', field: 'attachment' }));
    form.append('file', new Blob(['probe']), 'probe.txt');
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: user.token, body: form })).status).toBe(200);
    const [probe] = await stack.sql`select written_by from public.probes where id = 1`;
    expect(probe.written_by).toBe('plinth_caller');

    // What SQL that escaped the caller's role would find on that login.
    await caller`reset role`;
    const [me] = await caller`select session_user, current_setting('is_superuser') as superuser`;
    expect(me).toEqual({ session_user: 'plinth_caller', superuser: 'off' });
    await expect(caller`select count(*) from auth.users`).rejects.toMatchObject({ code: '42501' });
    await expect(caller`select count(*) from storage.blobs`).rejects.toMatchObject({ code: '42501' });
    await expect(caller`select value from auth.secrets`).rejects.toMatchObject({ code: '42501' });
  });

  test("SECURITY DEFINER entity-file functions called out of order refuse to touch another user's row", async () => {
    const [alice, mallory] = [await signup(), await signup()];
    const todo = (await (await stack.fetch('/todos', { method: 'POST', token: alice.token, json: { title: 'hers' }, headers: { prefer: 'return=representation' } })).json())[0];
    const form = new FormData();
    form.append('entity', JSON.stringify({ table: 'todos', id: String(todo.id), field: 'attachment' }));
    form.append('file', new Blob(['alice bytes']), 'plan.txt');
    expect((await stack.fetch('/storage/upload', { method: 'POST', token: alice.token, body: form })).status).toBe(200);
    const [spare] = await stack.sql<{ id: string }[]>`insert into storage.blobs (backend, key) values ('disk', ${randomUUID()}) returning id`;

    const asMallory = async (statement: (tx: Sql) => Promise<unknown>) =>
      caller.begin(async (tx) => {
        await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ role: 'authenticated', sub: mallory.user.id })}, true)`;
        return statement(tx as unknown as Sql);
      });
    // Linking bytes to her row without having updated it (RLS would have refused the UPDATE).
    await expect(
      asMallory((tx) => tx`select storage.commit_entity_file(${spare.id}, 'todos', ${String(todo.id)}, 'attachment', 'plan.txt', null, 1, ${'0'.repeat(64)}, 'text/plain')`),
    ).rejects.toMatchObject({ code: '42501' });
    // Forgetting her file and clearing her field the same way.
    await expect(asMallory((tx) => tx`select storage.delete_entity_file('todos', ${String(todo.id)}, 'attachment', 'plan.txt')`)).rejects.toMatchObject({
      code: '42501',
    });

    const [row] = await stack.sql`select attachment from public.todos where id = ${todo.id}`;
    expect(row.attachment).toBe('plan.txt');
    const download = await stack.fetch(`/storage/download/todos/${todo.id}/attachment/plan.txt`, { token: alice.token });
    expect(download.status).toBe(200);
    expect(await download.text()).toBe('alice bytes');
    // And through the sidecar, the owner still deletes her own file.
    expect((await stack.fetch(`/storage/delete/todos/${todo.id}/attachment/plan.txt`, { method: 'DELETE', token: alice.token })).status).toBeLessThan(300);
    const [cleared] = await stack.sql`select attachment from public.todos where id = ${todo.id}`;
    expect(cleared.attachment).toBeNull();
  });
});

// The audit trail against the real stack: each request and event leaves its row with the right
// actor, secrets never reach the log, only admins and the service role read it, and the front
// door keeps answering while the audit writer cannot write.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RealtimeClient } from './realtime-client.ts';
import { downAndUpAgain, runCli, startStack, type Stack, type TestUser } from './harness.ts';
import type { Tx } from '../sidecar/core/db.ts';

let stack: Stack;
let admin: TestUser;
let editor: TestUser;

beforeAll(async () => {
  // No grace period: a used refresh token presented again is reuse at once.
  stack = await startStack({ env: { PLINTH_REFRESH_TOKEN_REUSE_INTERVAL: '0', PLINTH_LOG_FORMAT: 'json' } });
  admin = await stack.createUser({ app_role: 'admin' });
  editor = await stack.createUser();
}, 120_000);
afterAll(async () => {
  await stack?.destroy();
});

/** Polls the owner's view of a table until `ok` holds for its rows (the writer flushes every 0.2 s). */
async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = await read();
    if (ok(v)) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never happened: ${what}`);
}

const requestRow = (requestId: string) =>
  eventually(
    () => stack.sql`select * from audit.requests where request_id = ${requestId}`,
    (rows) => rows.length === 1,
    `request ${requestId} logged`,
  ).then((rows) => rows[0]);

describe('request log', () => {
  test('a proxied request is logged with its caller, status, rows and the request id it was answered with', async () => {
    const created = await stack.fetch('/todos', { method: 'POST', token: editor.token, json: [{ title: 'a' }, { title: 'b' }], headers: { prefer: 'return=representation' } });
    expect(created.status).toBe(201);
    const r = await stack.fetch('/todos?select=id,title&order=id', { token: editor.token, headers: { 'x-request-id': 'my-trace-1' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-request-id')).toBe('my-trace-1');
    const row = await requestRow('my-trace-1');
    expect(row).toMatchObject({ user_id: editor.id, role: 'authenticated', app_role: 'editor', kind: 'tables', method: 'GET', path: '/todos', query: 'select=id,title&order=id', status: 200 });
    expect(Number(row.rows)).toBe(2);
    expect(Number(row.bytes_out)).toBeGreaterThan(0);

    const id = created.headers.get('x-request-id')!;
    expect(id).toMatch(/\S/);
    expect(await requestRow(id)).toMatchObject({ method: 'POST', status: 201, user_id: editor.id });
  });

  test('sidecar routes and refusals are logged too', async () => {
    const r = await stack.fetch('/auth/user', { token: editor.token, headers: { 'x-request-id': 'my-trace-2' } });
    expect(r.headers.get('x-request-id')).toBe('my-trace-2');
    expect(await requestRow('my-trace-2')).toMatchObject({ kind: 'accounts', path: '/auth/user', status: r.status });
    const refused = await stack.fetch('/todos', { headers: { 'x-request-id': 'my-trace-3' } });
    expect(refused.status).toBe(401);
    expect(await requestRow('my-trace-3')).toMatchObject({ status: 401, user_id: null });
  });

  test('a secret in the query string or headers never reaches the log', async () => {
    const secret = 'hunter2-very-secret';
    await stack.fetch(`/todos?select=id&access_token=${secret}&password=${secret}&apikey=${stack.anonKey}`, { token: editor.token, headers: { 'x-request-id': 'my-trace-4', 'x-api-key': secret } });
    const row = await requestRow('my-trace-4');
    expect(row.query).toBe('select=id&access_token=[redacted]&password=[redacted]&apikey=[redacted]');
    const [{ n }] = await stack.sql`select count(*)::int as n from audit.requests where query like ${'%' + secret + '%'} or query like ${'%' + stack.anonKey.slice(0, 40) + '%'} or path like ${'%' + secret + '%'}`;
    expect(n).toBe(0);
    const [{ tokens }] = await stack.sql`select count(*)::int as tokens from audit.requests where query like '%eyJ%' or path like '%eyJ%'`;
    expect(tokens).toBe(0);
  });
});

describe('reading the logs', () => {
  test('an admin and the service role read both logs through the views, with filters', async () => {
    await stack.fetch('/todos?id=eq.-1', { token: editor.token, headers: { 'x-request-id': 'my-trace-5' } });
    await requestRow('my-trace-5');
    const asAdmin = await stack.fetch(`/audit_requests?request_id=eq.my-trace-5&user_id=eq.${editor.id}`, { token: admin.token });
    expect(asAdmin.status).toBe(200);
    expect(await asAdmin.json()).toHaveLength(1);
    const errors = await stack.fetch('/audit_requests?status=gte.400&select=status', { token: stack.serviceKey });
    expect(errors.status).toBe(200);
    const list = (await errors.json()) as { status: number }[];
    expect(list.length).toBeGreaterThan(0);
    expect(list.every((r) => r.status >= 400)).toBe(true);
    const activity = await stack.fetch('/audit_activity?action=eq.auth.sign_up', { token: admin.token });
    expect(activity.status).toBe(200);
    expect(((await activity.json()) as unknown[]).length).toBeGreaterThanOrEqual(2);
  });

  test('nobody else reads them by any route', async () => {
    for (const view of ['audit_requests', 'audit_activity']) {
      const asEditor = await stack.fetch(`/${view}`, { token: editor.token });
      expect(asEditor.status).toBe(200);
      expect(await asEditor.json()).toEqual([]);
      const asAnon = await stack.fetch(`/${view}`, { apikey: stack.anonKey });
      expect([401, 403]).toContain(asAnon.status);
    }
    // A token claiming admin for an account that is not one reads nothing either.
    const forged = await stack.mint({ sub: editor.id, role: 'authenticated', app_role: 'admin' });
    expect(await (await stack.fetch('/audit_requests', { token: forged })).json()).toEqual([]);
    // The private schema is not served.
    const direct = await stack.fetch('/requests', { token: editor.token, headers: { 'accept-profile': 'audit' } });
    expect(direct.status).toBeGreaterThanOrEqual(400);
  });
});

describe('activity log', () => {
  const activity = (action: string, target: string) =>
    eventually(
      () => stack.sql`select * from audit.activity where action = ${action} and target = ${target}`,
      (rows) => rows.length > 0,
      `${action} on ${target}`,
    );

  test('sign-up, sign-in, failed sign-in, logout, role change and deletion each leave a row with the actor', async () => {
    const email = `audit-${Date.now()}@example.test`;
    const password = 'correct horse battery staple';
    const signup = await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password } });
    expect(signup.status).toBe(201);
    const [up] = await activity('auth.sign_up', email);
    const userId = up.actor_id as string;
    expect(userId).toMatch(/^[0-9a-f-]{36}$/);
    const login = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password } });
    expect(login.status).toBe(200);
    const [session] = await login.json();
    const signIns = await activity('auth.sign_in', userId);
    expect(signIns.some((r) => r.actor_id === userId && r.details.method === 'password')).toBe(true);

    const bad = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password: 'wrong password here' } });
    expect(bad.status).toBe(400);
    const [failed] = await activity('auth.sign_in_failed', email);
    expect(failed.actor_id).toBe(userId);
    expect(JSON.stringify(failed)).not.toContain('wrong password here');

    // A used refresh token presented again: the family is revoked, and that is recorded.
    const refresh = (refresh_token: string) => stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token } });
    expect((await refresh(session.refresh_token)).status).toBe(200);
    expect((await refresh(session.refresh_token)).status).toBe(401);
    const [reuse] = await activity('auth.refresh_token_reuse', userId);
    expect(reuse.actor_id).toBe(userId);

    const again = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password } });
    const [fresh] = await again.json();
    const out = await stack.fetch('/auth/logout', { method: 'POST', token: fresh.token });
    expect(out.status).toBe(204);
    const [logout] = await activity('auth.logout', userId);
    expect(logout.actor_id).toBe(userId);

    await stack.sql`update auth.users set app_role = 'admin' where id = ${userId}`;
    const [role] = await activity('auth.role_changed', email);
    expect(role.details).toMatchObject({ before: 'editor', after: 'admin' });
    await stack.sql`delete from auth.users where id = ${userId}`;
    await activity('auth.user_deleted', email);
  });

  test('file store, overwrite and delete are recorded with the owner as the actor', async () => {
    const store = (body: string) =>
      stack.fetch('/rpc/store_file', { method: 'POST', token: editor.token, body, headers: { 'content-type': 'application/octet-stream', 'file-path': 'audit/a.txt' } });
    expect((await store('one')).status).toBeLessThan(300);
    expect((await store('two!')).status).toBeLessThan(300);
    const del = await stack.fetch('/files?path=eq.audit/a.txt', { method: 'DELETE', token: editor.token });
    expect(del.status).toBeLessThan(300);
    const rows = await eventually(
      () => stack.sql`select action, actor_id, details from audit.activity where target = 'audit/a.txt' order by id`,
      (r) => r.length >= 3,
      'file events',
    );
    expect(rows.map((r) => r.action)).toEqual(['file.stored', 'file.overwritten', 'file.deleted']);
    expect(rows.every((r) => r.actor_id === editor.id)).toBe(true);
    expect(rows[1].details).toMatchObject({ before: { size: 3 }, after: { size: 4 } });
  });

  test('20250101000910_audit_inlined_actor: its down step restores the old functions, and both write the same row', async () => {
    const claims = JSON.stringify({ sub: editor.id, role: 'authenticated' });
    // The row audit.log writes for a caller with a token, and for the sidecar naming an actor.
    const logged = async (tx: Tx) => {
      await tx`select set_config('request.jwt.claims', ${claims}, true), set_config('plinth.actor', '', true)`;
      await tx`select audit.log('test.inlined', 'with a token', '{"n": 1}')`;
      await tx`select set_config('request.jwt.claims', '', true), set_config('plinth.actor', ${admin.id}, true)`;
      await tx`select audit.log('test.inlined', 'named by the sidecar')`;
      const rows = await tx`select actor_id, actor_role, action, target, details from audit.activity where action = 'test.inlined' order by id`;
      await tx`delete from audit.activity where action = 'test.inlined'`;
      return rows;
    };
    const shape = (tx: Tx) => tx`
      select p.proname, l.lanname, p.proconfig is not null as has_set
      from pg_proc p join pg_language l on l.oid = p.prolang
      where p.pronamespace = 'audit'::regnamespace and p.proname in ('actor', 'actor_role', 'log') order by p.proname`;
    let before: unknown;
    await downAndUpAgain(
      stack.sql,
      '20250101000910_audit_inlined_actor.sql',
      async (tx) => {
        expect((await shape(tx)).map((r) => `${r.proname} ${r.lanname} ${r.has_set}`)).toEqual(['actor sql true', 'actor_role sql true', 'log sql true']);
        before = await logged(tx);
      },
      async (tx) => {
        expect((await shape(tx)).map((r) => `${r.proname} ${r.lanname} ${r.has_set}`)).toEqual(['actor sql false', 'actor_role sql false', 'log plpgsql true']);
        expect(await logged(tx)).toEqual(before);
      },
    );
    expect(before).toEqual([
      { actor_id: editor.id, actor_role: 'authenticated', action: 'test.inlined', target: 'with a token', details: { n: 1 } },
      { actor_id: admin.id, actor_role: expect.any(String), action: 'test.inlined', target: 'named by the sidecar', details: null },
    ]);
  });

  test('realtime connects and subscriptions are in the request log, without the token in the URL', async () => {
    const token = await stack.mint({ sub: editor.id, role: 'authenticated', app_role: 'editor' });
    const client = await RealtimeClient.open(stack.url, token);
    expect((await client.subscribe({ id: 't', table: 'todos', filter: 'priority=gte.5' })).type).toBe('subscribed');
    client.ws.close();
    const rows = await eventually(
      () => stack.sql`select method, path, query, status, user_id from audit.requests where kind = 'realtime' and user_id = ${editor.id} order by id`,
      (r) => r.length >= 2,
      'realtime rows',
    );
    expect(rows[0]).toMatchObject({ method: 'CONNECT', path: '/realtime', query: 'access_token=[redacted]', status: 101 });
    expect(rows[1]).toMatchObject({ method: 'SUBSCRIBE', path: '/realtime/subscribe', query: 'table=todos&filter=priority%3Dgte.5', status: 200 });
  });

  test('schema changes and migrations are recorded (event triggers on the embedded superuser)', async () => {
    const [{ n }] = await stack.sql`select count(*)::int as n from audit.activity where action = 'migration.applied' and target = '20250101000100'`;
    expect(n).toBe(1);
    const [{ m }] = await stack.sql`select count(*)::int as m from audit.activity where action = 'schema.create_table' and target = 'public.todos'`;
    expect(m).toBe(1);
    await stack.sql`create table public.audit_probe (id int)`;
    await stack.sql`alter table public.audit_probe add column note text`;
    await stack.sql`drop table public.audit_probe`;
    const rows = await stack.sql`select action from audit.activity where target like 'public.audit_probe%' order by id`;
    expect(rows.map((r) => r.action)).toEqual(expect.arrayContaining(['schema.create_table', 'schema.alter_table', 'schema.drop_table']));
  });
});

describe('the writer never holds up a request', () => {
  test('while audit.requests is locked the proxy keeps answering; rows arrive once it is free', async () => {
    const blocker = stack.sql.reserve();
    const conn = await blocker;
    await conn`begin`;
    await conn`lock table audit.requests in access exclusive mode`;
    try {
      for (let i = 0; i < 20; i++) {
        const r = await stack.fetch('/todos?select=id', { token: editor.token, headers: { 'x-request-id': `locked-${i}` } });
        expect(r.status).toBe(200);
      }
    } finally {
      await conn`rollback`;
      conn.release();
    }
    await requestRow('locked-19');
  });

  test('while the writer connection is cut the proxy keeps answering', async () => {
    const cut = (await stack.sql<{ pid: number }[]>`select pid, pg_terminate_backend(pid) from pg_stat_activity where application_name = 'plinth audit'`).map((r) => r.pid);
    // Gone for good before the requests: a backend slow to exit could still take (and lose) a
    // batch holding the very row awaited below.
    await eventually(
      () => stack.sql`select 1 from pg_stat_activity where pid = any(${cut}::int[])`,
      (rows) => rows.length === 0,
      'the writer connection to be gone',
    );
    for (let i = 0; i < 10; i++) {
      const r = await stack.fetch('/todos?select=id', { token: editor.token, headers: { 'x-request-id': `cut-${i}` } });
      expect(r.status).toBe(200);
    }
    await requestRow('cut-9');
  });
});

describe('backups', () => {
  test('plinth backup leaves a backup.done row naming the archive', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-audit-backup-')), 'a.tar');
    try {
      const r = await runCli(['backup', '--out', out], stack.env);
      expect(r.code, r.stderr).toBe(0);
      const [row] = await stack.sql`select actor_role, details from audit.activity where action = 'backup.done' and target = ${out}`;
      expect(row.details).toMatchObject({ encrypted: false });
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  }, 120_000);
});

describe('export and logs', () => {
  test('plinth audit export writes both logs as JSON lines, oldest first, secrets redacted', async () => {
    const r = await runCli(['audit', 'export', '--since', '1h'], stack.env);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.some((l) => l.log === 'request' && l.request_id === 'my-trace-1' && l.user_id === editor.id)).toBe(true);
    expect(lines.some((l) => l.log === 'activity' && l.action === 'auth.sign_up')).toBe(true);
    const times = lines.map((l) => Date.parse(l.at));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(r.stdout).not.toContain('hunter2-very-secret');
    const none = await runCli(['audit', 'export', '--since', '2999-01-01'], stack.env);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe('');
    const bad = await runCli(['audit', 'export', '--since', 'yesterday'], stack.env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a time/);
  }, 120_000);

  test('PLINTH_LOG_FORMAT=json: every log line is one JSON object', async () => {
    // Complete lines only: the sidecar may be writing one as the output is read.
    const complete = stack.output.slice(0, stack.output.lastIndexOf('\n') + 1);
    const logLines = complete.split('\n').filter((l) => /^\{/.test(l));
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) expect(JSON.parse(line)).toMatchObject({ time: expect.any(String), level: expect.any(String), msg: expect.any(String) });
    expect(stack.output).not.toMatch(/^\d{4}-\d{2}-\d{2}T\S+ (INFO|WARN|ERROR) /m);
  });
});

// Last: retiring the first key ends every token minted with it.
describe('keys', () => {
  test('key rotation and retirement are recorded', async () => {
    const rotated = await runCli(['keys', 'rotate', '--json'], stack.env);
    expect(rotated.code).toBe(0);
    const keys = await stack.sql<{ kid: string }[]>`select kid from auth.signing_keys order by created_at`;
    expect(keys).toHaveLength(2);
    const retired = await runCli(['keys', 'retire', keys[0].kid], stack.env);
    expect(retired.code).toBe(0);
    const rows = await stack.sql`select action, target from audit.activity where action like 'keys.%' order by id`;
    expect(rows.map((r) => [r.action, r.target])).toEqual([['keys.added', keys[0].kid], ['keys.added', keys[1].kid], ['keys.retired', keys[0].kid]]);
  }, 120_000);
});

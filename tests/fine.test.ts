// A Fine app on Plinth: every curl example of Fine's README, one for one, against /db/tables (with
// BYPASS_AUTH, as Fine's examples run: no token, the development user); _policies rows as real
// policies, proven per user; the rows _policies refuses; /db/tables and PostgREST agreeing.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REPO_ROOT, startStack, type Stack, type TestUser } from './harness.ts';

const FINE_APP = path.join(REPO_ROOT, 'tests', 'fixtures', 'fine-app');
const DEV_ID = 'dddddddd-0000-4000-8000-000000000001';

let stack: Stack;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  stack = await startStack({ appMigrations: FINE_APP, env: { BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@fine.test' } });
  alice = await stack.createUser();
  bob = await stack.createUser();
});
afterAll(() => stack?.destroy());

/** A request as curl sends it in Fine's README: no token, JSON when there is a body. */
async function curl(method: string, pathname: string, body?: string): Promise<{ status: number; json: any }> {
  const r = await fetch(`${stack.url}${pathname}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body });
  return { status: r.status, json: await r.json() };
}
const ids = (rows: Array<{ id: number }>) => rows.map((r) => r.id).sort((a, b) => a - b);

describe("Fine's README, example by example (BYPASS_AUTH: no token acts as the development user)", () => {
  test('the log says loudly that authentication is bypassed, and for whom', () => {
    expect(stack.output).toMatch(/BYPASS_AUTH=true: DEVELOPMENT ONLY/);
    expect(stack.output).toMatch(/acts as dev@fine\.test/);
  });

  test('# Get all todos: the development user sees its own rows, not user123\'s', async () => {
    const r = await curl('GET', '/db/tables/todos');
    expect(r.status).toBe(200);
    expect(ids(r.json.data)).toEqual([123, 124, 125]);
  });

  test('# Filter by field', async () => {
    const r = await curl('GET', '/db/tables/todos?completed=false');
    expect(r.status).toBe(200);
    expect(ids(r.json.data)).toEqual([123, 125]);
  });

  test('# Advanced filtering, limit, and ordering (like without a wildcard matches a substring)', async () => {
    const r = await curl('GET', '/db/tables/todos?title.like=important&limit=10&order=created_at%20DESC');
    expect(r.status).toBe(200);
    expect(r.json.data.map((t: { title: string }) => t.title)).toEqual(['important call']);
  });

  test('# Get todo by ID', async () => {
    const r = await curl('GET', '/db/tables/todos/123');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      data: { id: 123, title: 'Important meeting notes', user_id: DEV_ID, completed: false, priority: 5, status: 'open', created_at: '2023-06-01' },
    });
  });

  test('# Greater than', async () => {
    expect(ids((await curl('GET', '/db/tables/todos?priority.gt=3')).json.data)).toEqual([123, 125]);
  });

  test('# Less than or equal to', async () => {
    expect(ids((await curl('GET', '/db/tables/todos?created_at.lte=2023-12-31')).json.data)).toEqual([123, 125]);
  });

  test('# Not equal', async () => {
    // SQL's <>: a row whose status is NULL is neither equal nor unequal.
    expect(ids((await curl('GET', '/db/tables/todos?status.neq=cancelled')).json.data)).toEqual([123]);
  });

  test('# LIKE pattern matching', async () => {
    const r = await curl('GET', '/db/tables/todos?title.like=meeting');
    expect(r.status).toBe(200);
    expect(ids(r.json.data)).toEqual([123]);
  });

  test('# Create a new todo: "user123" is not the caller, so the README\'s own insert policy refuses it; the caller\'s id is accepted', async () => {
    const refused = await curl('POST', '/db/tables/todos', '{"title": "Buy groceries", "user_id": "user123", "completed": false}');
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ code: '42501', message: 'new row violates row-level security policy for table "todos"' });
    const created = await curl('POST', '/db/tables/todos', `{"title": "Buy groceries", "user_id": "${DEV_ID}", "completed": false}`);
    expect(created.status).toBe(201);
    expect(created.json.data).toEqual([expect.objectContaining({ id: expect.any(Number), title: 'Buy groceries', user_id: DEV_ID, completed: false })]);
    const [{ n }] = await stack.sql`select count(*)::int as n from todos where title = 'Buy groceries'`;
    expect(n).toBe(1);
  });

  test('# Update todo by ID', async () => {
    const r = await curl('PATCH', '/db/tables/todos/123', '{"completed": true}');
    expect(r.status).toBe(200);
    expect(r.json.data).toMatchObject({ id: 123, completed: true });
  });

  test('# Update with a WHERE condition: user123\'s rows are not the caller\'s to change', async () => {
    const r = await curl('PATCH', '/db/tables/todos', '{\n"data": {"completed": true},\n"where": {"user_id": "user123"}\n}');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ data: [] });
    const [row] = await stack.sql`select completed, priority from todos where id = 200`;
    expect(row).toEqual({ completed: true, priority: 9 });
    // The same request for the caller's own rows changes them all.
    const own = await curl('PATCH', '/db/tables/todos', JSON.stringify({ data: { priority: 2 }, where: { user_id: DEV_ID, completed: false } }));
    expect(own.status).toBe(200);
    expect(own.json.data.map((t: { priority: number }) => t.priority)).toEqual(own.json.data.map(() => 2));
    expect(own.json.data.length).toBeGreaterThan(0);
  });

  test('# Delete todo by ID', async () => {
    const r = await curl('DELETE', '/db/tables/todos/123');
    expect(r.status).toBe(200);
    expect(r.json.data).toMatchObject({ id: 123, title: 'Important meeting notes' });
    expect((await curl('GET', '/db/tables/todos/123')).status).toBe(404);
  });

  test('# Delete with a WHERE condition: only the caller\'s completed rows go', async () => {
    const r = await curl('DELETE', '/db/tables/todos', '{\n"where": {"completed": true}\n}');
    expect(r.status).toBe(200);
    expect(ids(r.json.data)).toEqual([124]);
    const left = await stack.sql`select id from todos where completed order by id`;
    expect(left.map((x) => x.id)).toEqual([200]);
  });

  test('the development user is a user, never the service role: _policies and other users stay out of reach', async () => {
    const r = await curl('GET', '/_policies');
    expect(r.status).toBe(403);
    // Through the proxy too, the fallback token is the development user's.
    const rows = await (await fetch(`${stack.url}/todos?select=user_id`)).json();
    expect(new Set(rows.map((x: { user_id: string }) => x.user_id))).toEqual(new Set([DEV_ID]));
  });
});

describe('_policies rows are real policies, per user', () => {
  test('owner sees, another user does not, anon does not', async () => {
    const made = await stack.fetch('/db/tables/todos', { method: 'POST', token: alice.token, json: { title: 'Alice only', user_id: alice.id } });
    expect(made.status).toBe(201);
    const [row] = (await made.json()).data;
    expect((await (await stack.fetch(`/db/tables/todos/${row.id}`, { token: alice.token })).json()).data.title).toBe('Alice only');
    expect((await stack.fetch(`/db/tables/todos/${row.id}`, { token: bob.token })).status).toBe(404);
    expect((await (await stack.fetch('/db/tables/todos', { token: bob.token })).json()).data).toEqual([]);
    // anon holds no privilege on todos: the table is not there for it.
    const anon = await stack.fetch('/db/tables/todos', { apikey: stack.anonKey });
    expect(anon.status).toBe(404);
    // And PostgREST itself agrees: the policies are in the database, not in the sidecar.
    expect((await (await stack.fetch(`/todos?id=eq.${row.id}`, { token: bob.token })).json())).toEqual([]);
    expect((await stack.fetch('/todos', { apikey: stack.anonKey })).status).toBe(403);
    // Bob can neither change nor delete it.
    expect((await stack.fetch(`/db/tables/todos/${row.id}`, { method: 'PATCH', token: bob.token, json: { title: 'mine now' } })).status).toBe(404);
    expect((await stack.fetch(`/db/tables/todos/${row.id}`, { method: 'DELETE', token: bob.token })).status).toBe(404);
    const [still] = await stack.sql`select title from todos where id = ${row.id}`;
    expect(still.title).toBe('Alice only');
  });

  test("an 'all' rule on a uuid column and a primary key not named id", async () => {
    const r = await stack.fetch('/db/tables/notes', { method: 'POST', token: alice.token, json: [{ note_key: 'k1', body: 'one' }, { note_key: 'k2', body: 'two' }] });
    expect(r.status).toBe(201);
    expect((await r.json()).data.map((n: { owner: string }) => n.owner)).toEqual([alice.id, alice.id]);
    expect((await (await stack.fetch('/db/tables/notes/k2', { token: alice.token })).json()).data).toEqual({ note_key: 'k2', owner: alice.id, body: 'two' });
    expect((await stack.fetch('/db/tables/notes/k2', { token: bob.token })).status).toBe(404);
    const patched = await stack.fetch('/db/tables/notes/k1', { method: 'PATCH', token: alice.token, json: { body: 'uno' } });
    expect((await patched.json()).data.body).toBe('uno');
    // Bob cannot insert a row for Alice: the WITH CHECK half of the rule.
    const forged = await stack.fetch('/db/tables/notes', { method: 'POST', token: bob.token, json: { note_key: 'k3', owner: alice.id, body: 'x' } });
    expect(forged.status).toBe(403);
  });

  test('the policy each row became is in pg_policies, $$CURRENT_USER$$ cast to text for a text column', async () => {
    const rows = await stack.sql`
      select p.action, k.policyname, k.cmd, k.roles::text[] as roles, k.qual, k.with_check
      from _policies p join pg_policies k on k.tablename = p.table_name and k.policyname = '_policies_' || p.id
      where p.table_name = 'todos' order by p.id`;
    expect(rows.map((r) => [r.action, r.cmd, r.roles])).toEqual([
      ['select', 'SELECT', ['authenticated']],
      ['insert', 'INSERT', ['authenticated']],
      ['update', 'UPDATE', ['authenticated']],
      ['delete', 'DELETE', ['authenticated']],
    ]);
    expect(rows[0].qual).toBe('(user_id = (auth.uid())::text)');
    const [notes] = await stack.sql`select qual from pg_policies where tablename = 'notes'`;
    expect(notes.qual).toBe('(owner = auth.uid())');
  });

  test('$$CURRENT_ROLE$$ is the app role; updating a row replaces its policy, deleting it drops the policy and the grant it made', async () => {
    await stack.sql`insert into bulletins (body, audience) values ('for editors', 'editor'), ('for admins', 'admin')`;
    expect((await stack.fetch('/db/tables/bulletins', { token: alice.token })).status).toBe(404);
    const add = await stack.fetch('/_policies', {
      method: 'POST', token: stack.serviceKey, headers: { prefer: 'return=representation' },
      json: { table_name: 'bulletins', action: 'select', using_clause: 'audience = $$CURRENT_ROLE$$' },
    });
    expect(add.status).toBe(201);
    const [policy] = await add.json();
    const seen = async () => ((await (await stack.fetch('/db/tables/bulletins', { token: alice.token })).json()).data ?? []).map((b: { body: string }) => b.body);
    expect(await seen()).toEqual(['for editors']);

    const edit = await stack.fetch(`/_policies?id=eq.${policy.id}`, { method: 'PATCH', token: stack.serviceKey, json: { using_clause: 'true' } });
    expect(edit.status).toBe(204);
    expect((await seen()).sort()).toEqual(['for admins', 'for editors']);

    const drop = await stack.fetch(`/_policies?id=eq.${policy.id}`, { method: 'DELETE', token: stack.serviceKey });
    expect(drop.status).toBe(204);
    expect((await stack.fetch('/db/tables/bulletins', { token: alice.token })).status).toBe(404);
    const [{ granted, policies }] = await stack.sql`
      select has_table_privilege('authenticated', 'public.bulletins', 'SELECT') as granted,
             (select count(*)::int from pg_policies where tablename = 'bulletins') as policies`;
    expect({ granted, policies }).toEqual({ granted: false, policies: 0 });
  });
});

describe('what the console shows', () => {
  test('each _policies row beside the policy it became: for admins and the service role, nobody else', async () => {
    const admin = await stack.createUser({ app_role: 'admin' });
    const asAdmin = await (await stack.fetch('/rpc/fine_policies_in_force', { token: admin.token })).json();
    const todos = asAdmin.filter((r: { table_name: string }) => r.table_name === 'todos');
    expect(todos[0]).toMatchObject({ action: 'select', using_clause: 'user_id = $$CURRENT_USER$$', policy_name: `_policies_${todos[0].id}`, policy_command: 'SELECT', policy_using: '(user_id = (auth.uid())::text)' });
    expect(await (await stack.fetch('/rpc/fine_policies_in_force', { token: stack.serviceKey })).json()).toEqual(asAdmin);
    expect(await (await stack.fetch('/rpc/fine_policies_in_force', { token: alice.token })).json()).toEqual([]);
    expect((await stack.fetch('/rpc/fine_policies_in_force', { apikey: stack.anonKey })).status).toBe(403);
  });
});

describe('rows that cannot become a policy are refused with PostgreSQL\'s error, and nothing changes', () => {
  const state = async () => {
    const [row] = await stack.sql`select (select count(*)::int from _policies) as rows, (select count(*)::int from pg_policies where schemaname = 'public') as policies`;
    return row;
  };

  test.each<[string, string, Record<string, unknown>, RegExp]>([
    ['an unknown table', '42P01', { table_name: 'no_such_table', action: 'select', using_clause: 'true' }, /relation "public.no_such_table" does not exist/],
    ['a bad expression', '42703', { table_name: 'todos', action: 'select', using_clause: 'no_such_column = $$CURRENT_USER$$' }, /column "no_such_column" does not exist/],
    ['a using_clause on insert', '42601', { table_name: 'todos', action: 'insert', using_clause: 'true' }, /only WITH CHECK expression allowed for INSERT/],
    ['no clause at all', '23514', { table_name: 'todos', action: 'select' }, /_policies_needs_a_clause/],
    ['an unknown action', '23514', { table_name: 'todos', action: 'read', using_clause: 'true' }, /_policies_action_known/],
    ['a second statement', '42601', { table_name: 'todos', action: 'select', using_clause: 'true); drop table todos; select (1' }, /";" is not allowed/],
    ['a role that is not an API role', '23514', { table_name: 'todos', action: 'select', using_clause: 'true', roles: ['postgres'] }, /_policies_roles_known/],
  ])('%s (%s)', async (_name, code, row, message) => {
    const before = await state();
    const r = await stack.fetch('/_policies', { method: 'POST', token: stack.serviceKey, json: row });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(await r.json()).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(await state()).toEqual(before);
  });

  test('a migration (the owner) gets the same refusal', async () => {
    const before = await state();
    await expect(stack.sql`insert into _policies (table_name, action, using_clause) values ('no_such_table', 'select', 'true')`).rejects.toMatchObject({ code: '42P01' });
    expect(await state()).toEqual(before);
  });

  test('users cannot read or write _policies, and TRUNCATE is refused', async () => {
    expect((await stack.fetch('/_policies', { token: alice.token })).status).toBe(403);
    expect((await stack.fetch('/_policies', { method: 'POST', token: alice.token, json: { table_name: 'todos', action: 'select', using_clause: 'true' } })).status).toBe(403);
    expect((await stack.fetch('/db/tables/_policies', { token: alice.token })).status).toBe(404);
    await expect(stack.sql`truncate _policies`).rejects.toMatchObject({ code: '0A000' });
  });
});

describe('/db/tables and PostgREST agree', () => {
  beforeAll(async () => {
    await stack.sql`
      insert into todos (title, user_id, completed, priority, status) values
        ('b1', ${bob.id}, false, 1, 'open'), ('b2', ${bob.id}, true, 5, 'open'),
        ('b3', ${bob.id}, false, 7, null), ('b4', ${bob.id}, false, 3, 'done'), ('a9', ${alice.id}, false, 8, 'open')`;
  });

  test.each<[string, string]>([
    ['priority.gt=2&order=priority DESC&select=id,title', 'priority=gt.2&order=priority.desc&select=id,title'],
    ['completed=false&order=id', 'completed=eq.false&order=id.asc'],
    ['status.in=open,done&order=id&limit=2&offset=1', 'status=in.(open,done)&order=id.asc&limit=2&offset=1'],
    ['status.is=null', 'status=is.null'],
    ['title.ilike=B&order=title DESC', 'title=ilike.*B*&order=title.desc'],
  ])('%s', async (fine, postgrest) => {
    const a = await stack.fetch(`/db/tables/todos?${fine}`, { token: bob.token });
    const b = await stack.fetch(`/todos?${postgrest}`, { token: bob.token });
    expect(a.status).toBe(200);
    const rows = await b.json();
    expect(rows.length).toBeGreaterThan(0);
    expect((await a.json()).data).toEqual(rows);
  });
});

describe('bad input', () => {
  test('PATCH or DELETE of a whole table without where is 400 and touches nothing', async () => {
    const before = await stack.sql`select id, completed from todos order by id`;
    for (const [method, json] of [['PATCH', { data: { completed: true } }], ['PATCH', { data: { completed: true }, where: {} }], ['DELETE', { where: {} }], ['DELETE', undefined]] as const) {
      const r = await stack.fetch('/db/tables/todos', { method, token: bob.token, json });
      expect(r.status).toBe(400);
      expect((await r.json()).message).toMatch(/where/);
    }
    expect(await stack.sql`select id, completed from todos order by id`).toEqual(before);
  });

  test('an unknown operator is 400 naming the parameter', async () => {
    const r = await stack.fetch('/db/tables/todos?title.contains=x', { token: bob.token });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ message: 'Unknown operator "contains" in parameter "title.contains"', hint: expect.stringContaining('eq, neq') });
  });

  test('an unknown table and a table the caller may not touch get the same 404', async () => {
    const unknown = await stack.fetch('/db/tables/no_such_table', { token: bob.token });
    const hidden = await stack.fetch('/db/tables/ledger', { token: bob.token });
    expect([unknown.status, hidden.status]).toEqual([404, 404]);
    expect(JSON.stringify(await hidden.json()).replace('ledger', 'X')).toBe(JSON.stringify(await unknown.json()).replace('no_such_table', 'X'));
  });

  test('an unknown column or a value of the wrong type is 400, in PostgREST\'s shape', async () => {
    const col = await stack.fetch('/db/tables/todos?nope=1', { token: bob.token });
    expect(col.status).toBe(400);
    expect(await col.json()).toMatchObject({ code: '42703' });
    const type = await stack.fetch('/db/tables/todos?priority.gt=lots', { token: bob.token });
    expect(type.status).toBe(400);
    expect(await type.json()).toMatchObject({ code: '22P02' });
    const insert = await stack.fetch('/db/tables/todos', { method: 'POST', token: bob.token, json: { title: 't', user_id: bob.id, nope: 1 } });
    expect(insert.status).toBe(400);
  });
});

describe('version and development mode', () => {
  test('GET /version reports Plinth\'s version and the API versions', async () => {
    const r = await stack.fetch('/version');
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ name: 'plinth', version: expect.stringMatching(/^\d+\.\d+\.\d+/), apis: { db_tables: expect.any(String), rest: expect.any(String) } });
  });

  test('BYPASS_AUTH is refused unless Plinth listens on loopback only', async () => {
    const s = await startStack({ appMigrations: FINE_APP, env: { BYPASS_AUTH: 'true', PLINTH_DEV_USER: 'dev@fine.test', PLINTH_HOST: '0.0.0.0' }, expectFailure: true });
    try {
      expect(s.exitCode).not.toBe(0);
      expect(s.output).toMatch(/BYPASS_AUTH=true .* refused unless PLINTH_HOST is a loopback address/);
    } finally {
      await s.destroy();
    }
  });
});

// auth.uid() and auth.role() read the subject and role from settings copied once per request
// (PostgREST's pre-request, the sidecar's caller switch) instead of parsing request.jwt.claims for
// every row, and only while the claims are still the ones the copies came from.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { downAndUpAgain, SAMPLE_APP_MIGRATIONS, startStack, type Stack } from './harness.ts';

// What a request's transaction holds when the app's own SQL runs.
const probeMigrations = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-claims-'));
fs.writeFileSync(
  path.join(probeMigrations, '20250701000010_claims_probe.sql'),
  `-- migrate:up
CREATE FUNCTION public.claims_probe() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'sub', current_setting('request.jwt.claim.sub', true),
    'role', current_setting('request.jwt.claim.role', true),
    'split_matches', current_setting('plinth.split_claims', true) = current_setting('request.jwt.claims', true),
    'uid', auth.uid(),
    'auth_role', auth.role())
$$;
GRANT EXECUTE ON FUNCTION public.claims_probe() TO anon, authenticated;
-- migrate:down
DROP FUNCTION public.claims_probe();
`,
);

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ appMigrations: [SAMPLE_APP_MIGRATIONS, probeMigrations] });
});
afterAll(async () => {
  await stack?.destroy();
  fs.rmSync(probeMigrations, { recursive: true, force: true });
});

test("PostgREST copies a user's subject and role once per request, and auth.uid() answers from them", async () => {
  const alice = await stack.createUser();
  const res = await stack.fetch('/rpc/claims_probe', { token: alice.token });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ sub: alice.id, role: 'authenticated', split_matches: true, uid: alice.id, auth_role: 'authenticated' });
});

test('with the anon key the copied subject is empty, auth.uid() is null and auth.role() is anon', async () => {
  const res = await stack.fetch('/rpc/claims_probe', { apikey: stack.anonKey });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ sub: '', role: 'anon', split_matches: true, uid: null, auth_role: 'anon' });
});

test('the filtered, ordered query still shows each user exactly their own rows', async () => {
  const [alice, bob] = [await stack.createUser(), await stack.createUser()];
  await stack.sql`insert into public.todos (user_id, title, priority) select ${alice.id}, 'a' || n, n % 10 from generate_series(1, 50) n`;
  await stack.sql`insert into public.todos (user_id, title, priority) select ${bob.id}, 'b' || n, n % 10 from generate_series(1, 30) n`;
  for (const [user, prefix, count] of [[alice, 'a', 50], [bob, 'b', 30]] as const) {
    const res = await stack.fetch('/todos?select=title,priority&priority=gte.0&order=priority.desc,id', { token: user.token });
    const rows: { title: string }[] = await res.json();
    expect(rows).toHaveLength(count);
    expect(rows.every((r) => r.title.startsWith(prefix))).toBe(true);
  }
});

test('claims set after the copies were made win: the copies are ignored, never a stale subject', async () => {
  const [alice, bob] = [await stack.createUser(), await stack.createUser()];
  await stack.sql`insert into public.todos (user_id, title) values (${alice.id}, 'hers'), (${alice.id}, 'hers too'), (${bob.id}, 'his')`;
  const seen = await stack.sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ role: 'authenticated', sub: alice.id })}, true)`;
    await tx`select auth.pre_request()`;
    const before = await tx`select auth.uid() as uid, current_setting('request.jwt.claim.sub') as copied, (select array_agg(title order by title) from public.todos) as titles`;
    // Another caller's claims in the same transaction, without a new pre-request.
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ role: 'authenticated', sub: bob.id })}, true)`;
    const after = await tx`select auth.uid() as uid, current_setting('request.jwt.claim.sub') as copied, (select array_agg(title order by title) from public.todos) as titles`;
    return { before: before[0], after: after[0] };
  });
  expect(seen.before).toEqual({ uid: alice.id, copied: alice.id, titles: ['hers', 'hers too'] });
  expect(seen.after).toEqual({ uid: bob.id, copied: alice.id, titles: ['his'] });
});

test('the migration has a working down step: auth.uid() parses the claims again and PostgREST is no longer told to call the pre-request', async () => {
  const alice = await stack.createUser();
  const claims = JSON.stringify({ role: 'authenticated', sub: alice.id });
  const state = async (tx: Parameters<Parameters<typeof downAndUpAgain>[2]>[0]) => {
    await tx`select auth.postgrest_pre_config()`;
    await tx`select set_config('request.jwt.claims', ${claims}, true)`;
    const [row] = await tx`select auth.uid() as uid, auth.role() as role, coalesce(current_setting('pgrst.db_pre_request', true), '') as pre_request,
      (select count(*)::int from pg_catalog.pg_proc where proname = 'pre_request' and pronamespace = 'auth'::regnamespace) as functions`;
    return row;
  };
  await downAndUpAgain(
    stack.sql,
    '20250101000890_auth_claims_once.sql',
    async (tx) => expect(await state(tx)).toMatchObject({ uid: alice.id, role: 'authenticated', pre_request: '', functions: 0 }),
    async (tx) => expect(await state(tx)).toMatchObject({ uid: alice.id, role: 'authenticated', pre_request: 'auth.pre_request', functions: 1 }),
  );
});

// supabase-js's table API, unmodified, against Plinth: /rest/v1/* is the REST API of the root
// paths (the same PostgREST, the same tokens, the same RLS), with the apikey header it sends.
import { randomUUID } from 'node:crypto';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { startStack, type Stack } from './harness.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { PLINTH_RATE_LIMIT_PER_IP: '1000' } });
});
afterAll(async () => {
  await stack?.destroy();
});

/** A client as an app would create one; `token` stands in for a signed-in user's session. */
function client(key: string, token?: string): SupabaseClient {
  return createClient(stack.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
    global: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
  });
}

/** An account made through Plinth's own sign-up route, and its access token. */
async function plinthAccount(): Promise<{ id: string; email: string; token: string }> {
  const email = `rest-${randomUUID().slice(0, 8)}@example.test`;
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password: 'a long password' } });
  expect(r.status).toBe(201);
  const body = await r.json();
  return { id: body.user.id, email, token: body.token };
}

describe('/rest/v1 with the unmodified supabase-js client', () => {
  test('from().insert/select/update/delete: each user reaches only their own rows', async () => {
    const alice = await plinthAccount();
    const bob = await plinthAccount();
    const asAlice = client(stack.anonKey, alice.token);
    const asBob = client(stack.anonKey, bob.token);

    const inserted = await asAlice.from('todos').insert({ title: 'alice task', priority: 2 }).select().single();
    expect(inserted.error).toBeNull();
    expect(inserted.data).toMatchObject({ title: 'alice task', priority: 2, user_id: alice.id });
    const bobs = await asBob.from('todos').insert([{ title: 'bob 1' }, { title: 'bob 2' }]).select('id');
    expect(bobs.error).toBeNull();
    expect(bobs.data).toHaveLength(2);

    const aliceSees = await asAlice.from('todos').select('title, user_id');
    expect(aliceSees.data).toEqual([{ title: 'alice task', user_id: alice.id }]);
    const counted = await asBob.from('todos').select('*', { count: 'exact', head: true });
    expect(counted.count).toBe(2);

    // Bob cannot change or delete Alice's row: RLS hides it, so nothing matches.
    const hijack = await asBob.from('todos').update({ title: 'mine now' }).eq('id', inserted.data!.id).select();
    expect(hijack.error).toBeNull();
    expect(hijack.data).toEqual([]);
    const gone = await asBob.from('todos').delete().eq('id', inserted.data!.id).select();
    expect(gone.data).toEqual([]);

    const renamed = await asAlice.from('todos').update({ done: true }).eq('id', inserted.data!.id).select('done').single();
    expect(renamed.data).toEqual({ done: true });
    const deleted = await asAlice.from('todos').delete().eq('id', inserted.data!.id).select('id');
    expect(deleted.data).toEqual([{ id: inserted.data!.id }]);
    expect((await asAlice.from('todos').select('id')).data).toEqual([]);
    // Bob's rows are untouched, seen through the root path too.
    const root = await stack.fetch('/todos?select=title&order=title', { token: bob.token });
    expect(await root.json()).toEqual([{ title: 'bob 1' }, { title: 'bob 2' }]);
  });

  test('anon key alone: public rows only; an insert needing a user is refused', async () => {
    const author = await plinthAccount();
    const posted = await stack.fetch('/posts', { method: 'POST', token: author.token, json: [{ title: 'public', published: true }, { title: 'draft', published: false }] });
    expect(posted.status).toBe(201);
    const anon = client(stack.anonKey);
    const seen = await anon.from('posts').select('title').eq('author_id', author.id);
    expect(seen.data).toEqual([{ title: 'public' }]);
    const refused = await anon.from('todos').insert({ title: 'x' });
    expect(refused.error).not.toBeNull();
    expect(refused.status).toBe(403);
    expect(refused.error!.code).toBe('42501');
  });

  test('rpc() runs as the caller: the claims and RLS apply inside the function', async () => {
    const carol = await plinthAccount();
    const asCarol = client(stack.anonKey, carol.token);
    await asCarol.from('todos').insert([{ title: 'a', priority: 1 }, { title: 'b', priority: 5 }]);
    const who = await asCarol.rpc('whoami');
    expect(who.error).toBeNull();
    expect(who.data).toEqual({ uid: carol.id, role: 'authenticated', aud: 'authenticated', email: carol.email, app_role: 'editor', provider: 'email' });
    const count = await asCarol.rpc('count_my_todos', { min_priority: 2 });
    expect(count.data).toBe(1);
    const anonWho = await client(stack.anonKey).rpc('whoami');
    expect(anonWho.data).toMatchObject({ uid: null, role: 'anon' });
    // The service key bypasses RLS: every user's rows.
    const all = await client(stack.serviceKey).from('todos').select('title').eq('user_id', carol.id).order('title');
    expect(all.data).toEqual([{ title: 'a' }, { title: 'b' }]);
  });

  test('the apikey header alone carries the key; a bad key is refused before PostgREST', async () => {
    const r = await fetch(`${stack.url}/rest/v1/posts?select=id`, { headers: { apikey: stack.anonKey } });
    expect(r.status).toBe(200);
    const bad = await fetch(`${stack.url}/rest/v1/posts`, { headers: { apikey: 'not-a-key' } });
    expect(bad.status).toBe(401);
    const none = await fetch(`${stack.url}/rest/v1/posts`);
    expect(none.status).toBe(401);
    expect((await none.json()).message).toMatch(/No API key/);
  });

  test('/rest/v1/ serves the OpenAPI document, with its paths under /rest/v1', async () => {
    for (const path of ['/rest/v1/', '/rest/v1']) {
      const r = await fetch(`${stack.url}${path}`, { headers: { apikey: stack.anonKey } });
      expect(r.status).toBe(200);
      const doc = await r.json();
      expect(doc.swagger).toBe('2.0');
      expect(doc.basePath).toBe('/rest/v1/');
      expect(Object.keys(doc.paths)).toContain('/posts');
    }
    const root = await (await fetch(`${stack.url}/`, { headers: { apikey: stack.anonKey } })).json();
    expect(root.basePath).toBe('/');
  });

  test('the sidecar routes of the table API answer under /rest/v1; its other routes do not', async () => {
    const dave = await plinthAccount();
    const stored = await fetch(`${stack.url}/rest/v1/rpc/store_file`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dave.token}`, 'content-type': 'application/octet-stream', 'file-path': 'rest/v1.txt' },
      body: 'via rest v1',
    });
    expect(stored.status).toBe(200);
    const back = await fetch(`${stack.url}/rest/v1/rpc/retrieve_file?p_file_path=rest/v1.txt`, { headers: { authorization: `Bearer ${dave.token}` } });
    expect(await back.text()).toBe('via rest v1');
    // /auth/user is an accounts route, not part of the table API: under /rest/v1 it is PostgREST's 404.
    const notAccounts = await fetch(`${stack.url}/rest/v1/auth/user`, { headers: { authorization: `Bearer ${dave.token}` } });
    expect(notAccounts.status).toBe(404);
    expect(await notAccounts.text()).not.toContain(dave.email);
  });
});

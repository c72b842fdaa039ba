// An app written only against supabase-js, from the npm registry and unmodified, pointed at Plinth
// by its URL and anon key: accounts, tables under RLS, an RPC, storage, a function and a realtime
// subscription, first from Node and then from a page on another origin in chromium.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import type { Browser } from 'playwright-core';
import { REPO_ROOT, eventually, launchChromium, startStack, type Stack } from './harness.ts';

const SUPABASE_UMD = path.join(REPO_ROOT, 'node_modules', '@supabase', 'supabase-js', 'dist', 'umd', 'supabase.js');

// The app's one function: it answers with what it was sent and who called.
const GREET = `
export default async function handler(req: Request) {
  const claims = JSON.parse(req.headers.get("x-plinth-claims") ?? "{}");
  const body = await req.json();
  return { greeting: "hello " + body.name, sub: claims.sub ?? null };
}
`;

let stack: Stack;
let functionsDir: string;

beforeAll(async () => {
  functionsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-app-functions-'));
  fs.writeFileSync(path.join(functionsDir, 'greet.ts'), GREET);
  stack = await startStack({ env: { PLINTH_FUNCTIONS_DIR: functionsDir } });
}, 120_000);

afterAll(async () => {
  await stack?.destroy();
  fs.rmSync(functionsDir, { recursive: true, force: true });
});

function client(): SupabaseClient {
  return createClient(stack.url, stack.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket as never },
  });
}

async function signedUp(): Promise<{ supabase: SupabaseClient; id: string; email: string; password: string }> {
  const supabase = client();
  const email = `app-${randomUUID().slice(0, 8)}@example.test`;
  const password = 'a long app password 1';
  const { data, error } = await supabase.auth.signUp({ email, password });
  expect(error).toBeNull();
  expect(data.session?.access_token).toEqual(expect.any(String));
  return { supabase, id: data.user!.id, email, password };
}

describe('an app written for supabase-js, from Node', () => {
  test('sign up, sign in, refresh and sign out', async () => {
    const { email, password } = await signedUp();
    const supabase = client();
    const signedIn = await supabase.auth.signInWithPassword({ email, password });
    expect(signedIn.error).toBeNull();
    const session = signedIn.data.session!;
    expect(session).toMatchObject({ token_type: 'bearer', expires_in: expect.any(Number), refresh_token: expect.any(String) });
    expect(session.user).toMatchObject({ email, aud: 'authenticated', role: 'authenticated' });

    const wrong = await client().auth.signInWithPassword({ email, password: 'not the password' });
    expect(wrong.error?.status).toBe(400);
    expect(wrong.error?.code).toBe('invalid_credentials');

    const refreshed = await supabase.auth.refreshSession();
    expect(refreshed.error).toBeNull();
    expect(refreshed.data.session!.refresh_token).not.toBe(session.refresh_token);
    const me = await supabase.auth.getUser();
    expect(me.data.user?.email).toBe(email);

    expect((await supabase.auth.signOut()).error).toBeNull();
    // The refresh token of the ended session no longer works.
    const after = await client().auth.refreshSession({ refresh_token: refreshed.data.session!.refresh_token });
    expect(after.error).not.toBeNull();
  });

  test('tables, an RPC and storage, each user seeing only what their policies allow', async () => {
    const alice = await signedUp();
    const bob = await signedUp();

    const inserted = await alice.supabase.from('todos').insert({ title: 'alice private' }).select().single();
    expect(inserted.error).toBeNull();
    expect(inserted.data).toMatchObject({ title: 'alice private', user_id: alice.id });
    expect((await bob.supabase.from('todos').insert({ title: 'bob private' })).error).toBeNull();

    const aliceRows = await alice.supabase.from('todos').select('title').order('id');
    expect(aliceRows.data).toEqual([{ title: 'alice private' }]);
    const updated = await alice.supabase.from('todos').update({ done: true }).eq('id', inserted.data.id).select('done');
    expect(updated.data).toEqual([{ done: true }]);
    // Bob's update of Alice's row matches nothing under his policies.
    const bobsTry = await bob.supabase.from('todos').update({ title: 'hijacked' }).eq('id', inserted.data.id).select();
    expect(bobsTry.data).toEqual([]);

    expect((await alice.supabase.rpc('count_my_todos')).data).toBe(1);
    expect((await bob.supabase.rpc('count_my_todos')).data).toBe(1);

    const bucket = `app-${randomUUID().slice(0, 8)}`;
    expect((await alice.supabase.storage.createBucket(bucket, { public: false })).error).toBeNull();
    const bytes = Buffer.from(`notes of alice ${randomUUID()}`);
    const up = await alice.supabase.storage.from(bucket).upload('notes/today.txt', bytes, { contentType: 'text/plain' });
    expect(up.error).toBeNull();
    const down = await alice.supabase.storage.from(bucket).download('notes/today.txt');
    expect(Buffer.from(await down.data!.arrayBuffer())).toEqual(bytes);
    const listed = await alice.supabase.storage.from(bucket).list('notes');
    expect(listed.data?.map((o) => o.name)).toEqual(['today.txt']);
    const signed = await alice.supabase.storage.from(bucket).createSignedUrl('notes/today.txt', 60);
    const viaLink = await fetch(signed.data!.signedUrl);
    expect(viaLink.status).toBe(200);
    expect(Buffer.from(await viaLink.arrayBuffer())).toEqual(bytes);
    const bobDown = await bob.supabase.storage.from(bucket).download('notes/today.txt');
    expect(bobDown.data).toBeNull();
    expect(bobDown.error).not.toBeNull();

    const deleted = await alice.supabase.from('todos').delete().eq('id', inserted.data.id).select('id');
    expect(deleted.data).toEqual([{ id: inserted.data.id }]);
  });

  test('functions.invoke runs the function as the signed-in user', async () => {
    const alice = await signedUp();
    const { data, error } = await alice.supabase.functions.invoke('greet', { body: { name: 'Ada' } });
    expect(error).toBeNull();
    expect(data).toEqual({ greeting: 'hello Ada', sub: alice.id });
  });

  test('a realtime subscription receives only the rows its user may see', async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    const seen: string[] = [];
    const channel = alice.supabase
      .channel('todos-of-alice')
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'todos' }, (change) => {
        seen.push((change.new as { title: string }).title);
      });
    await new Promise<void>((resolve, reject) =>
      channel.subscribe((status, err) => (status === 'SUBSCRIBED' ? resolve() : status !== 'CLOSED' && err ? reject(err) : undefined)),
    );
    await bob.supabase.from('todos').insert({ title: 'bob only' });
    await alice.supabase.from('todos').insert({ title: 'alice sees this' });
    await eventually('alice receives her insert', async () => (seen.includes('alice sees this') ? true : undefined));
    expect(seen).toEqual(['alice sees this']);
    await alice.supabase.removeChannel(channel);
  });
});

describe('the same app in chromium, on another origin', () => {
  let browser: Browser;
  let site: http.Server;
  let siteUrl: string;

  beforeAll(async () => {
    const library = fs.readFileSync(SUPABASE_UMD);
    site = http.createServer((req, res) => {
      if (req.url === '/supabase.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(library);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>an app</title><script src="/supabase.js"></script>');
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => site?.close(resolve));
  });

  test('signs up, writes and reads its rows, invokes a function and hears its own insert', async () => {
    const page = await (await browser.newContext()).newPage();
    await page.goto(siteUrl);
    const result = await page.evaluate(
      async ({ url, key, email }) => {
        const { createClient } = (window as unknown as { supabase: typeof import('@supabase/supabase-js') }).supabase;
        const supabase = createClient(url, key);
        const signUp = await supabase.auth.signUp({ email, password: 'a long browser password 1' });
        const heard: string[] = [];
        const channel = supabase
          .channel('mine')
          .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'todos' }, (c) => heard.push((c.new as { title: string }).title));
        await new Promise<void>((resolve) => channel.subscribe((status) => status === 'SUBSCRIBED' && resolve()));
        const insert = await supabase.from('todos').insert({ title: 'from the browser' }).select('title').single();
        const rows = await supabase.from('todos').select('title');
        const fn = await supabase.functions.invoke('greet', { body: { name: 'browser' } });
        // The change arrives on its own schedule: up to 30 s on a loaded machine.
        for (let i = 0; i < 300 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
        const signOut = await supabase.auth.signOut();
        return {
          origin: location.origin,
          signUpError: signUp.error?.message ?? null,
          insert: insert.data,
          rows: rows.data,
          fn: fn.data,
          heard,
          signOutError: signOut.error?.message ?? null,
        };
      },
      { url: stack.url, key: stack.anonKey, email: `browser-${randomUUID().slice(0, 8)}@example.test` },
    );
    expect(result.origin).not.toBe(new URL(stack.url).origin);
    expect(result).toMatchObject({
      signUpError: null,
      insert: { title: 'from the browser' },
      rows: [{ title: 'from the browser' }],
      fn: { greeting: 'hello browser', sub: expect.any(String) },
      heard: ['from the browser'],
      signOutError: null,
    });
  }, 120_000);
});

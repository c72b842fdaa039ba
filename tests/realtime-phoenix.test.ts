// Supabase's realtime clients, unmodified, against /realtime/v1/websocket: realtime-js's
// RealtimeClient (Phoenix protocol vsn 2.0.0) and supabase-js's channel(). Changes come from the
// same RLS-exact feed as /realtime: each is judged by PostgreSQL as the subscriber.
import { randomUUID } from 'node:crypto';
import { RealtimeClient, type RealtimeChannel, type RealtimePostgresChangesPayload } from '@supabase/realtime-js';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { addSigningKey, retireSigningKey } from '../sidecar/core/keys.ts';
import { downAndUpAgain, eventually, startStack, type Stack, type TestUser } from './harness.ts';

let stack: Stack;
const sockets: RealtimeClient[] = [];
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  for (const s of sockets) await s.disconnect().catch(() => {});
  await stack?.destroy();
});

type Row = Record<string, unknown>;
type Payload = RealtimePostgresChangesPayload<Row>;

function connect(token?: string, on: Stack = stack): RealtimeClient {
  const client = new RealtimeClient(`${on.url.replace(/^http/, 'ws')}/realtime/v1`, {
    params: { apikey: stack.anonKey },
    transport: WebSocket as never,
  });
  if (token) void client.setAuth(token);
  sockets.push(client);
  return client;
}

interface Joined {
  status: string;
  error?: Error;
}

/** Subscribes and resolves with the first status that settles the join (SUBSCRIBED or an error). */
function subscribe(channel: RealtimeChannel): Promise<Joined> {
  return new Promise((resolve) => {
    channel.subscribe((status, error) => {
      if (status !== 'CLOSED') resolve({ status, error });
    });
  });
}

/** A channel on `table` whose postgres_changes payloads are collected. */
async function watch(client: RealtimeClient, opts: { table?: string; filter?: string; event?: '*' | 'INSERT' | 'UPDATE' | 'DELETE'; name?: string } = {}) {
  const events: Payload[] = [];
  const system: Row[] = [];
  const channel = client
    .channel(opts.name ?? `watch-${randomUUID().slice(0, 8)}`)
    .on('postgres_changes' as never, { event: opts.event ?? '*', schema: 'public', table: opts.table ?? 'todos', ...(opts.filter ? { filter: opts.filter } : {}) } as never, (p: Payload) => events.push(p))
    .on('system' as never, {} as never, (p: Row) => system.push(p));
  const joined = await subscribe(channel);
  return { channel, events, system, joined };
}

async function until<T>(what: string, probe: () => T | undefined, ms = 20_000): Promise<T> {
  return eventually(what, async () => probe(), ms);
}

async function insertTodo(user: TestUser, title: string): Promise<number> {
  const [row] = await stack.sql<{ id: number }[]>`insert into public.todos (user_id, title) values (${user.id}, ${title}) returning id`;
  return Number(row.id);
}

test('subscribe reports SUBSCRIBED; INSERT, UPDATE and DELETE arrive in Supabase\'s payload shape', async () => {
  const alice = await stack.createUser();
  const { events, system, joined } = await watch(connect(alice.token));
  expect(joined).toEqual({ status: 'SUBSCRIBED', error: undefined });
  await until('the subscribed system message', () => system.find((m) => m.extension === 'postgres_changes'));
  expect(system[0]).toMatchObject({ extension: 'postgres_changes', status: 'ok', message: 'Subscribed to PostgreSQL' });

  // Each step waits for its event: an INSERT or UPDATE carries the row as it reads when delivered.
  const id = await insertTodo(alice, 'first');
  await until('the insert', () => events[0]);
  await stack.sql`update public.todos set done = true where id = ${id}`;
  await until('the update', () => events[1]);
  await stack.sql`delete from public.todos where id = ${id}`;
  await until('the delete', () => events[2]);

  const [ins, upd, del] = events;
  expect(ins).toMatchObject({ schema: 'public', table: 'todos', eventType: 'INSERT', errors: null, old: {} });
  expect(ins.new).toMatchObject({ id, user_id: alice.id, title: 'first', done: false, priority: 0 });
  expect(new Date(ins.commit_timestamp).toISOString()).toBe(ins.commit_timestamp);
  expect(Math.abs(Date.parse(ins.commit_timestamp) - Date.now())).toBeLessThan(60_000);
  expect(upd).toMatchObject({ eventType: 'UPDATE', new: { id, done: true, title: 'first' }, old: { id } });
  expect(del).toMatchObject({ eventType: 'DELETE', new: {}, old: { id } });
  // Only the key of a deleted row is sent, as Supabase does for tables with RLS.
  expect(Object.keys(del.old)).toEqual(['id']);
  expect(events).toHaveLength(3);
});

test('each user receives only the rows RLS lets them read; anon cannot subscribe to a table it may not read', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const a = await watch(connect(alice.token));
  const b = await watch(connect(bob.token));
  expect([a.joined.status, b.joined.status]).toEqual(['SUBSCRIBED', 'SUBSCRIBED']);

  await insertTodo(alice, 'alice only');
  await insertTodo(bob, 'bob only');
  await until('alice\'s row to alice', () => a.events.find((e) => (e.new as Row).title === 'alice only'));
  await until('bob\'s row to bob', () => b.events.find((e) => (e.new as Row).title === 'bob only'));
  expect(a.events.map((e) => (e.new as Row).title)).toEqual(['alice only']);
  expect(b.events.map((e) => (e.new as Row).title)).toEqual(['bob only']);

  // todos grants nothing to anon: the join itself is refused, naming the reason.
  const anon = await watch(connect());
  expect(anon.joined.status).toBe('CHANNEL_ERROR');
  expect(anon.joined.error?.message).toMatch(/permission denied for table todos/);
});

test('anon receives published posts only, never drafts (a policy on the row decides)', async () => {
  const author = await stack.createUser();
  const anon = await watch(connect(), { table: 'posts' });
  expect(anon.joined.status).toBe('SUBSCRIBED');
  await stack.sql`insert into public.posts (author_id, title, published) values (${author.id}, 'draft', false), (${author.id}, 'public', true)`;
  await until('the published post', () => anon.events.find((e) => (e.new as Row).title === 'public'));
  await stack.sql`insert into public.posts (author_id, title, published) values (${author.id}, 'marker', true)`;
  await until('the marker', () => anon.events.find((e) => (e.new as Row).title === 'marker'));
  expect(anon.events.map((e) => (e.new as Row).title)).toEqual(['public', 'marker']);
});

test('a filter (user_id=eq.…) and an event ("INSERT" only) narrow what is delivered', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const service = connect(stack.serviceKey);
  const onlyAlice = await watch(service, { filter: `user_id=eq.${alice.id}` });
  const inserts = await watch(service, { event: 'INSERT', filter: `user_id=in.(${alice.id},${bob.id})` });
  expect([onlyAlice.joined.status, inserts.joined.status]).toEqual(['SUBSCRIBED', 'SUBSCRIBED']);

  const bobs = await insertTodo(bob, 'bob');
  const alices = await insertTodo(alice, 'alice');
  await until('two inserts', () => (inserts.events.length >= 2 ? true : undefined));
  await stack.sql`update public.todos set done = true where id in (${bobs}, ${alices})`;
  await until('alice\'s update', () => onlyAlice.events.find((e) => e.eventType === 'UPDATE'));
  await stack.sql`delete from public.todos where id = ${alices}`;
  await until('alice\'s delete', () => onlyAlice.events.find((e) => e.eventType === 'DELETE'));
  const marker = await insertTodo(bob, 'marker');
  await until('the marker insert', () => inserts.events.find((e) => (e.new as Row).id === marker));

  expect(onlyAlice.events.map((e) => e.eventType)).toEqual(['INSERT', 'UPDATE', 'DELETE']);
  expect(onlyAlice.events.every((e) => (e.eventType === 'DELETE' ? (e.old as Row).id === alices : (e.new as Row).user_id === alice.id))).toBe(true);
  expect(inserts.events.map((e) => [e.eventType, (e.new as Row).title])).toEqual([['INSERT', 'bob'], ['INSERT', 'alice'], ['INSERT', 'marker']]);
});

test('filters Supabase has and this server lacks, unknown operators and unpublished tables are refused with their reason', async () => {
  const client = connect(stack.serviceKey);
  const like = await watch(client, { filter: 'title=like.a%' });
  expect(like.joined.status).toBe('CHANNEL_ERROR');
  expect(like.joined.error?.message).toMatch(/the `like` operator is not supported by this server/);
  // The same text as Supabase's server for an operator it does not know, also as a system message.
  const unknown = await watch(client, { filter: 'title=foo.hey' });
  expect(unknown.joined.error?.message).toContain('Error parsing `filter` params: ["foo", "hey"]');
  expect(unknown.system).toContainEqual(expect.objectContaining({ extension: 'postgres_changes', status: 'error', message: 'Error parsing `filter` params: ["foo", "hey"]' }));
  const column = await watch(client, { filter: 'nope=eq.1' });
  expect(column.joined.error?.message).toMatch(/column "nope" of table "todos" does not exist/);

  const unpublished = await watch(client, { table: 'projects' });
  expect(unpublished.joined.status).toBe('CHANNEL_ERROR');
  expect(unpublished.joined.error?.message).toMatch(/table "public\.projects" is not published for realtime.*realtime\.publish/);
});

test('setAuth with another user\'s token changes what is delivered; a garbage token ends the channel with an error', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const client = connect(alice.token);
  const w = await watch(client);
  expect(w.joined.status).toBe('SUBSCRIBED');
  await insertTodo(alice, 'for alice');
  await until('alice\'s row', () => w.events.find((e) => (e.new as Row).title === 'for alice'));

  await client.setAuth(bob.token);
  // The token update is a message on the channel; a heartbeat's reply proves it was handled.
  await heartbeat(client);
  await insertTodo(alice, 'alice after switch');
  await insertTodo(bob, 'for bob');
  await until('bob\'s row', () => w.events.find((e) => (e.new as Row).title === 'for bob'));
  expect(w.events.map((e) => (e.new as Row).title)).toEqual(['for alice', 'for bob']);

  await client.setAuth('not-a-jwt');
  await until('the system error', () => w.system.find((m) => m.status === 'error'));
  expect(w.system.find((m) => m.status === 'error')).toMatchObject({ extension: 'system', status: 'error', message: expect.stringMatching(/JWT/) });
  await until('the channel closed', () => (w.channel.state === 'closed' ? true : undefined));
  await insertTodo(bob, 'after garbage');
  const marker = await watch(connect(bob.token));
  await insertTodo(bob, 'marker');
  await until('the marker elsewhere', () => marker.events.find((e) => (e.new as Row).title === 'marker'));
  expect(w.events.map((e) => (e.new as Row).title)).not.toContain('after garbage');
});

test('an expired token cannot join; a token that expires while joined ends its channel with "Token has expired"', async () => {
  const user = await stack.createUser();
  const stale = await watch(connect(await stack.mint({ sub: user.id, role: 'authenticated' }, -10)));
  expect(stale.joined.status).toBe('CHANNEL_ERROR');
  expect(stale.joined.error?.message).toMatch(/InvalidJWTToken: .*expired/i);

  // Whole seconds, so 5 to 6 s: the join must be done before the token runs out, even on a loaded machine.
  const short = await watch(connect(await stack.mint({ sub: user.id, role: 'authenticated' }, 6)));
  expect(short.joined.status).toBe('SUBSCRIBED');
  await until('the expiry', () => short.system.find((m) => m.status === 'error'));
  expect(short.system.find((m) => m.status === 'error')).toMatchObject({ extension: 'system', message: 'Token has expired' });
  await until('the channel closed', () => (short.channel.state === 'closed' ? true : undefined));
});

async function heartbeat(client: RealtimeClient): Promise<string> {
  return new Promise((resolve) => {
    client.onHeartbeat((status) => {
      if (status === 'ok' || status === 'error' || status === 'timeout') resolve(status);
    });
    void client.sendHeartbeat();
  });
}

test('heartbeats on topic "phoenix" are answered', async () => {
  const client = connect(stack.anonKey);
  client.connect();
  await until('the socket open', () => (client.isConnected() ? true : undefined));
  expect(await heartbeat(client)).toBe('ok');
  expect(await heartbeat(client)).toBe('ok');
});

test('broadcast reaches the other clients of the topic (and the sender only with self: true)', async () => {
  const topic = `room-${randomUUID().slice(0, 8)}`;
  const got: Record<string, Row[]> = { a: [], b: [], c: [] };
  const a = connect(stack.anonKey).channel(topic, { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: 'cursor' }, (p) => got.a.push(p));
  const b = connect(stack.anonKey).channel(topic).on('broadcast', { event: 'cursor' }, (p) => got.b.push(p));
  const c = connect(stack.anonKey).channel(`other-${topic}`).on('broadcast', { event: 'cursor' }, (p) => got.c.push(p));
  expect((await Promise.all([subscribe(a), subscribe(b), subscribe(c)])).map((j) => j.status)).toEqual(['SUBSCRIBED', 'SUBSCRIBED', 'SUBSCRIBED']);

  expect(await a.send({ type: 'broadcast', event: 'cursor', payload: { x: 1, y: 2 } })).toBe('ok');
  await b.send({ type: 'broadcast', event: 'cursor', payload: { x: 3 } });
  await b.send({ type: 'broadcast', event: 'other', payload: { ignored: true } });
  await until('b got a\'s cursor', () => got.b.find((p) => (p.payload as Row).x === 1));
  await until('a got b\'s cursor and its own', () => (got.a.length >= 2 ? true : undefined));
  expect(got.b).toEqual([{ type: 'broadcast', event: 'cursor', payload: { x: 1, y: 2 } }]);
  expect(got.a.map((p) => p.payload)).toEqual([{ x: 1, y: 2 }, { x: 3 }]);
  expect(got.c).toEqual([]);
});

test('presence: track, update and untrack are seen by the other channels of the topic, on every sidecar; a closed socket leaves', async () => {
  const second = await startStack({ env: { DATABASE_URL: stack.databaseUrl } });
  try {
    const topic = `lobby-${randomUUID().slice(0, 8)}`;
    const seen: Row[] = [];
    const watcher = connect(second.anonKey, second).channel(topic).on('presence', { event: '*' }, (p) => seen.push(p as unknown as Row));
    const alice = connect(stack.anonKey);
    const ann = alice.channel(topic, { config: { presence: { key: 'alice' } } }).on('presence', { event: 'sync' }, () => {});
    expect((await subscribe(ann)).status).toBe('SUBSCRIBED');
    expect(await ann.track({ status: 'online' })).toBe('ok');
    expect((await subscribe(watcher)).status).toBe('SUBSCRIBED');
    // The watcher joined after the track: it learns of it from presence_state.
    await until('alice in the watcher\'s state', () => (watcher.presenceState().alice ? true : undefined));
    expect(watcher.presenceState().alice).toEqual([expect.objectContaining({ status: 'online', presence_ref: expect.any(String) })]);

    expect(await ann.track({ status: 'away' })).toBe('ok');
    await until('the update', () => (watcher.presenceState().alice?.[0] && (watcher.presenceState().alice[0] as Row).status === 'away' ? true : undefined));
    expect(watcher.presenceState().alice).toHaveLength(1);

    const bob = connect(second.anonKey, second).channel(topic, { config: { presence: { key: 'bob' } } }).on('presence', { event: 'sync' }, () => {});
    expect((await subscribe(bob)).status).toBe('SUBSCRIBED');
    expect(await bob.track({ status: 'here' })).toBe('ok');
    await until('bob in alice\'s state', () => (ann.presenceState().bob ? true : undefined));
    expect(await bob.untrack()).toBe('ok');
    await until('bob gone from alice\'s state', () => (ann.presenceState().bob ? undefined : true));

    await alice.disconnect();
    await until('alice left', () => (watcher.presenceState().alice ? undefined : true));
    expect(seen.some((p) => (p as Row).event === 'leave' && (p as Row).key === 'alice')).toBe(true);
    expect(Object.keys(watcher.presenceState())).toEqual([]);
  } finally {
    await second.destroy();
  }
});

test('broadcast crosses sidecars, JSON and bytes alike; one too large to announce is refused', async () => {
  const second = await startStack({ env: { DATABASE_URL: stack.databaseUrl } });
  try {
    const topic = `cross-${randomUUID().slice(0, 8)}`;
    const here: Row[] = [];
    const there: Row[] = [];
    const a = connect(stack.anonKey).channel(topic, { config: { broadcast: { ack: true } } }).on('broadcast', { event: '*' }, (p) => here.push(p));
    const b = connect(second.anonKey, second).channel(topic).on('broadcast', { event: '*' }, (p) => there.push(p));
    expect((await Promise.all([subscribe(a), subscribe(b)])).map((j) => j.status)).toEqual(['SUBSCRIBED', 'SUBSCRIBED']);

    expect(await a.send({ type: 'broadcast', event: 'hello', payload: { from: 'first' } })).toBe('ok');
    expect(await a.send({ type: 'broadcast', event: 'bytes', payload: new Uint8Array([1, 2, 3]).buffer })).toBe('ok');
    await b.send({ type: 'broadcast', event: 'hello', payload: { from: 'second' } });
    await until('both broadcasts on the second sidecar', () => (there.length >= 2 ? true : undefined));
    await until('the reply on the first', () => here.find((p) => (p.payload as Row).from === 'second'));
    expect(there[0]).toEqual({ type: 'broadcast', event: 'hello', payload: { from: 'first' } });
    expect(there[1].event).toBe('bytes');
    expect([...new Uint8Array(there[1].payload as ArrayBuffer)]).toEqual([1, 2, 3]);

    expect(await a.send({ type: 'broadcast', event: 'big', payload: { text: 'x'.repeat(10_000) } })).toBe('error');
    expect(here.map((p) => p.event)).toEqual(['hello']);
  } finally {
    await second.destroy();
  }
});

test('vsn 1.0.0 (JSON objects) works as well, for older clients', async () => {
  const ws = new WebSocket(`${stack.url.replace(/^http/, 'ws')}/realtime/v1/websocket?apikey=${stack.serviceKey}&vsn=1.0.0`);
  const frames: Row[] = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
  await new Promise((r) => ws.once('open', r));
  const send = (topic: string, event: string, payload: unknown, ref: string) => ws.send(JSON.stringify({ topic, event, payload, ref, join_ref: ref === 'h' ? null : '1' }));
  send('phoenix', 'heartbeat', {}, 'h');
  send('realtime:v1', 'phx_join', { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'todos' }] } }, '1');
  const reply = await until('the join reply', () => frames.find((f) => f.event === 'phx_reply' && f.ref === '1'));
  expect(frames.find((f) => f.ref === 'h')).toEqual({ topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: 'h', join_ref: null });
  expect(reply).toMatchObject({ topic: 'realtime:v1', join_ref: '1', payload: { status: 'ok', response: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'todos', id: expect.any(Number) }] } } });
  const owner = await stack.createUser();
  await insertTodo(owner, 'over vsn 1');
  const change = await until('the change', () => frames.find((f) => f.event === 'postgres_changes'));
  expect(change).toMatchObject({ topic: 'realtime:v1', ref: null, payload: { ids: [(reply.payload as { response: { postgres_changes: { id: number }[] } }).response.postgres_changes[0].id], data: { type: 'INSERT', table: 'todos', record: { title: 'over vsn 1' } } } });
  expect((change.payload as { data: { columns: unknown[] } }).data.columns).toContainEqual({ name: 'id', type: 'int8' });
  ws.close();
});

test('supabase-js createClient(url, anonKey).channel() with a signed-in user\'s token', async () => {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: `phx-${randomUUID().slice(0, 8)}@example.test`, password: 'phoenix password 1' } });
  expect(r.status).toBe(201);
  const session = (await r.json()) as { token: string; user: { id: string } };
  const supabase = createClient(stack.url, stack.anonKey, { realtime: { transport: WebSocket as never }, auth: { persistSession: false, autoRefreshToken: false } });
  await supabase.realtime.setAuth(session.token);
  sockets.push(supabase.realtime);
  const events: Payload[] = [];
  const channel = supabase
    .channel('todos-supabase-js')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'todos' }, (p) => events.push(p as Payload));
  expect((await subscribe(channel)).status).toBe('SUBSCRIBED');

  await stack.fetch('/todos', { method: 'POST', token: session.token, json: { title: 'through supabase-js' } });
  await until('the insert', () => events.find((e) => (e.new as Row).title === 'through supabase-js'));
  expect(events[0]).toMatchObject({ eventType: 'INSERT', table: 'todos', new: { user_id: session.user.id } });
});

test('deliveries are measured: plinth_realtime_delivery_lag_seconds by protocol on /metrics', async () => {
  const r = await stack.fetch('/metrics', { token: stack.serviceKey });
  expect(r.status).toBe(200);
  const text = await r.text();
  const count = /^plinth_realtime_delivery_lag_seconds_count\{protocol="phoenix"\} (\d+)/m.exec(text);
  expect(count).not.toBeNull();
  expect(Number(count![1])).toBeGreaterThan(0);
  expect(text).toMatch(/^plinth_realtime_delivery_lag_seconds_bucket\{le="\+Inf",protocol="phoenix"\} \d+/m);
});

test('a logout closes the Phoenix sockets of that session with 4001, like native ones', async () => {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: `phx-${randomUUID().slice(0, 8)}@example.test`, password: 'phoenix password 2' } });
  const session = (await r.json()) as { token: string };
  const client = connect(session.token);
  const closes: number[] = [];
  (client as unknown as { socketAdapter: { onClose(cb: (e: { code: number }) => void): void } }).socketAdapter.onClose((e) => closes.push(e.code));
  const w = await watch(client);
  expect(w.joined.status).toBe('SUBSCRIBED');
  expect((await stack.fetch('/auth/logout', { method: 'POST', token: session.token })).status).toBe(204);
  await until('the socket closed', () => (closes.length > 0 ? true : undefined));
  expect(closes[0]).toBe(4001);
  expect(w.system).toContainEqual(expect.objectContaining({ extension: 'system', status: 'error', message: expect.stringMatching(/session of this token has ended/) }));
});

test('the presence migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  await downAndUpAgain(
    stack.sql,
    '20250101000500_realtime_presence.sql',
    async (tx) => {
      const [{ gone }] = await tx`select to_regclass('realtime.presences') is null and to_regclass('realtime.sidecars') is null as gone`;
      expect(gone).toBe(true);
    },
    async (tx) => {
      const [{ back }] = await tx`select to_regclass('realtime.presences') is not null as back`;
      expect(back).toBe(true);
    },
  );
});

// Last: it retires the key every earlier test's tokens were signed with.
test('retiring the signing key closes Phoenix sockets whose token it signed with 4001', async () => {
  const user = await stack.createUser();
  const client = connect(user.token);
  const closes: number[] = [];
  (client as unknown as { socketAdapter: { onClose(cb: (e: { code: number }) => void): void } }).socketAdapter.onClose((e) => closes.push(e.code));
  expect((await watch(client)).joined.status).toBe('SUBSCRIBED');
  const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid as string;
  await addSigningKey(stack.sql, 'ES256');
  await eventually('the new key served', async () => ((await (await stack.fetch('/auth/jwks')).json()).keys.length === 2 ? true : undefined));
  await retireSigningKey(stack.sql, kidOf(user.token));
  await until('the socket closed', () => (closes.length > 0 ? true : undefined));
  expect(closes[0]).toBe(4001);
});

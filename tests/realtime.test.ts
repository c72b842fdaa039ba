// Realtime over WebSocket: what each subscriber receives is what RLS lets it SELECT.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { downAndUpAgain, startStack, type Stack } from './harness.ts';
import { RealtimeClient } from './realtime-client.ts';

let stack: Stack;
const clients: RealtimeClient[] = [];
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await stack?.destroy();
});

async function open(token: string): Promise<RealtimeClient> {
  const c = await RealtimeClient.open(stack.url, token);
  clients.push(c);
  return c;
}

async function insertTodo(token: string, title: string, extra: Record<string, unknown> = {}): Promise<{ id: number; user_id: string }> {
  const r = await stack.fetch('/todos', { method: 'POST', token, json: { title, ...extra }, headers: { prefer: 'return=representation' } });
  expect(r.status).toBe(201);
  return (await r.json())[0];
}

async function insertPost(token: string, title: string, published: boolean): Promise<{ id: number }> {
  const r = await stack.fetch('/posts', { method: 'POST', token, json: { title, published }, headers: { prefer: 'return=representation' } });
  expect(r.status).toBe(201);
  return (await r.json())[0];
}

test('two users subscribed to the same RLS table each receive only their own rows', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const a = await open(alice.token);
  const b = await open(bob.token);
  expect((await a.subscribe({ id: 'todos', table: 'todos' })).type).toBe('subscribed');
  expect((await b.subscribe({ id: 'todos', table: 'todos' })).type).toBe('subscribed');

  const a1 = await insertTodo(alice.token, 'alice 1');
  const b1 = await insertTodo(bob.token, 'bob 1');
  const a2 = await insertTodo(alice.token, 'alice 2');
  // Delivery is in order, so once a subscriber has the last change it would have had the earlier ones.
  await a.waitFor((m) => m.type === 'change' && m.new?.id === a2.id);
  await b.waitFor((m) => m.type === 'change' && m.new?.id === b1.id);
  const b2 = await insertTodo(bob.token, 'bob 2');
  await b.waitFor((m) => m.type === 'change' && m.new?.id === b2.id);

  expect(a.changes().map((m) => [m.event, m.table, m.new?.title, m.new?.user_id])).toEqual([
    ['INSERT', 'todos', 'alice 1', alice.id],
    ['INSERT', 'todos', 'alice 2', alice.id],
  ]);
  expect(b.changes().map((m) => [m.event, m.new?.title])).toEqual([
    ['INSERT', 'bob 1'],
    ['INSERT', 'bob 2'],
  ]);
  const positions = a.changes().map((m) => m.position!);
  expect(positions[0]).toBeLessThan(positions[1]);
  expect(a1.id).toBe(a.changes()[0].new?.id);
});

test('a filter and an event set narrow a subscription; the filter is applied in SQL', async () => {
  const alice = await stack.createUser();
  const c = await open(alice.token);
  await c.subscribe({ id: 'urgent', table: 'todos', filter: 'priority=gte.5', events: ['INSERT'] });
  await c.subscribe({ id: 'some', table: 'todos', filter: 'title=in.(x,"y,z")' });
  await insertTodo(alice.token, 'low', { priority: 1 });
  const high = await insertTodo(alice.token, 'high', { priority: 9 });
  await insertTodo(alice.token, 'y,z');
  // `new` is the row as the subscriber can SELECT it at delivery: let the inserts arrive first.
  await c.waitFor((m) => m.id === 'some' && m.event === 'INSERT');
  await c.waitFor((m) => m.id === 'urgent' && m.event === 'INSERT');
  await stack.fetch(`/todos?id=eq.${high.id}`, { method: 'PATCH', token: alice.token, json: { title: 'x' } });
  await c.waitFor((m) => m.id === 'some' && m.event === 'UPDATE');
  expect(c.changes('urgent').map((m) => [m.event, m.new?.title])).toEqual([['INSERT', 'high']]);
  expect(c.changes('some').map((m) => [m.event, m.new?.title, m.old])).toEqual([
    ['INSERT', 'y,z', undefined],
    ['UPDATE', 'x', { id: high.id }],
  ]);
});

test('anon receives only published posts; an UPDATE that hides a row is not leaked, one that reveals it is delivered', async () => {
  const author = await stack.createUser();
  const anon = await open(stack.anonKey);
  const own = await open(author.token);
  await anon.subscribe({ id: 'p', table: 'posts' });
  await own.subscribe({ id: 'p', table: 'posts' });

  const draft = await insertPost(author.token, 'draft', false);
  const live = await insertPost(author.token, 'live', true);
  // Visibility is judged when a change is delivered: let the insert arrive before hiding the row.
  await anon.waitFor((m) => m.type === 'change' && m.new?.id === live.id);
  await stack.fetch(`/posts?id=eq.${live.id}`, { method: 'PATCH', token: author.token, json: { published: false, title: 'secret now' } });
  await stack.fetch(`/posts?id=eq.${draft.id}`, { method: 'PATCH', token: author.token, json: { published: true } });
  // Published and hidden again in one transaction: judged together, against the hidden row.
  await stack.sql.begin(async (tx) => {
    const [p] = await tx`insert into public.posts (author_id, title, published) values (${author.id}, 'flash', true) returning id`;
    await tx`update public.posts set published = false, title = 'flash secret' where id = ${p.id}`;
  });
  const last = await insertPost(author.token, 'last', true);
  await anon.waitFor((m) => m.type === 'change' && m.new?.id === last.id);

  expect(anon.changes().map((m) => [m.event, m.new?.id, m.new?.title, m.new?.published])).toEqual([
    ['INSERT', live.id, 'live', true],
    ['UPDATE', draft.id, 'draft', true],
    ['INSERT', last.id, 'last', true],
  ]);
  expect(JSON.stringify(anon.messages)).not.toContain('secret now');
  expect(JSON.stringify(anon.messages)).not.toContain('flash');
  // The author sees every change to their own posts.
  await own.waitFor((m) => m.type === 'change' && m.new?.id === last.id);
  expect(own.changes().map((m) => m.event)).toEqual(['INSERT', 'INSERT', 'UPDATE', 'UPDATE', 'INSERT', 'UPDATE', 'INSERT']);
});

test('DELETE sends only the primary key, and only to subscribers who could see the row', async () => {
  const author = await stack.createUser();
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const anon = await open(stack.anonKey);
  const a = await open(alice.token);
  const b = await open(bob.token);
  await anon.subscribe({ id: 'p', table: 'posts', events: ['DELETE'] });
  await a.subscribe({ id: 't', table: 'todos', events: ['DELETE'] });
  await b.subscribe({ id: 't', table: 'todos', events: ['DELETE'] });

  const visible = await insertPost(author.token, 'public', true);
  const hidden = await insertPost(author.token, 'hidden', false);
  const todo = await insertTodo(alice.token, 'private todo');
  expect((await stack.fetch(`/posts?id=eq.${hidden.id}`, { method: 'DELETE', token: author.token })).status).toBe(204);
  expect((await stack.fetch(`/posts?id=eq.${visible.id}`, { method: 'DELETE', token: author.token })).status).toBe(204);
  expect((await stack.fetch(`/todos?id=eq.${todo.id}`, { method: 'DELETE', token: alice.token })).status).toBe(204);
  const bobTodo = await insertTodo(bob.token, 'bob todo');
  await stack.fetch(`/todos?id=eq.${bobTodo.id}`, { method: 'DELETE', token: bob.token });

  await anon.waitFor((m) => m.type === 'change');
  await a.waitFor((m) => m.type === 'change');
  await b.waitFor((m) => m.type === 'change');
  const strip = (m: { event?: string; table?: string; old?: unknown; new?: unknown }) => ({ event: m.event, table: m.table, old: m.old, new: m.new });
  expect(anon.changes().map(strip)).toEqual([{ event: 'DELETE', table: 'posts', old: { id: visible.id }, new: undefined }]);
  expect(a.changes().map(strip)).toEqual([{ event: 'DELETE', table: 'todos', old: { id: todo.id }, new: undefined }]);
  expect(b.changes().map(strip)).toEqual([{ event: 'DELETE', table: 'todos', old: { id: bobTodo.id }, new: undefined }]);
});

test('order is preserved across 1,000 quick inserts from concurrent writers', async () => {
  const alice = await stack.createUser();
  const c = await open(alice.token);
  await c.subscribe({ id: 'all', table: 'todos', events: ['INSERT'] });
  const writers = 4;
  const each = 250;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < each; i++) {
        await stack.sql`insert into public.todos (user_id, title, priority) values (${alice.id}, ${`w${w}`}, ${i})`;
      }
    }),
  );
  await c.waitUntil(() => c.changes('all').length >= writers * each, 90_000, '1,000 changes');
  const got = c.changes('all');
  expect(got).toHaveLength(writers * each);
  const positions = got.map((m) => m.position!);
  expect(positions.every((p, i) => i === 0 || p > positions[i - 1])).toBe(true);
  expect(new Set(got.map((m) => m.new!.id)).size).toBe(writers * each);
  // Each writer's own inserts arrive in the order it committed them.
  for (let w = 0; w < writers; w++) {
    const seq = got.filter((m) => m.new!.title === `w${w}`).map((m) => m.new!.priority);
    expect(seq).toEqual(Array.from({ length: each }, (_, i) => i));
  }
}, 120_000);

test('clear errors for a bad subscription, and the connection stays usable', async () => {
  const alice = await stack.createUser();
  const c = await open(alice.token);
  const anon = await open(stack.anonKey);
  expect(await c.subscribe({ id: '1', table: 'nope' })).toMatchObject({ type: 'error', code: '42P01', message: 'table "nope" is not published for realtime' });
  expect(await c.subscribe({ id: '2', table: 'projects' })).toMatchObject({ type: 'error', code: '42P01' });
  expect(await c.subscribe({ id: '3', table: 'todos', filter: 'colour=eq.red' })).toMatchObject({
    type: 'error',
    code: '42703',
    message: 'column "colour" of table "todos" does not exist',
  });
  expect(await c.subscribe({ id: '4', table: 'todos', filter: 'id=eq.abc' })).toMatchObject({ type: 'error', code: '22P02' });
  expect(await c.subscribe({ id: '5', table: 'todos', filter: 'id=like.1' })).toMatchObject({ type: 'error', code: 'PGRST100' });
  expect(await anon.subscribe({ id: '6', table: 'todos' })).toMatchObject({ type: 'error', code: '42501', message: 'permission denied for table todos' });
  c.send({ type: 'subscribe', id: '7', table: 'todos', events: ['TRUNCATE'] });
  expect(await c.waitFor((m) => m.id === '7')).toMatchObject({ type: 'error', code: 'PLINTH400' });
  c.send({ type: 'ping', ref: 42 });
  expect(await c.waitFor((m) => m.type === 'pong')).toEqual({ type: 'pong', ref: 42 });

  expect(await c.subscribe({ id: 'ok', table: 'todos' })).toMatchObject({ type: 'subscribed', table: 'todos' });
  c.send({ type: 'unsubscribe', id: 'ok' });
  await c.waitFor((m) => m.type === 'unsubscribed' && m.id === 'ok');
  await insertTodo(alice.token, 'after unsubscribe');
  c.send({ type: 'ping', ref: 'sync' });
  await c.waitFor((m) => m.type === 'pong' && m.ref === 'sync');
  expect(c.changes()).toEqual([]);
});

test('names every object inherits are not message types, fields or events: each is refused and the connection stays usable', async () => {
  const alice = await stack.createUser();
  const c = await open(alice.token);
  const errors = () => c.messages.filter((m) => m.type === 'error');
  const refused = async (text: string) => {
    const before = errors().length;
    c.ws.send(text);
    await c.waitUntil(() => errors().length > before, 10_000, 'an error');
    return errors().at(-1);
  };
  expect(await refused('{"type":"constructor"}')).toMatchObject({ code: 'PLINTH400', message: 'Invalid message: "type" must be one of auth, subscribe, unsubscribe, ping' });
  expect(await refused('{"type":"ping","constructor":1}')).toMatchObject({ code: 'PLINTH400', message: 'Invalid message: unknown field "constructor" in a ping message' });
  expect(await refused('{"type":"ping","toString":"x"}')).toMatchObject({ code: 'PLINTH400', message: 'Invalid message: unknown field "toString" in a ping message' });
  expect(await refused('{"type":"ping","__proto__":{"ref":1}}')).toMatchObject({ code: 'PLINTH400', message: 'Invalid message: unknown field "__proto__" in a ping message' });
  expect(await refused('{"type":"subscribe","id":"s","table":"todos","events":["toString"]}')).toMatchObject({
    id: 's',
    code: 'PLINTH400',
    message: 'Invalid message: "events" must be a non-empty array of "INSERT", "UPDATE", "DELETE"',
  });
  expect(c.messages.some((m) => m.type === 'subscribed')).toBe(false);
  c.send({ type: 'ping', ref: 'still here' });
  expect(await c.waitFor((m) => m.type === 'pong')).toEqual({ type: 'pong', ref: 'still here' });
  expect(c.closed).toBeNull();
});

test('a socket that never authenticates is closed after 10 s with 4001', async () => {
  const silent = await RealtimeClient.connect(stack.url);
  clients.push(silent);
  // The server's 10 s timer plus a loaded machine's lag: wait well past it.
  expect(await silent.waitClosed(40_000)).toEqual({ code: 4001, reason: 'no auth message' });
  expect(silent.messages).toEqual([]);
});

test('a token in the first message works; a bad token is refused', async () => {
  const alice = await stack.createUser();
  const c = await RealtimeClient.connect(stack.url);
  clients.push(c);
  c.send({ type: 'auth', token: alice.token });
  expect(await c.waitFor((m) => m.type === 'ready')).toMatchObject({ role: 'authenticated' });
  expect((await c.subscribe({ id: 't', table: 'todos' })).type).toBe('subscribed');

  await expect(RealtimeClient.connect(stack.url, { apikey: 'not-a-token' })).rejects.toThrow(/401/);
  const d = await RealtimeClient.connect(stack.url);
  d.send({ type: 'subscribe', id: 'x', table: 'todos' });
  expect((await d.waitClosed()).code).toBe(4001);
  expect(d.messages[0]).toMatchObject({ type: 'error', code: 'PGRST301' });

  const plain = await stack.fetch('/realtime');
  expect(plain.status).toBe(426);
  expect(await plain.json()).toMatchObject({ code: 'PLINTH426' });
});

test('an expiring token closes the connection with 4001 unless the client sends a fresh one', async () => {
  const alice = await stack.createUser();
  // One token for both sockets: they lapse at the same instant, so `renewed` would close with
  // `lapsing` had its fresh token not taken over. Its lifetime (whole seconds, so 5 to 6 s) leaves
  // a loaded machine time to open both, subscribe and renew before it runs out.
  const short = await stack.mint({ sub: alice.id, email: alice.email, role: 'authenticated', app_role: 'editor' }, 6);
  const lapsing = await open(short);
  const renewed = await open(short);
  await renewed.subscribe({ id: 't', table: 'todos' });
  renewed.send({ type: 'auth', token: alice.token });
  expect(await renewed.waitFor((m) => m.type === 'auth')).toEqual({ type: 'auth', ok: true });
  // Another user's token may not take over live subscriptions.
  renewed.send({ type: 'auth', token: (await stack.createUser()).token });
  expect(await renewed.waitFor((m) => m.type === 'error')).toMatchObject({ code: 'PLINTH400' });

  expect(await lapsing.waitClosed(30_000)).toEqual({ code: 4001, reason: 'token expired' });
  await insertTodo(alice.token, 'still delivered');
  await renewed.waitFor((m) => m.type === 'change' && m.new?.title === 'still delivered');
  expect(renewed.closed).toBeNull();
});

test('the service key bypasses RLS and receives every row', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const service = await open(stack.serviceKey);
  await service.subscribe({ id: 't', table: 'todos', filter: `user_id=in.(${alice.id},${bob.id})` });
  await insertTodo(alice.token, 'a');
  await insertTodo(bob.token, 'b');
  await service.waitUntil(() => service.changes().length === 2);
  expect(service.changes().map((m) => m.new?.title)).toEqual(['a', 'b']);
});

test('statements of 1, 500, 501 and 1,200 rows each reach a subscriber whole, in order, at consecutive positions', async () => {
  const alice = await stack.createUser();
  const a = await open(alice.token);
  await a.subscribe({ id: 't', table: 'todos', events: ['INSERT'] });
  const sizes = [1, 500, 501, 1200];
  for (const [s, n] of sizes.entries()) {
    await stack.sql`insert into public.todos (user_id, title) select ${alice.id}, ${`s${s} `} || g from generate_series(1, ${n}) g`;
  }
  const total = sizes.reduce((x, y) => x + y, 0);
  await a.waitUntil(() => a.changes().length >= total, 90_000, 'every row');
  const got = a.changes();
  expect(got.map((m) => m.new?.title)).toEqual(sizes.flatMap((n, s) => Array.from({ length: n }, (_, i) => `s${s} ${i + 1}`)));
  const positions = got.map((m) => Number(m.position));
  expect(positions).toEqual(Array.from({ length: total }, (_, i) => positions[0] + i));
}, 120_000);

test('the cheaper-capture migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
  const checks = (tx: Parameters<Parameters<typeof downAndUpAgain>[2]>[0]) =>
    tx`select count(*)::int as n from pg_catalog.pg_constraint where conrelid = 'realtime.changes'::regclass and contype = 'c'`;
  const capture = (tx: Parameters<Parameters<typeof downAndUpAgain>[2]>[0]) =>
    tx`select p.prosrc from pg_catalog.pg_proc p where p.proname = 'capture_' || 'public.todos'::regclass::oid`;
  await downAndUpAgain(
    stack.sql,
    '20250101000700_realtime_cheaper_capture.sql',
    async (tx) => {
      expect((await checks(tx))[0].n).toBe(2);
      const [{ prosrc }] = await capture(tx);
      expect(prosrc).toContain('PERFORM realtime.wake()');
    },
    async (tx) => {
      expect((await checks(tx))[0].n).toBe(0);
      const [{ prosrc }] = await capture(tx);
      expect(prosrc).not.toContain('PERFORM realtime.wake()');
      expect(prosrc).toContain('LIMIT 501');
    },
  );
});

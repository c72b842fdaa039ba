// Realtime across sidecars and restarts: two sidecars on one database both deliver; a client that
// comes back with its last position gets exactly what it missed; a stalled client is dropped.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startStack, type Stack, type TestUser } from './harness.ts';
import { RealtimeClient, type Message } from './realtime-client.ts';

let first: Stack;
let second: Stack;
const clients: RealtimeClient[] = [];
beforeAll(async () => {
  const env = { PLINTH_REALTIME_CLIENT_BUFFER: '1MiB' };
  first = await startStack({ env });
  // A second sidecar (and its own PostgREST) on the first one's database; it embeds no PostgreSQL.
  second = await startStack({ env: { ...env, DATABASE_URL: first.databaseUrl } });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await second?.destroy();
  await first?.destroy();
});

async function open(stack: Stack, token: string): Promise<RealtimeClient> {
  const c = await RealtimeClient.open(stack.url, token);
  clients.push(c);
  return c;
}

async function insertTodo(stack: Stack, user: TestUser, title: string): Promise<number> {
  const r = await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title }, headers: { prefer: 'return=representation' } });
  expect(r.status).toBe(201);
  return (await r.json())[0].id;
}

const summary = (m: Message) => [m.event, m.new?.title ?? m.old?.id, m.position];

test('two sidecars on one database both deliver, with the same positions', async () => {
  const alice = await first.createUser();
  const one = await open(first, alice.token);
  const two = await open(second, alice.token);
  await one.subscribe({ id: 't', table: 'todos' });
  await two.subscribe({ id: 't', table: 'todos' });
  await insertTodo(first, alice, 'via first');
  await insertTodo(second, alice, 'via second');
  await one.waitUntil(() => one.changes().length === 2);
  await two.waitUntil(() => two.changes().length === 2);
  expect(one.changes().map((m) => m.new?.title)).toEqual(['via first', 'via second']);
  expect(two.changes().map(summary)).toEqual(one.changes().map(summary));
});

test('reconnecting with the last position replays exactly the missed changes, in order, on any sidecar', async () => {
  const alice = await first.createUser();
  const bob = await first.createUser();
  const c = await open(first, alice.token);
  await c.subscribe({ id: 't', table: 'todos' });
  const keep = await insertTodo(first, alice, 'seen 1');
  await insertTodo(first, alice, 'seen 2');
  await c.waitUntil(() => c.changes().length === 2);
  const last = c.changes()[1].position!;
  c.close();
  await c.waitClosed();

  await insertTodo(first, alice, 'missed 1');
  await insertTodo(first, bob, 'not for alice');
  await first.fetch(`/todos?id=eq.${keep}`, { method: 'PATCH', token: alice.token, json: { title: 'missed 2 (update)' } });
  const gone = await insertTodo(second, alice, 'missed 3');
  await second.fetch(`/todos?id=eq.${gone}`, { method: 'DELETE', token: alice.token });

  const back = await open(second, alice.token);
  expect(await back.subscribe({ id: 't', table: 'todos', from: last })).toMatchObject({ type: 'subscribed', position: last });
  await insertTodo(first, alice, 'live after resume');
  await back.waitFor((m) => m.new?.title === 'live after resume');
  const got = back.changes();
  expect(got.map((m) => [m.event, m.new?.title ?? m.old?.id])).toEqual([
    ['INSERT', 'missed 1'],
    ['UPDATE', 'missed 2 (update)'],
    // The row was deleted before the replay; its INSERT has nothing left to show, its DELETE does.
    ['DELETE', gone],
    ['INSERT', 'live after resume'],
  ]);
  const positions = got.map((m) => m.position!);
  expect(positions.every((p, i) => p > (i === 0 ? last : positions[i - 1]))).toBe(true);
});

test('a resume survives a restart of the sidecar and its database', async () => {
  const alice = await first.createUser();
  const c = await open(first, alice.token);
  await c.subscribe({ id: 't', table: 'todos' });
  await insertTodo(first, alice, 'before restart');
  await c.waitUntil(() => c.changes().length === 1);
  const last = c.changes()[0].position!;
  await insertTodo(first, alice, 'missed before restart');

  await first.restart();
  // The socket of the stopped sidecar is gone (its close event may trail the restart).
  await c.waitClosed();
  await insertTodo(first, alice, 'missed after restart');
  const back = await open(first, alice.token);
  await back.subscribe({ id: 't', table: 'todos', from: last });
  await back.waitUntil(() => back.changes().length === 2);
  await insertTodo(first, alice, 'live');
  await back.waitUntil(() => back.changes().length === 3);
  expect(back.changes().map((m) => m.new?.title)).toEqual(['missed before restart', 'missed after restart', 'live']);
});

test('a position older than the retention window is refused with a clear error', async () => {
  const alice = await first.createUser();
  const c = await open(first, alice.token);
  await c.subscribe({ id: 't', table: 'todos' });
  await insertTodo(first, alice, 'old');
  await c.waitUntil(() => c.changes().length === 1);
  const old = c.changes()[0].position! - 1;
  await insertTodo(first, alice, 'newer');
  await c.waitUntil(() => c.changes().length === 2);
  // What the periodic pruning does once the retention window has passed.
  await first.sql`select realtime.prune('0 seconds')`;
  const back = await open(first, alice.token);
  expect(await back.subscribe({ id: 't', table: 'todos', from: old })).toMatchObject({ type: 'error', code: 'PLINTH410' });
  expect(await back.subscribe({ id: 'u', table: 'todos', from: 10 ** 12 })).toMatchObject({ type: 'error', code: 'PLINTH400' });
});

test('a stalled client is dropped with a reason; the others get every change', async () => {
  const alice = await first.createUser();
  const healthy = await open(first, alice.token);
  const stalled = await open(first, alice.token);
  await healthy.subscribe({ id: 't', table: 'todos' });
  await stalled.subscribe({ id: 't', table: 'todos' });
  // Stop reading: the kernel buffers fill, then the server's buffer for this client grows.
  (stalled.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

  // 12 MB in bursts of 200 kB (well under the 1 MiB limit): the healthy client keeps up with every
  // burst, while the stalled one only accumulates.
  const rows = 1200;
  const perStatement = 20;
  const big = 'x'.repeat(10_000);
  for (let i = 0; i < rows; i += perStatement) {
    await first.sql`
      insert into public.todos (user_id, title, attachment)
      select ${alice.id}, 'big ' || (${i} + g), ${big} from generate_series(0, ${perStatement - 1}) g`;
    await healthy.waitUntil(() => healthy.changes().length >= i + perStatement || healthy.closed !== null, 30_000, 'the healthy client');
  }
  expect(healthy.closed).toBeNull();
  expect(healthy.changes().map((m) => m.new?.title)).toEqual(Array.from({ length: rows }, (_, i) => `big ${i}`));

  (stalled.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  const closed = await stalled.waitClosed();
  expect(closed).toEqual({ code: 4008, reason: 'client too slow' });
  expect(stalled.changes().length).toBeLessThan(rows);
}, 180_000);

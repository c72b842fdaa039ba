// Realtime sockets end with the credential they were opened with: a logout, a reused refresh token
// or a retired signing key closes them (4001) on every sidecar, not only when the token expires.
// Two sidecars on one database; sessions come from the real account endpoints.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { addSigningKey, retireSigningKey } from '../sidecar/core/keys.ts';
import { startStack, type Stack } from './harness.ts';
import { RealtimeClient } from './realtime-client.ts';

let first: Stack;
let second: Stack;
const clients: RealtimeClient[] = [];
beforeAll(async () => {
  first = await startStack();
  second = await startStack({ env: { DATABASE_URL: first.databaseUrl } });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await second?.destroy();
  await first?.destroy();
});

const PASSWORD = 'realtime revocation password';

interface Session {
  token: string;
  refresh_token: string;
  user: { id: string; email: string };
}

async function signUp(stack: Stack): Promise<Session> {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email: `rt-${randomUUID().slice(0, 8)}@example.test`, password: PASSWORD } });
  expect(r.status).toBe(201);
  return r.json();
}

async function logIn(stack: Stack, email: string): Promise<Session> {
  const r = await stack.fetch('/rpc/login', { method: 'POST', json: { email, password: PASSWORD } });
  expect(r.status).toBe(200);
  return (await r.json())[0];
}

async function refresh(stack: Stack, refreshToken: string): Promise<Response> {
  return stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: refreshToken } });
}

async function open(stack: Stack, token: string): Promise<RealtimeClient> {
  const c = await RealtimeClient.open(stack.url, token);
  clients.push(c);
  expect(await c.subscribe({ id: 't', table: 'todos' })).toMatchObject({ type: 'subscribed' });
  return c;
}

async function insertTodo(stack: Stack, token: string, title: string): Promise<void> {
  const r = await stack.fetch('/todos', { method: 'POST', token, json: { title } });
  expect(r.status).toBe(201);
}

const SESSION_ENDED = { code: 4001, reason: 'session ended' };

test('logout closes the sockets of that session with 4001; the same user\'s other session keeps receiving', async () => {
  const a = await signUp(first);
  const b = await logIn(first, a.user.email);
  const socketA = await open(first, a.token);
  const socketB = await open(first, b.token);

  expect((await first.fetch('/auth/logout', { method: 'POST', token: a.token })).status).toBe(204);
  expect(await socketA.waitClosed(10_000)).toEqual(SESSION_ENDED);
  expect(socketA.messages.at(-1)).toMatchObject({ type: 'error', code: 'PGRST301', message: expect.stringMatching(/session of this token has ended/) });

  await insertTodo(first, b.token, 'after logout');
  await socketB.waitFor((m) => m.new?.title === 'after logout');
  expect(socketB.closed).toBeNull();
  expect(socketA.changes()).toEqual([]);
});

test('a logout through one sidecar closes the session\'s sockets on the other; a global logout closes every session\'s', async () => {
  const a = await signUp(first);
  const b = await logIn(second, a.user.email);
  const onSecond = await open(second, a.token);
  const otherOnSecond = await open(second, b.token);
  const otherOnFirst = await open(first, b.token);

  expect((await first.fetch('/auth/logout', { method: 'POST', token: a.token })).status).toBe(204);
  expect(await onSecond.waitClosed(10_000)).toEqual(SESSION_ENDED);
  await insertTodo(first, b.token, 'b still here');
  await otherOnSecond.waitFor((m) => m.new?.title === 'b still here');
  await otherOnFirst.waitFor((m) => m.new?.title === 'b still here');
  expect(onSecond.changes()).toEqual([]);

  const c = await logIn(first, a.user.email);
  const thirdOnFirst = await open(first, c.token);
  expect((await second.fetch('/auth/logout', { method: 'POST', token: b.token, json: { scope: 'global' } })).status).toBe(204);
  for (const socket of [otherOnSecond, otherOnFirst, thirdOnFirst]) expect(await socket.waitClosed(10_000)).toEqual(SESSION_ENDED);
});

test('a reused refresh token closes every socket of its session, on every sidecar', async () => {
  const start = await signUp(first);
  const next = await (await refresh(first, start.refresh_token)).json();
  const latest = await (await refresh(second, next.refresh_token)).json();
  const unrelated = await logIn(first, start.user.email);
  const withFirstToken = await open(first, start.token);
  const withLatestToken = await open(second, latest.token);
  const otherSession = await open(second, unrelated.token);

  // The first refresh token again, after its successor was spent: a stolen copy; the family is revoked.
  expect((await refresh(second, start.refresh_token)).status).toBe(401);
  expect(await withFirstToken.waitClosed(10_000)).toEqual(SESSION_ENDED);
  expect(await withLatestToken.waitClosed(10_000)).toEqual(SESSION_ENDED);
  await insertTodo(first, unrelated.token, 'other session');
  await otherSession.waitFor((m) => m.new?.title === 'other session');
  expect(otherSession.closed).toBeNull();
});

test('the token of an ended session can neither open a socket nor authenticate one', async () => {
  const a = await signUp(first);
  expect((await first.fetch('/auth/logout', { method: 'POST', token: a.token })).status).toBe(204);

  const inUrl = await RealtimeClient.connect(second.url, { access_token: a.token });
  clients.push(inUrl);
  expect(await inUrl.waitClosed(10_000)).toEqual(SESSION_ENDED);
  expect(inUrl.messages).toEqual([expect.objectContaining({ type: 'error', code: 'PGRST301' })]);

  const inMessage = await RealtimeClient.connect(first.url);
  clients.push(inMessage);
  inMessage.send({ type: 'auth', token: a.token });
  expect(await inMessage.waitClosed(10_000)).toEqual(SESSION_ENDED);
  expect(inMessage.messages.some((m) => m.type === 'ready')).toBe(false);
});

// Last: it retires the key every earlier test's tokens were signed with.
test('retiring a signing key closes, on every sidecar, the sockets whose token it signed; tokens of the new key stay open', async () => {
  const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid as string;
  const oldKid = kidOf(first.serviceKey);
  const user = await signUp(first);
  const oldService = [await open(first, first.serviceKey), await open(second, first.serviceKey)];
  const oldUser = await open(second, user.token);
  const oldAnon = await RealtimeClient.open(first.url, first.anonKey);
  clients.push(oldAnon);

  // `plinth keys rotate`, then wait for both sidecars to verify tokens of the new key.
  const rotated = (await addSigningKey(first.sql, 'ES256'))!;
  for (const stack of [first, second]) {
    const deadline = Date.now() + 30_000;
    while ((await (await stack.fetch('/auth/jwks')).json()).keys.length !== 2) {
      if (Date.now() > deadline) throw new Error('the new key did not reach every sidecar');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const fresh = await logIn(first, user.user.email);
  expect(kidOf(fresh.token)).toBe(rotated.kid);
  const newService = await open(second, rotated.serviceKey);
  const newUser = await open(first, fresh.token);

  // `plinth keys retire <old kid>`.
  await retireSigningKey(first.sql, oldKid);
  const NO_LONGER_VALID = { code: 4001, reason: 'token no longer valid' };
  for (const socket of [...oldService, oldUser, oldAnon]) expect(await socket.waitClosed(10_000)).toEqual(NO_LONGER_VALID);
  expect(oldService[0].messages.at(-1)).toMatchObject({ type: 'error', code: 'PGRST301', message: 'JWT invalid: not signed by a Plinth key' });

  await first.sql`insert into public.todos (user_id, title) values (${user.user.id}, 'after retirement')`;
  await newService.waitFor((m) => m.new?.title === 'after retirement');
  await newUser.waitFor((m) => m.new?.title === 'after retirement');
  for (const socket of [...oldService, oldUser]) expect(socket.changes().map((m) => m.new?.title)).not.toContain('after retirement');
  expect(newService.closed).toBeNull();
  expect(newUser.closed).toBeNull();
});

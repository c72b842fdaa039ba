import { afterAll, beforeAll, expect, test } from 'vitest';
import { startStack, type Stack } from './harness.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack?.destroy());

test('a user sees only their own todos through the proxy', async () => {
  const alice = await stack.createUser();
  const bob = await stack.createUser();
  const created = await stack.fetch('/todos', { method: 'POST', token: alice.token, json: { title: 'alice 1' }, headers: { prefer: 'return=representation' } });
  expect(created.status).toBe(201);
  const mine = await (await stack.fetch('/todos', { token: alice.token })).json();
  expect(mine.map((t: { title: string }) => t.title)).toEqual(['alice 1']);
  expect(await (await stack.fetch('/todos', { token: bob.token })).json()).toEqual([]);
});

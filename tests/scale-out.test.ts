// Two sidecars (each with its own PostgREST) on one database: nothing that matters lives in a
// sidecar's memory, so either one serves any request.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { eventually, runCli, startStack, type Stack } from './harness.ts';

let first: Stack;
let second: Stack;
beforeAll(async () => {
  first = await startStack();
  second = await startStack({ env: { DATABASE_URL: first.databaseUrl } });
});
afterAll(async () => {
  await second?.destroy();
  await first?.destroy();
});

test('the second sidecar uses the shared database, not an embedded one', async () => {
  expect(second.output).not.toMatch(/embedded PostgreSQL/);
  expect(second.anonKey).toBe(first.anonKey);
  const health = await (await second.fetch('/health')).json();
  expect(health.database.status).toBe('ok');
});

test('a row written through one sidecar is read through the other, under the same RLS', async () => {
  const alice = await first.createUser();
  const bob = await first.createUser();
  const w = await first.fetch('/todos', { method: 'POST', token: alice.token, json: { title: 'written via first' } });
  expect(w.status).toBe(201);
  const viaSecond = await second.fetch('/todos', { token: alice.token });
  expect((await viaSecond.json()).map((t: { title: string }) => t.title)).toEqual(['written via first']);
  expect(await (await second.fetch('/todos', { token: bob.token })).json()).toEqual([]);
});

test('a key rotation reaches both sidecars and both PostgRESTs without a restart', async () => {
  const user = await first.createUser();
  const oldToken = user.token;
  const rotated = await runCli(['keys', 'rotate', '--json'], first.env);
  expect(rotated.code, rotated.stderr).toBe(0);
  const { kid } = JSON.parse(rotated.stdout);

  // A token signed by the new key, straight from the database's key table.
  const fresh = await second.mint({ sub: user.id, role: 'authenticated', email: user.email }, 600);
  expect(JSON.parse(Buffer.from(fresh.split('.')[0], 'base64url').toString()).kid).toBe(kid);

  // Each sidecar reloads its keys when told (NOTIFY): allow a loaded machine its seconds.
  for (const stack of [first, second]) {
    await eventually(`the new key accepted by ${stack.url}`, async () => ((await stack.fetch('/todos', { token: fresh })).status === 200 ? true : undefined));
    expect((await stack.fetch('/todos', { token: oldToken })).status).toBe(200);
  }
});

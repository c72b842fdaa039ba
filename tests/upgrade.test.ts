// An upgrade keeps everything: a data directory made by the previous release (its database and
// its files) starts under the current code, which applies only the migrations that release did
// not have and keeps every user, session, API key, file and row.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { freePort } from '../sidecar/start/process.ts';
import { REPO_ROOT, startStack, type Stack } from './harness.ts';

// The previous release: the last commit of 0.1.0 (CHANGELOG.md). Tags are not pushed, so the
// commit is named here; move it forward at each release.
const PREVIOUS_RELEASE = 'e50e199';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-upgrade-'));
const oldRoot = path.join(work, 'previous');
const dataDir = path.join(work, 'data');
// The app's migrations as the previous release's tests had them, for both starts: the app did not change.
const appMigrations = path.join(oldRoot, 'tests', 'fixtures', 'migrations');

const before = {
  email: 'ada@example.com',
  password: 'correct horse battery',
  userId: '',
  accessToken: '',
  refreshToken: '',
  anonKey: '',
  serviceKey: '',
  bytes: Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256)),
  todos: [] as unknown[],
};
let current: Stack;
let previousMigrations: string[];

/** Starts the previous release's `plinth start` on the data directory and waits for /health. */
async function startPrevious(): Promise<{ proc: ChildProcess; url: string; pgPort: number; output: () => string }> {
  const port = await freePort();
  const pgPort = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(oldRoot, 'sidecar', 'cli.ts'), 'start'], {
    cwd: oldRoot,
    env: { ...process.env, PORT: String(port), PLINTH_PG_PORT: String(pgPort), PLINTH_DATA_DIR: dataDir, PLINTH_APP_MIGRATIONS: appMigrations, PLINTH_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`the previous release exited with ${proc.exitCode}:\n${output}`);
    if (i > 900) throw new Error(`the previous release is not healthy after 90 s:\n${output}`);
    if ((await fetch(`${url}/health`).catch(() => undefined))?.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, url, pgPort, output: () => output };
}

beforeAll(async () => {
  // The previous release's files, straight from git (no checkout, no worktree to clean up).
  fs.mkdirSync(oldRoot, { recursive: true });
  let archive: Buffer;
  try {
    archive = execFileSync('git', ['archive', '--format=tar', PREVIOUS_RELEASE], { cwd: REPO_ROOT, maxBuffer: 256 * 1024 ** 2 });
  } catch (err) {
    throw new Error(`commit ${PREVIOUS_RELEASE} (the previous release) is not in this clone; fetch the full history (git fetch --unshallow): ${(err as Error).message}`);
  }
  execFileSync('tar', ['-x', '-C', oldRoot], { input: archive });
  fs.symlinkSync(fs.realpathSync(path.join(REPO_ROOT, 'node_modules')), path.join(oldRoot, 'node_modules'));
  previousMigrations = fs.readdirSync(path.join(oldRoot, 'sql', 'migrations'));
  fs.mkdirSync(dataDir, { mode: 0o755 });
  // The embedded server runs as the OS user postgres when the tests run as root.
  fs.chmodSync(work, 0o755);

  const old = await startPrevious();
  try {
    const json = (r: Response) => r.json() as Promise<Record<string, any>>;
    const signup = await json(
      await fetch(`${old.url}/rpc/signup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: before.email, password: before.password }) }),
    );
    before.userId = signup.user.id;
    before.accessToken = signup.token;
    // The session that must survive: a refresh token from a separate sign-in, never used yet.
    const [login] = (await (
      await fetch(`${old.url}/rpc/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: before.email, password: before.password }) })
    ).json()) as Record<string, any>[];
    before.refreshToken = login.refresh_token;
    const auth = { authorization: `Bearer ${before.accessToken}` };

    const stored = await fetch(`${old.url}/rpc/store_file`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream', 'file-path': 'reports/q3.bin' },
      body: before.bytes,
    });
    expect(stored.status, await stored.clone().text()).toBe(200);
    for (const title of ['first', 'second', 'third']) {
      const r = await fetch(`${old.url}/todos`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ title }) });
      expect(r.status).toBe(201);
    }
    before.todos = await json(await fetch(`${old.url}/todos?select=id,title,user_id&order=id`, { headers: auth })) as unknown as unknown[];
    expect(before.todos).toHaveLength(3);

    const keys = execFileSync(process.execPath, ['--import', 'tsx', path.join(oldRoot, 'sidecar', 'cli.ts'), 'keys', '--json'], {
      cwd: oldRoot,
      env: { ...process.env, PLINTH_DATA_DIR: dataDir, PLINTH_PG_PORT: String(old.pgPort) },
      encoding: 'utf8',
    });
    ({ anonKey: before.anonKey, serviceKey: before.serviceKey } = JSON.parse(keys));
  } finally {
    old.proc.kill('SIGTERM');
    await new Promise((r) => old.proc.once('exit', r));
  }
  expect(old.proc.exitCode, old.output()).toBe(0);

  current = await startStack({ dataDir, appMigrations, env: { PLINTH_LOG_LEVEL: 'info' } });
}, 300_000);

afterAll(async () => {
  await current?.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

test('the current code applies exactly the migrations the previous release did not have', () => {
  const applied = [...current.output.matchAll(/migration applied: (\S+)/g)].map((m) => m[1]).sort();
  const added = fs.readdirSync(path.join(REPO_ROOT, 'sql', 'migrations')).filter((f) => !previousMigrations.includes(f)).sort();
  expect(added.length).toBeGreaterThan(0);
  expect(applied).toEqual(added);
});

test('users keep their password, their sessions and their tokens', async () => {
  const login = await current.fetch('/rpc/login', { method: 'POST', json: { email: before.email, password: before.password } });
  expect(login.status).toBe(200);
  expect((await login.json())[0].user.id).toBe(before.userId);

  const refreshed = await current.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: before.refreshToken } });
  expect(refreshed.status).toBe(200);
  expect((await refreshed.json()).user.id).toBe(before.userId);

  // An access token minted by the previous release still verifies (same signing key).
  const user = await current.fetch('/auth/user', { token: before.accessToken });
  expect(user.status).toBe(200);
  expect((await user.json()).email).toBe(before.email);
});

test('the API keys stay the same', async () => {
  expect(current.anonKey).toBe(before.anonKey);
  expect(current.serviceKey).toBe(before.serviceKey);
  expect((await current.fetch('/posts', { apikey: before.anonKey })).status).toBe(200);
});

test('files keep their bytes and rows their values, under the same RLS', async () => {
  const file = await current.fetch('/rpc/retrieve_file?p_file_path=reports/q3.bin', { token: before.accessToken });
  expect(file.status).toBe(200);
  expect(Buffer.from(await file.arrayBuffer()).equals(before.bytes)).toBe(true);

  const todos = await current.fetch('/todos?select=id,title,user_id&order=id', { token: before.accessToken });
  expect(await todos.json()).toEqual(before.todos);
  // Another user sees none of them.
  const stranger = await current.createUser();
  expect(await (await current.fetch('/todos', { token: stranger.token })).json()).toEqual([]);
});

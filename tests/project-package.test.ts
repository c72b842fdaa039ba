// Plinth as a dependency of an app: `npm pack` the package, install the tarball into a fresh
// folder outside this repository, `plinth init`, then run the app's own test and start it with a
// `.env`. Proves the package's file list, its bin and its install script work on their own.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { freePort } from '../sidecar/start/process.ts';
import { REPO_ROOT } from './harness.ts';

interface Ran {
  code: number;
  output: string;
}

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? 1, output }));
  });
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-package-'));
const app = path.join(work, 'my-app');
// Keep the test's variables (PORT, PLINTH_*) away from the app: it reads its own .env.
const cleanEnv = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith('PLINTH_') || k === 'PORT' || k === 'DATABASE_URL').map((k) => [k, '']));

beforeAll(async () => {
  // As root, the embedded server runs as the OS user postgres, which must reach the app's folder
  // (its node_modules hold the PostgreSQL binaries); mkdtemp makes it private.
  fs.chmodSync(work, 0o755);
  const packed = await run('npm', ['pack', '--pack-destination', work], REPO_ROOT);
  expect(packed.code, packed.output).toBe(0);
  const tarball = path.join(work, fs.readdirSync(work).find((f) => f.endsWith('.tgz'))!);
  fs.mkdirSync(app);
  // From npm's cache when it is warm (the CI has just installed the same dependencies).
  const installed = await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app);
  expect(installed.code, installed.output).toBe(0);
}, 600_000);

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

test('the packed package installs with its fix to postgres.js and a prebuilt console', () => {
  const pkg = path.join(app, 'node_modules', 'plinth');
  expect(fs.existsSync(path.join(pkg, 'console', 'dist', 'index.html'))).toBe(true);
  expect(fs.existsSync(path.join(pkg, 'console', 'src'))).toBe(false);
  expect(fs.existsSync(path.join(pkg, 'tests'))).toBe(false);
  // postgres is hoisted into the app's node_modules, not Plinth's: the patch found it there.
  expect(fs.existsSync(path.join(pkg, 'node_modules', 'postgres'))).toBe(false);
  for (const file of ['src/connection.js', 'cjs/src/connection.js']) {
    expect(fs.readFileSync(path.join(app, 'node_modules', 'postgres', file), 'utf8'), file).toContain('The socket closed while this write waited');
  }
});

test('plinth init makes the folder an app whose own test passes', async () => {
  const version = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version;
  expect((await run('npx', ['plinth', '--version'], app)).output.trim()).toBe(version);

  const init = await run('npx', ['plinth', 'init'], app, cleanEnv);
  expect(init.code, init.output).toBe(0);
  const pkg = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
  expect(pkg.scripts).toMatchObject({ start: 'plinth start', test: 'node --test' });
  expect(pkg.dependencies.plinth).toMatch(/plinth-.*\.tgz$/);
  expect(fs.readFileSync(path.join(app, '.gitignore'), 'utf8')).toMatch(/^\.plinth\/$/m);
  expect(fs.readFileSync(path.join(app, '.gitignore'), 'utf8')).toMatch(/^\.env$/m);
  expect(fs.existsSync(path.join(app, '.env.example'))).toBe(true);
  const migrations = fs.readdirSync(path.join(app, 'migrations'));
  expect(migrations).toEqual([expect.stringMatching(/^\d{14}_create_notes\.sql$/)]);

  // A second init keeps everything as it is.
  const again = await run('npx', ['plinth', 'init'], app, cleanEnv);
  expect(again.output).not.toMatch(/^created/m);
  expect(fs.readdirSync(path.join(app, 'migrations'))).toEqual(migrations);

  // The app's test starts Plinth from node_modules, signs up, writes and reads a note.
  const tested = await run('npm', ['test'], app, cleanEnv);
  expect(tested.code, tested.output).toBe(0);
  expect(tested.output).toMatch(/# pass 1/);
}, 300_000);

test('npm start in the app reads its .env, keeps data in the app folder and serves the console', async () => {
  const port = await freePort();
  fs.writeFileSync(path.join(app, '.env'), `PORT=${port}\nPLINTH_PG_PORT=${await freePort()}\nPLINTH_DATA_DIR=data\nPLINTH_LOG_LEVEL=warn\n`);
  const child = spawn('npm', ['start'], { cwd: app, env: { ...process.env, ...cleanEnv }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  try {
    let health: Response | undefined;
    for (let i = 0; i < 900 && child.exitCode === null; i++) {
      health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      if (health?.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(health?.status, output).toBe(200);
    expect((await health!.json()).version).toBe(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version);
    expect(fs.existsSync(path.join(app, 'data', 'pg', 'PG_VERSION'))).toBe(true);

    const consolePage = await fetch(`http://127.0.0.1:${port}/console/`);
    expect(consolePage.status).toBe(200);
    expect(await consolePage.text()).toContain('<title>Plinth console</title>');

    // The app's migration was applied from the app's folder: a signed-in user can use `notes`.
    const signup = await fetch(`http://127.0.0.1:${port}/rpc/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'grace@example.com', password: 'correct horse battery' }),
    });
    expect(signup.status).toBe(201);
    const { token } = await signup.json();
    const notes = await fetch(`http://127.0.0.1:${port}/notes`, { headers: { authorization: `Bearer ${token}` } });
    expect(notes.status).toBe(200);
    expect(await notes.json()).toEqual([]);
  } finally {
    // npm start → plinth: the whole process group gets the terminal's Ctrl-C.
    if (child.exitCode === null) {
      process.kill(-child.pid!, 'SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
  }
}, 180_000);

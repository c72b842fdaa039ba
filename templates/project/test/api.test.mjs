// Starts this app's Plinth on free ports with a throw-away data directory, then checks what a
// client sees: a signed-in user writes a note and reads it back.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

const freePort = () =>
  new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });

// This app's Plinth, wherever npm installed it.
const plinthBin = path.join(path.dirname(createRequire(import.meta.url).resolve('plinth/package.json')), 'bin', 'plinth.js');
let plinth;
let base;
let output = '';
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'app-test-'));

before(async () => {
  // The embedded PostgreSQL may run as another OS user, which must reach this directory.
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, PORT: String(port), PLINTH_PG_PORT: String(await freePort()), PLINTH_DATA_DIR: dataDir, PLINTH_LOG_LEVEL: 'warn' };
  plinth = spawn(process.execPath, [plinthBin, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  plinth.stdout.on('data', (d) => (output += d));
  plinth.stderr.on('data', (d) => (output += d));
  for (let i = 0; ; i++) {
    if (plinth.exitCode !== null || plinth.signalCode !== null) throw new Error(`plinth start exited (${plinth.exitCode ?? plinth.signalCode}):\n${output}`);
    if (i > 900) throw new Error(`plinth start not healthy after 90 s:\n${output}`);
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  if (plinth?.exitCode === null) {
    plinth.kill('SIGTERM');
    await new Promise((r) => plinth.once('exit', r));
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('a user keeps private notes', async () => {
  const signup = await fetch(`${base}/rpc/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'ada@example.com', password: 'correct horse battery' }),
  });
  assert.equal(signup.status, 201);
  const { token } = await signup.json();
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  const write = await fetch(`${base}/notes`, { method: 'POST', headers: auth, body: JSON.stringify({ body: 'hello' }) });
  assert.equal(write.status, 201);
  const notes = await (await fetch(`${base}/notes?select=body`, { headers: auth })).json();
  assert.deepEqual(notes, [{ body: 'hello' }]);
});

// Process and database faults on the real stack: a connection blip, a dead PostgREST, a dead
// PostgreSQL, and Ctrl-C in a terminal. Each test is about what an operator sees afterwards:
// is Plinth still serving, did it restart what it could, did it stop cleanly when it could not.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, REPO_ROOT, type Stack, startStack } from '../harness.ts';

const SLOW = 120_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of the children a running Plinth recorded in its data-directory lock. */
function recordedChildren(stack: Stack): number[] {
  const lock = path.join(stack.dataDir, 'plinth.pid');
  return fs.readFileSync(lock, 'utf8').trim().split(/\s+/).map(Number).slice(1);
}

function postmasterPid(stack: Stack): number {
  return Number(fs.readFileSync(path.join(stack.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

async function waitForExit(stack: Stack, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  while (stack.exitCode === null) {
    if (Date.now() > deadline) throw new Error(`plinth still running after ${ms} ms:\n${stack.output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return stack.exitCode;
}

describe('one stack through connection blips and a dead PostgREST', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  }, SLOW);
  afterAll(async () => {
    await stack?.destroy();
  }, SLOW);

  test('a database connection blip (every sidecar connection terminated, again and again, under load) does not crash the sidecar or lose a file', async () => {
    const user = await stack.createUser();
    expect((await stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, headers: { 'file-path': 'blip/0.txt' }, body: 'first' })).status).toBe(200);
    let stop = false;
    const statuses: number[] = [];
    // Per path: the contents it may hold now. A 200 fixes it; a store whose answer was an error
    // may still have committed (its COMMIT can succeed after the connection is cut), so it adds one.
    const possible = new Map<string, Set<string>>([['blip/0.txt', new Set(['first'])]]);
    const acknowledged = new Set(['blip/0.txt']);
    // The sidecar's own pools at work: profiles (accounts), file uploads and lookups (storage).
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const file = `blip/${i % 5}.txt`;
        const rs = await Promise.allSettled([
          stack.fetch('/auth/user', { token: user.token }),
          stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, headers: { 'file-path': file, 'content-type': 'application/octet-stream' }, body: `version ${i}` }),
          stack.fetch('/rpc/retrieve_file?p_file_path=blip/0.txt', { token: user.token }),
        ]);
        for (const r of rs) if (r.status === 'fulfilled') statuses.push(r.value.status), await r.value.arrayBuffer();
        const stored = rs[1].status === 'fulfilled' && rs[1].value.status === 200;
        if (stored) possible.set(file, new Set([`version ${i}`])), acknowledged.add(file);
        else (possible.get(file) ?? possible.set(file, new Set()).get(file)!).add(`version ${i}`);
      }
    })();
    for (let round = 0; round < 25; round++) {
      await stack.sql`
        select pg_terminate_backend(pid) from pg_stat_activity
        where pid <> pg_backend_pid() and backend_type = 'client backend' and usename in ('postgres', 'plinth_caller')`.catch(() => {});
      // (The test's own idle connections are among those terminated; they reconnect by themselves.)
      await new Promise((r) => setTimeout(r, 120));
    }
    stop = true;
    await load;
    expect(stack.exitCode, stack.output).toBeNull();
    // Once the blips stop, every part answers again without a restart.
    await eventually('health to recover', async () => ((await stack.fetch('/health')).status === 200 ? true : undefined));
    const after = await stack.fetch('/auth/user', { token: user.token });
    expect(after.status).toBe(200);
    const stored = await stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, headers: { 'file-path': 'blip/after.txt' }, body: 'after the blips' });
    expect(stored.status).toBe(200);
    expect(await (await stack.fetch('/rpc/retrieve_file?p_file_path=blip/after.txt', { token: user.token })).text()).toBe('after the blips');
    // Every file holds the bytes of its last acknowledged store, or of a later one whose answer
    // was lost; none is missing its bytes.
    for (const [file, contents] of possible) {
      const got = await stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(file)}`, { token: user.token });
      // A path whose every store was answered with an error may never have been written at all.
      if (!acknowledged.has(file) && got.status === 400) {
        expect(await got.json(), file).toEqual({ message: 'File not found.' });
        continue;
      }
      expect(got.status, file).toBe(200);
      expect([...contents], file).toContain(await got.text());
    }
    // Requests during the blips succeeded or said the database was briefly unavailable (503,
    // Retry-After), never an opaque 500.
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.filter((s) => ![200, 503].includes(s)), stack.output.split('\n').filter((l) => / ERROR /.test(l)).slice(0, 8).join('\n')).toEqual([]);
  }, SLOW);

  test('PostgREST killed: Plinth starts it again and the table API answers, with the reason in the log', async () => {
    const user = await stack.createUser();
    expect((await stack.fetch('/todos', { token: user.token })).status).toBe(200);
    const [first] = recordedChildren(stack).filter(isAlive);
    expect(first).toBeGreaterThan(0);
    process.kill(first, 'SIGKILL');
    await eventually('the old PostgREST to be gone', async () => (isAlive(first) ? undefined : true));
    await eventually('the restart to be logged', async () => (/PostgREST is running again/.test(stack.output) ? true : undefined));
    expect(stack.output).toMatch(/PostgREST exited \(signal SIGKILL[;)].*; starting it again in 0.5 s/);
    expect((await stack.fetch('/todos', { token: user.token })).status).toBe(200);
    // The new PostgREST is recorded in the lock, so a later start could stop it after a crash.
    expect(recordedChildren(stack).filter(isAlive).length).toBe(1);
    expect(stack.exitCode).toBeNull();
  }, SLOW);
});

test('PostgreSQL killed: Plinth stops PostgREST, releases the lock and exits 1 with one line', async () => {
  const stack = await startStack();
  try {
    const children = recordedChildren(stack);
    process.kill(postmasterPid(stack), 'SIGKILL');
    expect(await waitForExit(stack, 60_000)).toBe(1);
    expect(stack.output).toMatch(/plinth: PostgreSQL exited \(signal SIGKILL/);
    expect(children.filter(isAlive)).toEqual([]);
    expect(fs.existsSync(path.join(stack.dataDir, 'plinth.pid'))).toBe(false);
  } finally {
    await stack.destroy();
  }
}, SLOW);

test('Ctrl-C in a terminal (SIGINT to the whole process group): the request in flight finishes, every part stops, exit 0', async () => {
  const stack = await startStack({ processGroup: true });
  try {
    const postgres = postmasterPid(stack);
    const children = recordedChildren(stack);
    const inFlight = stack.fetch('/rpc/slow_echo', { method: 'POST', apikey: stack.anonKey, json: { seconds: 2.5, message: 'finished' } });
    // Ctrl-C once the request is running in the database (a fixed pause could come too soon on a
    // loaded machine, before the request even reached Plinth).
    await eventually('the request to be in flight', async () => {
      const [{ n }] = await stack.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and query like '%slow_echo%'`;
      return n === 1 ? true : undefined;
    });
    process.kill(-stack.proc.pid!, 'SIGINT');
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(await answer.json()).toBe('finished');
    expect(await waitForExit(stack, 30_000)).toBe(0);
    expect([postgres, ...children].filter(isAlive)).toEqual([]);
    expect(fs.existsSync(path.join(stack.dataDir, 'plinth.pid'))).toBe(false);
    // Every part stopped within its deadline.
    expect(stack.output).not.toMatch(/while stopping|not every part stopped cleanly/);
  } finally {
    await stack.destroy();
  }
}, SLOW);

test('SIGTERM to `npm start` (npm does not pass it on): Plinth notices, stops every part and releases the lock', async () => {
  // Boot once through the harness for a ready data directory, then run it the way users do.
  const stack = await startStack();
  await stack.stop();
  const npm = spawn('npm', ['start'], { cwd: REPO_ROOT, env: { ...process.env, ...stack.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  npm.stdout!.on('data', (d) => (output += d));
  npm.stderr!.on('data', (d) => (output += d));
  try {
    await eventually('npm start to serve', async () => ((await fetch(`${stack.url}/health`)).status === 200 ? true : undefined), 90_000);
    const [plinth, ...children] = fs.readFileSync(path.join(stack.dataDir, 'plinth.pid'), 'utf8').trim().split(/\s+/).map(Number);
    const postgres = postmasterPid(stack);
    npm.kill('SIGTERM');
    await eventually('Plinth and its children to stop', async () => ([plinth, postgres, ...children].some(isAlive) ? undefined : true), 30_000);
    expect(fs.existsSync(path.join(stack.dataDir, 'plinth.pid')), output).toBe(false);
  } finally {
    npm.kill('SIGKILL');
    await stack.destroy();
  }
}, SLOW);

// Bounds and truthful errors for infrastructure faults, on the real stack: a statement timeout for
// anonymous and signed-in callers (through PostgREST and through the sidecar's own SQL), a
// deadline for requests waiting on a PostgREST connection, 502 versus 503 when PostgREST dies,
// a cap on realtime sockets, health checks that answer even when a part hangs, and a full disk.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../sidecar/core/config.ts';
import { connect } from '../../sidecar/core/db.ts';
import { PlinthError, resourceExhausted } from '../../sidecar/core/errors.ts';
import { eventually, SAMPLE_APP_MIGRATIONS, type Stack, startStack } from '../harness.ts';
import { RealtimeClient } from '../realtime-client.ts';

const SLOW = 120_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** PostgREST's pid, as the running Plinth recorded it in its data-directory lock. */
function postgrestPid(stack: Stack): number {
  const pids = fs.readFileSync(path.join(stack.dataDir, 'plinth.pid'), 'utf8').trim().split(/\s+/).map(Number).slice(1);
  const alive = pids.filter(isAlive);
  expect(alive.length).toBe(1);
  return alive[0];
}

/** The embedded server's processes: the postmaster and every process it started. */
function postgresProcesses(stack: Stack): number[] {
  const postmaster = Number(fs.readFileSync(path.join(stack.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  return [postmaster, ...children.filter((p) => p > 0)];
}

/** Statements running `fragment` right now, other than the asking one. */
async function running(stack: Stack, fragment: string): Promise<number> {
  const [{ n }] = await stack.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
    where state = 'active' and pid <> pg_backend_pid() and query like ${`%${fragment}%`}`;
  return n;
}

/** A WebSocket upgrade refused before it opened: the HTTP status, Retry-After and body. */
function refusedUpgrade(url: string): Promise<{ status: number; retryAfter: string | undefined; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => {
      ws.close();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined, body: JSON.parse(text) }));
    });
    ws.once('error', () => {});
  });
}

/** App migrations for these tests: a table whose read policy takes two seconds per row. */
function slowTableMigrations(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bounds-migrations-'));
  fs.writeFileSync(
    path.join(dir, '20250601000090_bounds_fixture.sql'),
    `-- migrate:up
CREATE FUNCTION public.bounds_pause(seconds double precision) RETURNS boolean
LANGUAGE sql VOLATILE AS $$ SELECT true FROM (SELECT pg_sleep(seconds)) AS pause $$;
CREATE TABLE public.bounds_slow (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), photo text);
ALTER TABLE public.bounds_slow ENABLE ROW LEVEL SECURITY;
CREATE POLICY bounds_slow_read ON public.bounds_slow FOR SELECT USING (public.bounds_pause(2));
GRANT SELECT ON public.bounds_slow TO anon, authenticated;

-- migrate:down
DROP TABLE public.bounds_slow;
DROP FUNCTION public.bounds_pause(double precision);
`,
  );
  return dir;
}

describe('unit: infrastructure errors and settings', () => {
  test.each([
    ['ENOSPC', 507, 'PLINTH507', /Storage is full/, undefined],
    ['EDQUOT', 507, 'PLINTH507', /Storage is full/, undefined],
    ['EMFILE', 503, 'PLINTH503', /too many open files/, '1'],
    ['ENFILE', 503, 'PLINTH503', /too many open files/, '1'],
  ])('%s is answered %i', (code, status, plinthCode, message, retryAfter) => {
    const mapped = resourceExhausted(Object.assign(new Error(`${code}: it happened, write`), { code }));
    expect(mapped).toBeInstanceOf(PlinthError);
    expect(mapped!.status).toBe(status);
    expect(mapped!.code).toBe(plinthCode);
    expect(mapped!.message).toMatch(message);
    expect(mapped!.headers['retry-after']).toBe(retryAfter);
  });

  test.each([['ECONNRESET'], ['ENOENT'], ['EACCES'], [undefined]])('%s is not a resource running out', (code) => {
    expect(resourceExhausted(Object.assign(new Error('x'), { code }))).toBeUndefined();
    expect(resourceExhausted(null)).toBeUndefined();
  });

  test('the new limits have defaults, take seconds, and refuse nonsense', () => {
    const defaults = loadConfig({}, '/tmp');
    expect(defaults.database.statementTimeoutMs).toBe(30_000);
    expect(defaults.postgrest.queueTimeoutMs).toBe(10_000);
    expect(defaults.realtime.maxClients).toBe(1000);
    const set = loadConfig({ PLINTH_STATEMENT_TIMEOUT: '0', PLINTH_PROXY_QUEUE_TIMEOUT: '3', PLINTH_REALTIME_MAX_CLIENTS: '0' }, '/tmp');
    expect(set.database.statementTimeoutMs).toBe(0);
    expect(set.postgrest.queueTimeoutMs).toBe(3000);
    expect(set.realtime.maxClients).toBe(0);
    expect(() => loadConfig({ PLINTH_PROXY_QUEUE_TIMEOUT: '0' }, '/tmp')).toThrow(/PLINTH_PROXY_QUEUE_TIMEOUT/);
    expect(() => loadConfig({ PLINTH_STATEMENT_TIMEOUT: '1.5s' }, '/tmp')).toThrow(/PLINTH_STATEMENT_TIMEOUT/);
    expect(() => loadConfig({ PLINTH_REALTIME_MAX_CLIENTS: '-1' }, '/tmp')).toThrow(/PLINTH_REALTIME_MAX_CLIENTS/);
  });
});

describe('one stack with small limits', () => {
  let stack: Stack;
  let migrations: string;
  beforeAll(async () => {
    migrations = slowTableMigrations();
    stack = await startStack({
      appMigrations: [SAMPLE_APP_MIGRATIONS, migrations],
      env: {
        PLINTH_STATEMENT_TIMEOUT: '1',
        PLINTH_POSTGREST_POOL_SIZE: '2',
        PLINTH_PROXY_QUEUE_TIMEOUT: '1',
        PLINTH_REALTIME_MAX_CLIENTS: '2',
      },
    });
  }, SLOW);
  afterAll(async () => {
    await stack?.destroy();
    if (migrations) fs.rmSync(migrations, { recursive: true, force: true });
  }, SLOW);

  test('a slow anonymous call through PostgREST is cancelled by the statement timeout; the service key is not bounded', async () => {
    const r = await stack.fetch('/rpc/slow_echo', { method: 'POST', apikey: stack.anonKey, json: { seconds: 3, message: 'too slow' } });
    const body = await r.json();
    expect(body.code).toBe('57014');
    expect(body.message).toMatch(/statement timeout/);
    expect(r.status).toBe(500);
    const service = await stack.fetch('/rpc/slow_echo', { method: 'POST', apikey: stack.serviceKey, json: { seconds: 1.5, message: 'patient' } });
    expect(service.status).toBe(200);
    expect(await service.json()).toBe('patient');
  }, SLOW);

  test("the sidecar's own SQL as a signed-in caller has the same statement timeout", async () => {
    const user = await stack.createUser();
    const [row] = await stack.sql<{ id: string }[]>`insert into public.bounds_slow (photo) values ('a.png') returning id`;
    // Reading the row runs its two-second policy, as the caller: cancelled after one second.
    const r = await stack.fetch(`/storage/download/bounds_slow/${row.id}/photo/a.png`, { token: user.token });
    const body = await r.json();
    expect(body.code).toBe('57014');
    expect(body.message).toMatch(/statement timeout/);
    expect(body.hint).toMatch(/PLINTH_STATEMENT_TIMEOUT/);
    // The same statement through PostgREST meets the same limit.
    const rest = await stack.fetch('/bounds_slow', { token: user.token });
    expect((await rest.json()).code).toBe('57014');
    expect(rest.status).toBe(r.status);
  }, SLOW);

  test('a request waiting longer than PLINTH_PROXY_QUEUE_TIMEOUT for a PostgREST connection gets 503 with Retry-After, not sent', async () => {
    // Both PostgREST connections are held by slow calls (the service key has no statement timeout).
    const slow = [1, 2].map((i) => stack.fetch('/rpc/slow_echo', { method: 'POST', apikey: stack.serviceKey, json: { seconds: 5, message: `slow ${i}` } }));
    await eventually('both slow calls to run', async () => ((await running(stack, 'slow_echo')) === 2 ? true : undefined));
    const [waited, posted] = await Promise.all([
      stack.fetch('/todos', { apikey: stack.serviceKey }),
      stack.fetch('/todos', { method: 'POST', apikey: stack.serviceKey, json: { title: 'never sent' } }),
    ]);
    for (const r of [waited, posted]) {
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('1');
      const body = await r.json();
      expect(body.message).toMatch(/busy.*not sent/);
      expect(body.hint).toMatch(/PLINTH_PROXY_QUEUE_TIMEOUT/);
    }
    // The slow calls were not disturbed, and the refused POST was never carried out.
    for (const [i, r] of (await Promise.all(slow)).entries()) {
      expect(r.status).toBe(200);
      expect(await r.json()).toBe(`slow ${i + 1}`);
    }
    expect(await stack.sql`select 1 from public.todos where title = 'never sent'`).toHaveLength(0);
    // With connections free again, requests go through.
    const after = await stack.fetch('/todos', { apikey: stack.serviceKey });
    expect(after.status).toBe(200);
  }, SLOW);

  test('realtime accepts at most PLINTH_REALTIME_MAX_CLIENTS sockets: more get 503 with Retry-After', async () => {
    const url = `${stack.url.replace(/^http/, 'ws')}/realtime?apikey=${stack.anonKey}`;
    const first = await RealtimeClient.connect(stack.url, { apikey: stack.anonKey });
    const second = await RealtimeClient.connect(stack.url, { apikey: stack.anonKey });
    const refused = await refusedUpgrade(url);
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).toBeDefined();
    expect(refused.body.message).toMatch(/realtime connections/);
    expect(refused.body.hint).toMatch(/PLINTH_REALTIME_MAX_CLIENTS/);
    // A socket that closes makes room for another.
    first.ws.close();
    const third = await eventually('a free realtime slot', () => RealtimeClient.connect(stack.url, { apikey: stack.anonKey }));
    expect(third.ws.readyState).toBe(WebSocket.OPEN);
    second.ws.close();
    third.ws.close();
  }, SLOW);

  test('GET /health answers when the database hangs: the database is reported down, "timed out"', async () => {
    // Every PostgreSQL process stopped (not killed): connections stay open and nothing answers.
    const stopped = postgresProcesses(stack);
    for (const pid of stopped) process.kill(pid, 'SIGSTOP');
    let report: Record<string, Record<string, unknown> | string>;
    let status: number;
    try {
      const r = await fetch(`${stack.url}/health`);
      status = r.status;
      report = await r.json();
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }
    expect(status).toBe(503);
    expect(report.status).toBe('degraded');
    expect(report.database).toMatchObject({ status: 'down', error: expect.stringMatching(/timed out/) });
    // Reports of the parts that did answer are kept.
    expect(report.realtime).toMatchObject({ status: 'ok' });
    await eventually('health to recover', async () => ((await fetch(`${stack.url}/health`)).status === 200 ? true : undefined));
  }, SLOW);

  test('PostgREST dies during a request: that request gets 502 (it may have run); requests while it is down get 503 with Retry-After', async () => {
    const pid = postgrestPid(stack);
    const inFlight = stack.fetch('/rpc/slow_echo', { method: 'POST', apikey: stack.serviceKey, json: { seconds: 5, message: 'cut short' } });
    await eventually('the call to run', async () => ((await running(stack, 'slow_echo')) === 1 ? true : undefined));
    process.kill(pid, 'SIGKILL');
    const cut = await inFlight;
    expect(cut.status).toBe(502);
    expect(cut.headers.get('retry-after')).toBeNull();
    const cutBody = await cut.json();
    expect(cutBody.code).toBe('PLINTH502');
    expect(cutBody.message).toMatch(/after the request was sent.*may or may not have been carried out/);
    // Plinth waits before starting PostgREST again: meanwhile requests are refused, unsent.
    await eventually('the old PostgREST to be gone', async () => (isAlive(pid) ? undefined : true));
    const down = await stack.fetch('/todos', { apikey: stack.serviceKey });
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('1');
    expect((await down.json()).message).toMatch(/unavailable; the request was not sent/);
    await eventually('the table API to answer again', async () => ((await stack.fetch('/todos', { apikey: stack.serviceKey })).status === 200 ? true : undefined));
  }, SLOW);
});

/** Whether this machine lets us mount a small tmpfs (root, and not forbidden by a container). */
function canMountTmpfs(): boolean {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

describe.skipIf(!canMountTmpfs())('the disk store on a small filesystem (a 4 MiB tmpfs under the data directory)', () => {
  let stack: Stack;
  let dataDir: string;
  let storageDir: string;
  beforeAll(async () => {
    // PostgreSQL lives in the data directory too: only the file store gets the small disk.
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-full-'));
    storageDir = path.join(dataDir, 'storage');
    fs.mkdirSync(storageDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', storageDir]);
    stack = await startStack({ dataDir });
  }, SLOW);
  afterAll(async () => {
    await stack?.destroy();
    if (storageDir) execFileSync('umount', [storageDir]);
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  }, SLOW);

  test('GET /health reports the free bytes of the storage disk', async () => {
    const r = await stack.fetch('/health');
    expect(r.status).toBe(200);
    const report = await r.json();
    expect(report.storage).toMatchObject({ status: 'ok', backend: 'disk' });
    expect(report.storage.free_bytes).toBeGreaterThan(1024 * 1024);
    expect(report.storage.free_bytes).toBeLessThanOrEqual(4 * 1024 * 1024);
  }, SLOW);

  test('an upload larger than the free space is 507 "storage is full", keeps nothing, and loses nothing', async () => {
    const user = await stack.createUser();
    const put = (body: BodyInit) => stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, headers: { 'file-path': 'notes.txt', 'content-type': 'application/octet-stream' }, body });
    expect((await put('the first version')).status).toBe(200);
    const big = Buffer.alloc(6 * 1024 * 1024, 7);
    const full = await put(big);
    expect(full.status).toBe(507);
    const body = await full.json();
    expect(body.code).toBe('PLINTH507');
    expect(body.message).toMatch(/Storage is full.*nothing was stored/);
    // Nothing of the failed upload stays on the disk, and the earlier version is still served.
    expect(fs.readdirSync(path.join(storageDir, 'tmp'))).toEqual([]);
    const read = await stack.fetch('/rpc/retrieve_file?p_file_path=notes.txt', { token: user.token });
    expect(read.status).toBe(200);
    expect(await read.text()).toBe('the first version');
    // A file that fits is stored as usual.
    expect((await put('a second version')).status).toBe(200);
    expect(await (await stack.fetch('/rpc/retrieve_file?p_file_path=notes.txt', { token: user.token })).text()).toBe('a second version');
  }, SLOW);

  test('a large upload that fills the disk mid-stream is 507 and leaves the previous large version byte for byte', async () => {
    // Both larger than one hashing batch (1 MiB), and the second fails after some of its bytes
    // were written.
    const user = await stack.createUser();
    const put = (body: BodyInit) => stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, headers: { 'file-path': 'big.bin', 'content-type': 'application/octet-stream' }, body });
    const first = Buffer.from(Array.from({ length: 1536 * 1024 }, (_, i) => (i * 31 + (i >> 10)) & 0xff));
    expect((await put(first)).status).toBe(200);
    const full = await put(Buffer.alloc(6 * 1024 * 1024, 9));
    expect(full.status).toBe(507);
    expect(await full.json()).toMatchObject({ code: 'PLINTH507', message: expect.stringMatching(/Storage is full.*nothing was stored/) });
    expect(fs.readdirSync(path.join(storageDir, 'tmp'))).toEqual([]);
    const read = await stack.fetch('/rpc/retrieve_file?p_file_path=big.bin', { token: user.token });
    expect(read.status).toBe(200);
    expect(Buffer.from(await read.arrayBuffer()).equals(first)).toBe(true);
    // The space is back: the next large version is stored whole.
    const second = Buffer.alloc(1536 * 1024, 3);
    expect((await put(second)).status).toBe(200);
    const again = await stack.fetch('/rpc/retrieve_file?p_file_path=big.bin', { token: user.token });
    expect(Buffer.from(await again.arrayBuffer()).equals(second)).toBe(true);
  }, SLOW);

  test('a resumable upload that runs out of disk mid-PATCH is 507, keeps its acknowledged bytes, and completes byte for byte once space is freed', async () => {
    const user = await stack.createUser();
    const auth = { apikey: stack.anonKey, authorization: `Bearer ${user.token}` };
    const tus = { ...auth, 'tus-resumable': '1.0.0' };
    const bucket = `tus-full-${Date.now()}`;
    const made = await stack.fetch('/storage/v1/bucket', { method: 'POST', token: user.token, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: bucket }) });
    expect(made.status).toBe(200);
    const data = Buffer.from(Array.from({ length: 1536 * 1024 }, (_, i) => (i * 7 + (i >> 12)) & 0xff));
    const half = 512 * 1024;
    const freeBytes = () => {
      const { bavail, bsize } = fs.statfsSync(storageDir);
      return bavail * bsize;
    };
    const freeBefore = freeBytes();
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const created = await fetch(`${stack.url}/storage/v1/upload/resumable`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': String(data.length), 'upload-metadata': `bucketName ${b64(bucket)},objectName ${b64('clip.bin')}` },
    });
    expect(created.status).toBe(201);
    const url = created.headers.get('location')!;
    const patch = (offset: number, bytes: Buffer) =>
      fetch(url, { method: 'PATCH', headers: { ...tus, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(bytes) });
    const offsetNow = async () => (await fetch(url, { method: 'HEAD', headers: tus })).headers.get('upload-offset');

    const first = await patch(0, data.subarray(0, half));
    expect(first.status).toBe(204);
    expect(first.headers.get('upload-offset')).toBe(String(half));
    // Leave 512 KiB free: the next 1 MiB runs out of space halfway.
    const filler = path.join(storageDir, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(freeBytes() - half));
    try {
      const full = await patch(half, data.subarray(half));
      expect(full.status).toBe(507);
      expect(await full.json()).toMatchObject({ error: 'InsufficientStorage', message: expect.stringMatching(/keeps its first 524288 bytes/) });
      expect(await offsetNow()).toBe(String(half));
    } finally {
      fs.rmSync(filler, { force: true });
    }
    const rest = await patch(half, data.subarray(half));
    expect(rest.status).toBe(204);
    expect(rest.headers.get('upload-offset')).toBe(String(data.length));
    const got = await stack.fetch(`/storage/v1/object/${bucket}/clip.bin`, { token: user.token });
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).equals(data)).toBe(true);
    // The digest covers the bytes stored, not those of the failed PATCH.
    const info = await stack.fetch(`/storage/v1/object/info/${bucket}/clip.bin`, { token: user.token });
    expect(await info.json()).toMatchObject({ size: data.length, etag: `"${createHash('sha256').update(data).digest('hex')}"` });
    const removed = await stack.fetch(`/storage/v1/object/${bucket}/clip.bin`, { method: 'DELETE', token: user.token });
    expect(removed.status).toBe(200);
    // The small disk is left as it was found: the object's bytes go in the background.
    await eventually('the removed object\'s bytes are gone', async () => (freeBytes() >= freeBefore - 64 * 1024 ? true : undefined));
  }, SLOW);

  test('a full storage disk makes /health degraded, with storage down and why; freeing space brings it back', async () => {
    const filler = path.join(storageDir, 'filler');
    try {
      // Fill the disk to the last byte.
      const fd = fs.openSync(filler, 'w');
      try {
        const chunk = Buffer.alloc(64 * 1024);
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        fs.closeSync(fd);
      }
      const r = await stack.fetch('/health');
      expect(r.status).toBe(503);
      const report = await r.json();
      expect(report.status).toBe('degraded');
      expect(report.storage).toMatchObject({ status: 'down', error: expect.stringMatching(/storage is full/) });
      expect(report.database).toMatchObject({ status: 'ok' });
    } finally {
      fs.rmSync(filler, { force: true });
    }
    expect((await stack.fetch('/health')).status).toBe(200);
  }, SLOW);
});

describe('the database client reconnects quickly after an outage', () => {
  test('connect() gives up on an unreachable server within seconds, not after postgres.js defaults', async () => {
    // A listening socket that never answers: the connection attempt must time out on its own.
    const net = await import('node:net');
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as import('node:net').AddressInfo;
    const sql = connect(`postgres://nobody:x@127.0.0.1:${port}/none`, 1);
    try {
      const err = await sql`select 1`.catch((e) => e);
      expect(err.code).toBe('CONNECT_TIMEOUT');
    } finally {
      await sql.end({ timeout: 0 });
      silent.close();
    }
  }, 20_000);
});

// The file storage suite against the disk backend (the default).
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { crashSuite, diskBackend, fileSuite, GiB } from './files-suite.ts';
import { downAndUpAgain, eventually, REPO_ROOT, startStack, type Stack, type TestUser } from './harness.ts';

describe('disk', () => fileSuite(async () => diskBackend(), { big: GiB }));
describe('disk: crashes, aborts and limits', () => crashSuite(async () => diskBackend()));

// Bodies of at most 64 KiB (by Content-Length) are held whole: written durably in tmp/, recorded
// in one transaction, then moved into objects/. What a crash can leave at each step is put there
// by hand below, as the crash would have left it.
describe('disk: small uploads held whole', () => {
  let stack: Stack;
  let user: TestUser;
  const IDLE_SECONDS = 2;
  const tmpDir = () => path.join(stack.dataDir, 'storage', 'tmp');
  const objectFile = (key: string) => path.join(stack.dataDir, 'storage', 'objects', key.slice(0, 2), key);
  const anHourAgo = () => new Date(Date.now() - 3600_000);
  beforeAll(async () => {
    // Sweep age 0: the sweep runs every 10 s (whole objects still wait 60 s before they are strays).
    stack = await startStack({ env: { PLINTH_SWEEP_AGE: '0', PLINTH_UPLOAD_IDLE_TIMEOUT: String(IDLE_SECONDS) } });
    user = await stack.createUser();
  });
  afterAll(() => stack?.destroy());

  const store = (filePath: string, body: Buffer) =>
    stack.fetch('/rpc/store_file', { method: 'POST', token: user.token, body: new Uint8Array(body), headers: { 'content-type': 'application/octet-stream', 'file-path': filePath } });
  const retrieve = async (filePath: string) => {
    const res = await stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`, { token: user.token });
    return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
  };
  const keyOf = async (filePath: string) =>
    (await stack.sql<{ key: string }[]>`
      select b.key from public.files f join storage.file_links l on l.file_id = f.id join storage.blobs b on b.id = l.object_id
      where f.owner_id = ${user.id} and f.path = ${filePath}`)[0].key;

  test('a small upload is in place with nothing left in tmp; a crash before its move loses nothing: reads find it, the sweep moves it', async () => {
    const bytes = randomBytes(4096);
    const res = await store('whole/a.bin', bytes);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^"[0-9a-f-]{36}"$/);
    const key = await keyOf('whole/a.bin');
    expect(fs.readFileSync(objectFile(key)).equals(bytes)).toBe(true);
    expect(fs.readdirSync(tmpDir())).toEqual([]);

    // Committed, then the sidecar died before the move into place.
    const part = path.join(tmpDir(), `${key}.part`);
    fs.renameSync(objectFile(key), part);
    fs.utimesSync(part, anHourAgo(), anHourAgo());
    expect(await retrieve('whole/a.bin')).toEqual({ status: 200, bytes });
    await eventually('the sweep moves the bytes into place', async () => fs.existsSync(objectFile(key)) && !fs.existsSync(part) || undefined);
    expect(await retrieve('whole/a.bin')).toEqual({ status: 200, bytes });
  });

  test('bytes in tmp of an upload that never committed are swept, and that upload can no longer commit', async () => {
    // Died between writing the bytes and its commit.
    const key = randomUUID();
    const part = path.join(tmpDir(), `${key}.part`);
    fs.writeFileSync(part, 'never committed');
    fs.utimesSync(part, anHourAgo(), anHourAgo());
    // A fresh one (an upload in progress elsewhere, within its time) is left alone.
    const fresh = path.join(tmpDir(), `${randomUUID()}.part`);
    fs.writeFileSync(fresh, 'still writing');
    // The sweep removes the bytes, then the row it took for them, in one transaction: wait for both.
    await eventually('the stray bytes are swept', async () =>
      (!fs.existsSync(part) && (await stack.sql`select 1 from storage.blobs where key = ${key}`).length === 0) || undefined);
    expect(fs.existsSync(fresh)).toBe(true);
    fs.rmSync(fresh);

    // A sweeper that took a key holds its row while it removes the bytes: a late commit of that key is refused.
    const late = randomUUID();
    await expect(
      stack.sql.begin(async (tx) => {
        await tx`insert into storage.blobs (id, backend, key) values (${late}, 'disk', ${late})`;
        await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: user.id, role: 'authenticated' })}, true)`;
        await tx`set local role authenticated`;
        await tx`select storage.store_whole_file(${late}, 'disk', 'whole/late.bin', null, 1, ${'0'.repeat(64)}, 'text/plain', null)`;
      }),
    ).rejects.toMatchObject({ code: '55000', message: expect.stringMatching(/swept/) });
  });

  test('a small body that stalls past PLINTH_UPLOAD_IDLE_TIMEOUT → 408; one cut short by the client keeps nothing', async () => {
    const v1 = randomBytes(100);
    expect((await store('whole/stalled.bin', v1)).status).toBe(200);
    const send = (cut: boolean) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(stack.port, '127.0.0.1', () => {
          socket.write(`POST /rpc/store_file HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.token}\r\nFile-Path: whole/stalled.bin\r\n` +
            `Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(10)}`);
          if (cut) setTimeout(() => socket.destroy(), 200);
        });
        let answer = '';
        socket.on('data', (d) => (answer += d));
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
      });
    expect(await send(false)).toMatch(/^HTTP\/1\.1 408[\s\S]*stalled/);
    expect(await send(true)).toBe('');
    expect((await retrieve('whole/stalled.bin')).bytes.equals(v1)).toBe(true);
    await eventually('nothing left of either', async () => {
      const [{ n }] = await stack.sql<{ n: number }[]>`select count(*)::int as n from storage.blobs where state <> 'ready'`;
      return n === 0 && fs.readdirSync(tmpDir()).length === 0 || undefined;
    });
  });
});

describe('storage migrations', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.destroy());

  test('20250101000060_storage_quotas: its down step removes the quota column and functions, and up applies again', async () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000060_storage_quotas.sql'), 'utf8');
    const [up, down] = text.split('-- migrate:down');
    // The buckets migration renamed the table this one altered: step back over it first.
    const [bucketsUp, bucketsDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000300_buckets.sql'), 'utf8').split('-- migrate:down');
    const [signedUp, signedDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000301_signed_urls.sql'), 'utf8').split('-- migrate:down');
    const [tusUp, tusDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000320_tus_uploads.sql'), 'utf8').split('-- migrate:down');
    const present = async (tx: typeof stack.sql) =>
      (await tx<{ n: string }[]>`
        select (to_regprocedure('storage.check_quota(bigint)') is not null)::text || ' ' ||
               exists (select 1 from pg_attribute where attrelid = 'storage.objects'::regclass and attname = 'charged_to' and not attisdropped)::text as n`)[0].n;
    class Rollback extends Error {}
    await expect(
      stack.sql.begin(async (tx) => {
        await tx.unsafe(tusDown);
        await tx.unsafe(signedDown);
        await tx.unsafe(bucketsDown);
        expect(await present(tx as never)).toBe('true true');
        await tx.unsafe(down);
        expect(await present(tx as never)).toBe('false false');
        await tx.unsafe(up.replace('-- migrate:up', ''));
        expect(await present(tx as never)).toBe('true true');
        await tx.unsafe(bucketsUp.replace('-- migrate:up', ''));
        await tx.unsafe(signedUp.replace('-- migrate:up', ''));
        await tx.unsafe(tusUp.replace('-- migrate:up', ''));
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
  });

  test('20250101000020_storage: its down step removes public.files and the storage schema, and up applies again', async () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000020_storage.sql'), 'utf8');
    const [up, down] = text.split('-- migrate:down');
    const names = async (tx: typeof stack.sql) =>
      (await tx<{ n: string }[]>`select coalesce(to_regclass('public.files')::text, '-') || ' ' || coalesce(to_regnamespace('storage')::text, '-') as n`)[0].n;
    class Rollback extends Error {}
    await expect(
      stack.sql.begin(async (tx) => {
        expect(await names(tx as never)).toBe('files storage');
        await tx.unsafe(down);
        expect(await names(tx as never)).toBe('- -');
        await tx.unsafe(up.replace('-- migrate:up', ''));
        expect(await names(tx as never)).toBe('files storage');
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
  });

  test('20250101000911_store_whole_file: its down step removes the function, and up applies again', async () => {
    const present = async (tx: typeof stack.sql) =>
      (await tx<{ ok: boolean }[]>`select to_regprocedure('storage.store_whole_file(uuid, text, text, text, bigint, text, text, bigint)') is not null as ok`)[0].ok;
    await downAndUpAgain(stack.sql, '20250101000911_store_whole_file.sql', async (tx) => expect(await present(tx as never)).toBe(false), async (tx) => expect(await present(tx as never)).toBe(true));
  });
});

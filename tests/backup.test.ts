// `plinth backup` and `plinth restore` against the real stack: a populated Plinth (accounts with
// passwords and sessions, files on disk and S3, an entity attachment, realtime publications, app
// rows) is backed up while it runs, restored into fresh ones (disk → S3 → disk, running and
// stopped) and compared; damaged, foreign and newer archives are refused with one line and change
// nothing; a restore killed midway leaves the target as it was; a large file streams with flat
// memory (peak RSS of the CLI process read from /proc).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readTar, TarWriter } from '../sidecar/backup/archive.ts';
import { freePort } from '../sidecar/start/process.ts';
import { eventually, REPO_ROOT, runCli, SAMPLE_APP_MIGRATIONS, startS3rver, startStack, type S3Peer, type Stack } from './harness.ts';

const MiB = 1024 * 1024;
const PASSWORD = 'correct horse battery staple';
const PASSPHRASE = 'a long backup passphrase, kept apart from the archive';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-backup-test-'));
let peer: S3Peer;
let source: Stack;
const stacks: Stack[] = [];

async function stack(env: Record<string, string> = {}): Promise<Stack> {
  const s = await startStack({ env });
  stacks.push(s);
  return s;
}

beforeAll(async () => {
  peer = await startS3rver('plinth-backup');
  source = await stack();
}, 180_000);

afterAll(async () => {
  for (const s of stacks) await s.destroy();
  await peer?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Account {
  email: string;
  id: string;
  token: string;
  refresh: string;
}

async function signup(s: Stack, email: string): Promise<Account> {
  const r = await s.fetch('/rpc/signup', { method: 'POST', json: { email, password: PASSWORD } });
  expect(r.status).toBe(201);
  const body = await r.json();
  const row = Array.isArray(body) ? body[0] : body;
  const [{ id }] = await s.sql<{ id: string }[]>`select id from auth.users where email = ${email}`;
  return { email, id, token: row.token, refresh: row.refresh_token };
}

async function storeFile(s: Stack, token: string, filePath: string, body: Buffer | Readable): Promise<void> {
  const r = await s.fetch('/rpc/store_file', {
    method: 'POST',
    token,
    body: (Buffer.isBuffer(body) ? body : Readable.toWeb(body)) as BodyInit,
    headers: { 'content-type': 'application/octet-stream', 'file-path': filePath },
    ...(Buffer.isBuffer(body) ? {} : { duplex: 'half' }),
  } as RequestInit);
  expect(r.status, await r.clone().text()).toBe(200);
}

async function retrieve(s: Stack, token: string, filePath: string): Promise<Buffer> {
  const r = await s.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`, { token });
  expect(r.status).toBe(200);
  return Buffer.from(await r.arrayBuffer());
}

/** A running target reloads its signing keys on the restore's notification: wait until a token of the source verifies. */
async function untilKeysReloaded(s: Stack, token: string): Promise<void> {
  await eventually('the restored signing keys to be picked up', async () => ((await s.fetch('/todos?limit=1', { token })).status === 200) || undefined, 60_000);
}

/** Every row the restore carries, per table, in a stable order (objects without their backend). */
async function snapshot(s: Stack): Promise<Record<string, unknown[]>> {
  const q = (text: string) => s.sql.unsafe(text).then((rows) => rows.map((r) => JSON.parse(JSON.stringify(r))));
  return {
    users: await q('select * from auth.users order by id'),
    signing_keys: await q('select * from auth.signing_keys order by kid'),
    sessions: await q('select * from auth.sessions order by id'),
    refresh_tokens: await q('select * from auth.refresh_tokens order by 1'),
    // Live versions only, as a backup takes them: a superseded one waiting for the sweeper may or
    // may not be gone yet when the snapshot is taken.
    objects: await q(`select id, key, state, owner_id, size, sha256, content_type, created_at from storage.blobs
                        where state = 'ready' and id not in (select object_id from storage.deletions) order by id`),
    files: await q('select * from public.files order by id'),
    file_links: await q('select * from storage.file_links order by file_id'),
    entity_files: await q('select * from storage.entity_files order by object_id'),
    projects: await q('select * from public.projects order by id'),
    todos: await q('select * from public.todos order by id'),
    posts: await q('select * from public.posts order by id'),
    publications: await q('select table_schema, table_name, key_columns from realtime.publications order by 1, 2'),
  };
}

async function counts(s: Stack) {
  const [row] = await s.sql<{ users: number; objects: number; todos: number; files: number }[]>`
    select (select count(*)::int from auth.users) as users, (select count(*)::int from storage.blobs) as objects,
           (select count(*)::int from public.todos) as todos, (select count(*)::int from public.files) as files`;
  return row;
}

/** The disk store's files (objects and partial uploads) of a stack. */
function storedFiles(s: Stack): string[] {
  const root = path.join(s.dataDir, 'storage');
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
}

/** `plinth` as a child process, with its peak resident memory from /proc (VmHWM). */
function runMeasured(args: string[], env: Record<string, string>, killWhen?: () => boolean) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sidecar', 'cli.ts'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let peakKiB = 0;
  let killed = false;
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
    } catch {
      /* exited */
    }
    try {
      if (killWhen && !killed && killWhen()) {
        killed = true;
        child.kill('SIGKILL');
      }
    } catch {
      /* a file vanished while looking: ask again on the next tick */
    }
  }, 20);
  return new Promise<{ code: number | null; stdout: string; stderr: string; peakMiB: number; killed: boolean }>((resolve) =>
    child.once('exit', (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr, peakMiB: peakKiB / 1024, killed });
    }),
  );
}

let archive = '';
let plainArchive = '';
let alice: Account;
let bob: Account;
const blobs = new Map<string, Buffer>();
let todoId = 0;
let attachment = Buffer.alloc(0);

describe('backup and restore', () => {
  let before: Record<string, unknown[]>;

  test('a running, populated Plinth is backed up to an encrypted archive written 0600', async () => {
    alice = await signup(source, `alice-${randomBytes(3).toString('hex')}@example.test`);
    bob = await signup(source, `bob-${randomBytes(3).toString('hex')}@example.test`);
    const [project] = await (await source.fetch('/projects', { method: 'POST', token: alice.token, json: { name: 'garden' }, headers: { prefer: 'return=representation' } })).json();
    for (const title of ['dig', 'plant', 'water\nwith "quotes", tabs\tand \\ backslashes, é']) {
      const r = await source.fetch('/todos', { method: 'POST', token: alice.token, json: { title, project_id: project.id }, headers: { prefer: 'return=representation' } });
      expect(r.status).toBe(201);
      todoId = (await r.json())[0].id;
    }
    expect((await source.fetch('/posts', { method: 'POST', token: bob.token, json: { title: 'hello', published: true } })).status).toBe(201);
    // A Fine-style policy row: restored as a row and as the real policy it stands for.
    await source.sql`insert into public._policies (table_name, action, using_clause) values ('todos', 'select', ${'user_id = $$CURRENT_USER$$'})`;
    // A table whose rows outgrow the COPY stream's buffer, followed by more tables.
    await source.sql`insert into public.projects (user_id, name) select ${bob.id}, 'project number ' || g from generate_series(1, 5000) g`;
    for (const [who, name, size] of [[alice, 'notes/empty.txt', 0], [alice, 'notes/a.bin', 70_000], [bob, 'photo.jpg', 3 * MiB]] as const) {
      const bytes = randomBytes(size);
      blobs.set(`${who.email}:${name}`, bytes);
      await storeFile(source, who.token, name, bytes);
    }
    // An overwrite leaves a superseded object for the sweeper: it is not part of the backup.
    const v2 = randomBytes(1000);
    await storeFile(source, alice.token, 'notes/a.bin', v2);
    blobs.set(`${alice.email}:notes/a.bin`, v2);
    attachment = randomBytes(5000);
    const form = new FormData();
    form.append('entity', JSON.stringify({ table: 'todos', id: todoId, field: 'attachment' }));
    form.append('file', new Blob([attachment]), 'plan.pdf');
    expect((await source.fetch('/storage/upload', { method: 'POST', body: form, token: alice.token })).status).toBe(200);

    archive = path.join(work, 'source.tar.enc');
    const r = await runCli(['backup', '--out', archive], { ...source.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(r.stderr).not.toMatch(/plinth:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backup written to .*: \d+ tables, \d+ rows, 4 files .*encrypted/);
    expect(fs.statSync(archive).mode & 0o777).toBe(0o600);
    // Encrypted: no plaintext of the rows in the file.
    expect(fs.readFileSync(archive).includes(Buffer.from(alice.email))).toBe(false);
    before = await snapshot(source);

    plainArchive = path.join(work, 'source.tar');
    const plain = await runCli(['backup', '--out', plainArchive], source.env);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toMatch(/not encrypted/);
    expect(fs.statSync(plainArchive).mode & 0o777).toBe(0o600);
    const names: string[] = [];
    for await (const m of readTar(fs.createReadStream(plainArchive))) names.push(m.name);
    expect(names[0]).toBe('plinth-backup.json');
    expect(names.at(-1)).toBe('manifest.json');
    expect(names.filter((n) => n.startsWith('objects/'))).toHaveLength(4);

    const rowsOnly = path.join(work, 'rows-only.tar');
    expect((await runCli(['backup', '--out', rowsOnly, '--no-files'], source.env)).code).toBe(0);
    const rowNames: string[] = [];
    for await (const m of readTar(fs.createReadStream(rowsOnly))) rowNames.push(m.name);
    expect(rowNames.filter((n) => n.startsWith('objects/'))).toEqual([]);
    expect(rowNames.filter((n) => n.startsWith('data/')).length).toBeGreaterThan(5);
    // An existing file is never overwritten.
    const again = await runCli(['backup', '--out', rowsOnly], source.env);
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toMatch(/^plinth: .*rows-only\.tar already exists/);
  }, 120_000);

  async function checkRestored(target: Stack, expected: Record<string, unknown[]>, opts: { refresh: boolean }) {
    expect(await snapshot(target)).toEqual(expected);
    // Passwords: users log in on the restored Plinth.
    for (const who of [alice, bob]) {
      const r = await target.fetch('/rpc/login', { method: 'POST', json: { email: who.email, password: PASSWORD } });
      expect(r.status).toBe(200);
    }
    // Tokens issued by the source verify with the restored keys (a running target reloads them).
    await untilKeysReloaded(target, alice.token);
    const mine = await target.fetch('/todos?select=title&order=id', { token: alice.token });
    expect(mine.status).toBe(200);
    expect((await mine.json()).map((t: { title: string }) => t.title)).toEqual(['dig', 'plant', 'water\nwith "quotes", tabs\tand \\ backslashes, é']);
    // (Once only: a refresh token spent here is spent in every later backup of this target.)
    if (opts.refresh) expect((await target.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: bob.refresh } })).status).toBe(200);
    for (const [k, bytes] of blobs) {
      const [email, name] = k.split(/:(.*)/s);
      const who = email === alice.email ? alice : bob;
      expect(sha256(await retrieve(target, who.token, name))).toBe(sha256(bytes));
    }
    const got = await target.fetch(`/storage/download/todos/${todoId}/attachment/plan.pdf`, { token: alice.token });
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).equals(attachment)).toBe(true);
    // The _policies row is in force again: its policy exists on the table.
    const policies = await target.sql<{ n: number }[]>`select count(*)::int as n from pg_policies where tablename = 'todos' and policyname like '\_policies\_%'`;
    expect(policies[0].n).toBe(1);
    // Realtime: the published tables log changes again (decoded: they are in the publication, without capture triggers).
    const [{ n, triggers }] = await target.sql<{ n: number; triggers: number }[]>`
      select (select count(*)::int from pg_publication_tables where pubname = 'plinth_realtime') as n,
             (select count(*)::int from pg_trigger where tgname = 'plinth_realtime_insert') as triggers`;
    expect({ n, triggers }).toEqual({ n: 2, triggers: 0 });
  }

  let onS3: Stack;
  test('restores into a running Plinth on S3: same rows, same bytes, passwords and tokens work', async () => {
    onS3 = await stack(peer.env);
    const r = await runCli(['restore', archive], { ...onS3.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(r.stderr).not.toMatch(/plinth:/);
    expect(r.code).toBe(0);
    const [{ backends }] = await onS3.sql<{ backends: string[] }[]>`select array_agg(distinct backend) as backends from storage.blobs`;
    expect(backends).toEqual(['s3']);
    await checkRestored(onS3, before, { refresh: true });
    // New rows continue the sequences after the restored ones.
    const r2 = await onS3.fetch('/todos', { method: 'POST', token: alice.token, json: { title: 'after' }, headers: { prefer: 'return=representation' } });
    expect(r2.status).toBe(201);
    expect((await r2.json())[0].id).toBeGreaterThan(todoId);
    await onS3.sql`delete from public.todos where title = 'after'`;
  }, 180_000);

  test('backs up from S3 and restores into a stopped Plinth on disk', async () => {
    const fromS3 = path.join(work, 'from-s3.tar');
    const expected = await snapshot(onS3);
    // Through DATABASE_URL, as against an external server.
    const b = await runCli(['backup', '--out', fromS3], { ...onS3.env, DATABASE_URL: onS3.databaseUrl });
    expect(b.code, b.stderr).toBe(0);
    const onDisk = await stack();
    await onDisk.disconnect();
    expect(await onDisk.stop()).toBe(0);
    const r = await runCli(['restore', fromS3], onDisk.env);
    expect(r.stderr).not.toMatch(/plinth:/);
    expect(r.code).toBe(0);
    await onDisk.launch();
    await checkRestored(onDisk, expected, { refresh: false });
    expect(storedFiles(onDisk).filter((f) => !f.endsWith('.part'))).toHaveLength(4);
  }, 180_000);

  test('restores into a data directory that never ran Plinth (every migration replayed in the restore)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-test-'));
    fs.chmodSync(dataDir, 0o755);
    const env = { PLINTH_DATA_DIR: dataDir, PLINTH_PG_PORT: String(await freePort()), PLINTH_APP_MIGRATIONS: source.env.PLINTH_APP_MIGRATIONS, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE };
    const r = await runCli(['restore', archive], env);
    expect(r.stderr).not.toMatch(/plinth:/);
    expect(r.code).toBe(0);
    const fresh = await startStack({ dataDir });
    stacks.push(fresh);
    await checkRestored(fresh, before, { refresh: false });
    await fresh.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 180_000);
});

describe('migrations', () => {
  test('a migration the target has and the backup lacks is rolled back in the restore', async () => {
    const extra = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-extra-migrations-'));
    fs.writeFileSync(path.join(extra, '20990101000000_backup_extra.sql'), '-- migrate:up\nCREATE TABLE public.backup_extra (id int PRIMARY KEY);\n\n-- migrate:down\nDROP TABLE public.backup_extra;\n');
    const target = await startStack({ appMigrations: [SAMPLE_APP_MIGRATIONS, extra] });
    stacks.push(target);
    expect((await target.sql`select to_regclass('public.backup_extra') as t`)[0].t).not.toBe(null);
    const r = await runCli(['restore', plainArchive], target.env);
    expect(r.code, r.stderr).toBe(0);
    expect((await target.sql`select to_regclass('public.backup_extra') as t`)[0].t).toBe(null);
    expect(await target.sql`select version from plinth.schema_migrations where version = '20990101000000'`).toEqual([]);
    expect((await counts(target)).users).toBe(2);
    fs.rmSync(extra, { recursive: true, force: true });
  }, 180_000);
});

describe('bad input changes nothing', () => {
  let empty: Stack;
  beforeAll(async () => {
    empty = await stack();
  }, 120_000);

  async function refused(file: string, pattern: RegExp, env: Record<string, string> = {}) {
    const r = await runCli(['restore', file], { ...empty.env, ...env });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(await counts(empty)).toEqual({ users: 0, objects: 0, todos: 0, files: 0 });
    expect(storedFiles(empty)).toEqual([]);
  }

  /** A copy of the plain archive with members changed, and a manifest that agrees with them. */
  async function edited(change: (name: string, body: Buffer, header: { tables: { schema: string; name: string; columns: string[] }[] }) => Buffer): Promise<string> {
    const out = path.join(work, `edited-${randomBytes(4).toString('hex')}.tar`);
    const sink = fs.createWriteStream(out);
    const tar = new TarWriter(sink);
    let header: { tables: { schema: string; name: string; columns: string[] }[] } | undefined;
    const sums: Record<string, { size: number; sha256: string }> = {};
    for await (const m of readTar(fs.createReadStream(plainArchive))) {
      const parts: Buffer[] = [];
      for await (const c of m.body) parts.push(c);
      let body: Buffer = Buffer.concat(parts);
      if (m.name === 'plinth-backup.json') header = JSON.parse(body.toString());
      body = change(m.name, body, header!);
      if (m.name === 'manifest.json') {
        const manifest = JSON.parse(body.toString());
        manifest.members = { ...manifest.members, ...sums };
        body = Buffer.from(JSON.stringify(manifest));
      } else sums[m.name] = { size: body.length, sha256: sha256(body) };
      await tar.add(m.name, body.length, body);
    }
    await tar.finish();
    await new Promise((r) => sink.end(r));
    return out;
  }

  const withHeader = (change: (h: Record<string, unknown>) => void) =>
    edited((name, body) => {
      if (name !== 'plinth-backup.json') return body;
      const h = JSON.parse(body.toString());
      change(h);
      return Buffer.from(JSON.stringify(h));
    });

  test('a truncated archive', async () => {
    for (const [file, env] of [[plainArchive, {}], [archive, { PLINTH_BACKUP_PASSPHRASE: PASSPHRASE }]] as const) {
      const cut = path.join(work, `cut-${path.basename(file)}`);
      const bytes = fs.readFileSync(file);
      fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.9)));
      await refused(cut, /^plinth: archive is truncated/, env);
    }
  }, 120_000);

  test('a corrupted archive: a flipped byte in a file, in a row, in the encrypted stream', async () => {
    const bytes = fs.readFileSync(plainArchive);
    // The last bytes of bob's photo: deep inside an object member.
    const inObject = Buffer.from(bytes);
    const photo = blobs.get(`${bob.email}:photo.jpg`)!;
    const at = inObject.indexOf(photo.subarray(photo.length - 64));
    expect(at).toBeGreaterThan(0);
    inObject[at + 10] ^= 1;
    fs.writeFileSync(path.join(work, 'bad-object.tar'), inObject);
    await refused(path.join(work, 'bad-object.tar'), /^plinth: checksum mismatch: object [0-9a-f-]{36}/);

    const inRow = Buffer.from(bytes);
    const title = inRow.indexOf(Buffer.from('plant'));
    inRow[title] = 'P'.charCodeAt(0);
    fs.writeFileSync(path.join(work, 'bad-row.tar'), inRow);
    await refused(path.join(work, 'bad-row.tar'), /^plinth: checksum mismatch: data\/\d+\.\d+/);

    const enc = Buffer.from(fs.readFileSync(archive));
    enc[Math.floor(enc.length / 2)] ^= 0x40;
    fs.writeFileSync(path.join(work, 'bad.tar.enc'), enc);
    await refused(path.join(work, 'bad.tar.enc'), /^plinth: archive is corrupted: encrypted chunk \d+ failed authentication/, { PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });

    fs.writeFileSync(path.join(work, 'not-a-backup.tar'), randomBytes(4096));
    await refused(path.join(work, 'not-a-backup.tar'), /^plinth: archive is corrupted: a tar header checksum/);
  }, 120_000);

  test('a wrong or missing passphrase', async () => {
    await refused(archive, /^plinth: wrong passphrase/, { PLINTH_BACKUP_PASSPHRASE: 'not the passphrase' });
    await refused(archive, /^plinth: archive is encrypted: set PLINTH_BACKUP_PASSPHRASE/, { PLINTH_BACKUP_PASSPHRASE: '' });
  }, 60_000);

  test('a backup from a newer Plinth, or one whose migration is missing here', async () => {
    await refused(await withHeader((h) => (h.plinthVersion = '99.0.0')), /^plinth: backup is from a newer Plinth \(99\.0\.0/);
    await refused(
      await withHeader((h) => (h.migrations as { version: string; file: string; source: string }[]).push({ version: '29990101000000', file: '29990101000000_from_the_future.sql', source: 'app', sha256: '0'.repeat(64) } as never)),
      /^plinth: migration 29990101000000_from_the_future\.sql \(listed in the backup\) is missing from the app's migrations folder/,
    );
  }, 60_000);

  test('rows that break a foreign key, with checksums that agree, are refused', async () => {
    const forged = await edited((name, body, header) => {
      const m = /^data\/(\d+)\.0$/.exec(name);
      const table = m && header.tables[Number(m[1])];
      if (!table || `${table.schema}.${table.name}` !== 'public.todos') return body;
      const col = table.columns.indexOf('user_id');
      const lines = body.toString().split('\n');
      const cells = lines[0].split('\t');
      cells[col] = '00000000-0000-4000-8000-000000000000';
      lines[0] = cells.join('\t');
      return Buffer.from(lines.join('\n'));
    });
    await refused(forged, /^plinth: archive is corrupted: rows of public\.todos break foreign key todos_user_id_fkey$/);
  }, 60_000);

  test('a non-empty target without --force; with --force it is replaced', async () => {
    const r = await runCli(['restore', plainArchive], source.env);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^plinth: the target Plinth is not empty \(2 users, 4 stored objects, rows in public\._policies, rows in public\.files, rows in public\.posts, rows in public\.projects, rows in public\.todos\): .*--force/);
    const forced = await runCli(['restore', plainArchive, '--force'], source.env);
    expect(forced.stderr).not.toMatch(/plinth:/);
    expect(forced.code).toBe(0);
    expect((await counts(source)).users).toBe(2);
    expect(sha256(await retrieve(source, bob.token, 'photo.jpg'))).toBe(sha256(blobs.get(`${bob.email}:photo.jpg`)!));
  }, 120_000);
});

describe('large files and interruptions', () => {
  // 256 MiB rather than 1 GiB: the same streaming path, and minutes less on a shared two-core machine.
  const SIZE = 256 * MiB;
  let big: Stack;
  let bigArchive = '';
  let bigSha = '';
  let owner: Account;

  beforeAll(async () => {
    big = await stack();
    owner = await signup(big, `big-${randomBytes(3).toString('hex')}@example.test`);
    const hash = createHash('sha256');
    let left = SIZE;
    const gen = Readable.from(
      (function* () {
        while (left > 0) {
          const chunk = randomBytes(Math.min(MiB, left));
          left -= chunk.length;
          hash.update(chunk);
          yield chunk;
        }
      })(),
    );
    await storeFile(big, owner.token, 'big.bin', gen);
    bigSha = hash.digest('hex');
  }, 300_000);

  test('a 256 MiB file is backed up and restored with flat memory', async () => {
    // The same command without the file's bytes: what Node, tsx, the SDKs and the rows cost.
    const rowsOnly = await runMeasured(['backup', '--no-files', '--out', path.join(work, 'big-rows.tar.enc')], { ...big.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(rowsOnly.code, rowsOnly.stderr).toBe(0);
    bigArchive = path.join(work, 'big.tar.enc');
    const b = await runMeasured(['backup', '--out', bigArchive], { ...big.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(b.code, b.stderr).toBe(0);
    expect(fs.statSync(bigArchive).size).toBeGreaterThan(SIZE);
    const target = await stack();
    const r = await runMeasured(['restore', bigArchive], { ...target.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(r.code, r.stderr).toBe(0);
    await untilKeysReloaded(target, owner.token);
    const got = await retrieve(target, owner.token, 'big.bin');
    expect(got.length).toBe(SIZE);
    expect(sha256(got)).toBe(bigSha);
    console.log(`peak RSS: backup ${b.peakMiB.toFixed(0)} MiB (${rowsOnly.peakMiB.toFixed(0)} MiB without the file), restore ${r.peakMiB.toFixed(0)} MiB, for a ${SIZE / MiB} MiB file`);
    // A file held in memory anywhere would add its 256 MiB; streaming adds buffers and garbage
    // not yet collected, well under 100 MiB.
    expect(b.peakMiB).toBeLessThan(rowsOnly.peakMiB + 100);
    expect(r.peakMiB).toBeLessThan(rowsOnly.peakMiB + 100);
  }, 600_000);

  test('a restore killed midway leaves the target as it was, and a second one succeeds', async () => {
    const target = await stack();
    const tmp = path.join(target.dataDir, 'storage', 'tmp');
    const r = await runMeasured(['restore', bigArchive], { ...target.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE }, () =>
      fs.existsSync(tmp) && fs.readdirSync(tmp).some((f) => fs.statSync(path.join(tmp, f)).size > 16 * MiB),
    );
    expect(r.killed).toBe(true);
    expect(r.code).toBe(null);
    // The transaction died with its connection.
    for (let i = 0; i < 100; i++) {
      const [{ n }] = await target.sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = 'plinth' and state like 'idle in transaction%'`;
      if (n === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const [state] = await target.sql<{ ready: number; writing: string[] }[]>`
      select count(*) filter (where state = 'ready')::int as ready, coalesce(array_agg(key) filter (where state = 'writing'), '{}') as writing from storage.blobs`;
    expect({ ...(await counts(target)), objects: state.ready }).toEqual({ users: 0, objects: 0, todos: 0, files: 0 });
    // The bytes it had written are reserved as an interrupted upload: the sweeper removes them.
    const leftover = storedFiles(target).map((f) => f.replace(/\.part$/, ''));
    expect(leftover.length).toBeGreaterThan(0);
    for (const key of leftover) expect(state.writing).toContain(key);
    await target.stop();
    target.env.PLINTH_SWEEP_AGE = '0';
    await target.launch();
    // The start-up sweep runs in the background of the start: wait for it, however slow.
    await eventually('the start-up sweep to remove the interrupted restore\'s bytes', async () => storedFiles(target).length === 0 || undefined, 60_000);
    expect((await counts(target)).objects).toBe(0);
    expect((await target.fetch('/rpc/login', { method: 'POST', json: { email: owner.email, password: PASSWORD } })).status).toBe(400);
    const again = await runCli(['restore', bigArchive], { ...target.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(again.code, again.stderr).toBe(0);
    await untilKeysReloaded(target, owner.token);
    expect(sha256(await retrieve(target, owner.token, 'big.bin'))).toBe(bigSha);
  }, 600_000);

  test('a scheduled backup cut short by a stop is recorded as cut short, and leaves no partial archive', async () => {
    const dir = path.join(work, 'cut-by-stop');
    const schedule = { PLINTH_BACKUP_SCHEDULE: '*/2 * * * * *', PLINTH_BACKUP_TO: dir, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE };
    Object.assign(big.env, schedule);
    try {
      await big.stop();
      await big.launch();
      // Stop while a run has written less than 32 MiB of its archive (of over 256 MiB).
      const early = () =>
        fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.partial') && (fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.size ?? Infinity) < 32 * MiB);
      for (const deadline = Date.now() + 60_000; !early(); ) {
        if (Date.now() > deadline) throw new Error('no scheduled backup started writing within 60 s');
        await new Promise((r) => setTimeout(r, 5));
      }
      await big.stop();
    } finally {
      for (const name of Object.keys(schedule)) delete big.env[name];
    }
    await big.launch();
    const [last] = await big.sql<{ ok: boolean | null; error: string | null; finished_at: Date | null }[]>`
      select ok, error, finished_at from plinth.backup_runs order by tick desc limit 1`;
    expect(last).toMatchObject({ ok: false, error: 'cut short: Plinth stopped during the run (its partial archive was removed)' });
    expect(last.finished_at).not.toBeNull();
    expect(fs.readdirSync(dir)).toEqual([]);
  }, 300_000);
});

describe('scheduled backups', () => {
  async function finishedRuns(s: Stack, atLeast: number) {
    // Up to two minutes: a tick is skipped while a run is still going, and runs are slow under load.
    for (let i = 0; i < 1200; i++) {
      const rows = await s.sql<{ tick: Date; claimed_by: string; ok: boolean; location: string; error: string | null }[]>`
        select tick, claimed_by, ok, location, error from plinth.backup_runs where finished_at is not null order by tick`;
      if (rows.length >= atLeast) return rows;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`fewer than ${atLeast} scheduled backups finished`);
  }

  test('two sidecars on one database run each tick once; old archives are pruned; /health shows the last run', async () => {
    const dir = path.join(work, 'scheduled');
    const env = { PLINTH_BACKUP_SCHEDULE: '*/2 * * * * *', PLINTH_BACKUP_TO: dir, PLINTH_BACKUP_KEEP: '2', PLINTH_BACKUP_PASSPHRASE: PASSPHRASE };
    const first = await stack(env);
    const second = await stack({ ...env, DATABASE_URL: first.databaseUrl });
    await signup(first, `scheduled-${randomBytes(3).toString('hex')}@example.test`);
    const signedUp = new Date();
    const runs = await finishedRuns(first, 4);
    // The archives kept at the end (the newest two) must postdate the sign-up: wait for two such runs.
    await eventually('two scheduled backups after the sign-up', async () => {
      const [{ n }] = await first.sql<{ n: number }[]>`select count(*)::int as n from plinth.backup_runs where ok and started_at > ${signedUp}`;
      return n >= 2 || undefined;
    }, 120_000);
    expect(runs.filter((r) => !r.ok)).toEqual([]);
    // One archive per tick, whichever sidecar claimed it, and never two for one tick.
    expect(new Set(runs.map((r) => r.location)).size).toBe(runs.length);
    await second.stop();
    await first.stop();
    const archives = fs.readdirSync(dir).filter((n) => /^plinth-backup-\d{8}T\d{6}Z\.tar\.enc$/.test(n));
    expect(archives.length).toBe(2);
    expect(fs.readdirSync(dir).filter((n) => n.includes('partial'))).toEqual([]);
    expect(fs.statSync(path.join(dir, archives[1])).mode & 0o777).toBe(0o600);

    // The stops above cut whatever run was in progress (recorded as failed): the run /health shows
    // is one the relaunched sidecar made, once it has finished.
    const relaunched = new Date();
    await first.launch();
    const health = await eventually('/health to show a finished run of the relaunched sidecar', async () => {
      const h = await (await first.fetch('/health')).json();
      return h.backup?.last && new Date(h.backup.last.at) > relaunched && h.backup.last.result !== 'running' ? h : undefined;
    }, 60_000);
    expect(health.backup).toMatchObject({ status: 'ok', schedule: '*/2 * * * * *', last: { result: 'ok' } });
    await first.stop();
    // The newest archive restores.
    const target = await stack();
    const newest = fs.readdirSync(dir).filter((n) => /^plinth-backup-.*\.tar\.enc$/.test(n)).sort().at(-1)!;
    const r = await runCli(['restore', path.join(dir, newest)], { ...target.env, PLINTH_BACKUP_PASSPHRASE: PASSPHRASE });
    expect(r.code, r.stderr).toBe(0);
    expect((await counts(target)).users).toBe(1);
  }, 300_000);

  test('to an S3 bucket, keeping PLINTH_BACKUP_KEEP archives', async () => {
    const env = { PLINTH_BACKUP_SCHEDULE: '*/2 * * * * *', PLINTH_BACKUP_TO: `s3://${peer.bucket}/nightly`, PLINTH_BACKUP_KEEP: '1', S3_ENDPOINT: peer.endpoint, S3_FORCE_PATH_STYLE: 'true', S3_ACCESS_KEY_ID: 'S3RVER', S3_SECRET_ACCESS_KEY: 'S3RVER' };
    const s = await stack(env);
    const runs = await finishedRuns(s, 3);
    expect(runs.filter((r) => !r.ok)).toEqual([]);
    expect(runs[0].location).toMatch(new RegExp(`^s3://${peer.bucket}/nightly/plinth-backup-\\d{8}T\\d{6}Z\\.tar$`));
    await s.stop();
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const listed = await peer.client.send(new ListObjectsV2Command({ Bucket: peer.bucket, Prefix: 'nightly/' }));
    // One archive is kept: the newest run seen above, or one that finished between that look and the stop.
    const kept = (listed.Contents ?? []).map((o) => o.Key!);
    expect(kept).toHaveLength(1);
    expect(kept[0] >= runs.at(-1)!.location.replace(`s3://${peer.bucket}/`, '')).toBe(true);
    expect(kept[0]).toMatch(/^nightly\/plinth-backup-\d{8}T\d{6}Z\.tar$/);
  }, 300_000);
});

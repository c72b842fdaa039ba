// `plinth start` and the CLI: clear one-line failures, clean stops, restarts, migrations.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../sidecar/core/config.ts';
import { withDatabase } from '../sidecar/start/database.ts';
import { freePort, isAlive } from '../sidecar/start/process.ts';
import { eventually, runCli, SAMPLE_APP_MIGRATIONS, startStack, type Stack } from './harness.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A copy of the sample app's migrations that a test may add files to. */
function appMigrationsCopy(): string {
  const dir = tempDir('plinth-app-');
  for (const f of fs.readdirSync(SAMPLE_APP_MIGRATIONS)) fs.copyFileSync(path.join(SAMPLE_APP_MIGRATIONS, f), path.join(dir, f));
  return dir;
}

async function track(stack: Stack) {
  cleanups.push(() => stack.destroy());
  return stack;
}

/** The pids of the embedded postgres and of PostgREST, from their pid files. */
function childPids(stack: Stack): { postgres: number; postgrest: number } {
  const postgres = Number(fs.readFileSync(path.join(stack.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const postgrest = Number(fs.readFileSync(path.join(stack.dataDir, 'plinth.pid'), 'utf8').trim().split(/\s+/)[1]);
  return { postgres, postgrest };
}

describe('start and stop', () => {
  test('SIGTERM stops every child; a second start on the same data directory keeps the data', async () => {
    const stack = await track(await startStack());
    const user = await stack.createUser();
    await stack.fetch('/todos', { method: 'POST', token: user.token, json: { title: 'survives a restart' } });
    const pids = childPids(stack);
    expect(isAlive(pids.postgres) && isAlive(pids.postgrest)).toBe(true);

    expect(await stack.stop()).toBe(0);
    expect(isAlive(pids.postgres)).toBe(false);
    expect(isAlive(pids.postgrest)).toBe(false);
    expect(fs.existsSync(path.join(stack.dataDir, 'plinth.pid'))).toBe(false);

    await stack.launch();
    const r = await stack.fetch('/todos', { token: user.token });
    expect((await r.json()).map((t: { title: string }) => t.title)).toEqual(['survives a restart']);
    expect(stack.output).not.toMatch(/First start/); // keys are printed on the first start only
  });

  test('after a SIGKILL, the next start cleans up the orphans and works', async () => {
    const stack = await track(await startStack());
    const pids = childPids(stack);
    await stack.kill();
    expect(isAlive(pids.postgres)).toBe(true); // the orphan a crash leaves behind
    await stack.launch();
    expect(isAlive(pids.postgrest)).toBe(false);
    expect((await stack.fetch('/health')).status).toBe(200);
  });

  test('a second Plinth on a data directory in use is refused', async () => {
    const stack = await track(await startStack());
    const second = await startStack({ dataDir: stack.dataDir, expectFailure: true });
    expect(second.exitCode).toBe(1);
    expect(second.output).toMatch(new RegExp(`plinth: another Plinth \\(pid ${stack.proc.pid}\\) is running on ${stack.dataDir}`));
    expect((await stack.fetch('/health')).status).toBe(200);
  });

  test('a port in use is reported in one line, with a non-zero exit', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    cleanups.push(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    const stack = await track(await startStack({ env: { PORT: String(port) }, expectFailure: true }));
    expect(stack.exitCode).toBe(1);
    expect(stack.output.trim()).toBe(`plinth: port ${port} on 127.0.0.1 is in use: stop what holds it or set PORT`);
  });

  test('an unreachable database is reported without its password', async () => {
    const port = await freePort();
    const stack = await track(
      await startStack({ env: { DATABASE_URL: `postgres://postgres:s3cret-pw@127.0.0.1:${port}/app`, PLINTH_DB_WAIT: '1' }, expectFailure: true }),
    );
    expect(stack.exitCode).toBe(1);
    expect(stack.output).toMatch(new RegExp(`plinth: database 127.0.0.1:${port}/app is unreachable: .*ECONNREFUSED`));
    expect(stack.output).not.toMatch(/s3cret-pw/);
  });

  test('GET /health reports database, PostgREST and storage', async () => {
    const stack = await track(await startStack());
    const r = await stack.fetch('/health');
    expect(r.status).toBe(200);
    const body = await r.json();
    expect(body.status).toBe('ok');
    expect(body.database.status).toBe('ok');
    expect(body.postgrest.status).toBe('ok');
    expect(body.storage?.status).toBe('ok');
  });
});

describe('migrations', () => {
  test('a failing migration leaves the database as it was and says which file and statement failed', async () => {
    const app = appMigrationsCopy();
    fs.writeFileSync(path.join(app, '20250801000001_widgets.sql'), '-- migrate:up\ncreate table public.widgets (id int);\n\n-- migrate:down\ndrop table public.widgets;\n');
    fs.writeFileSync(
      path.join(app, '20250801000002_broken.sql'),
      '-- migrate:up\ncreate table public.half_done (id int);\ninsert into public.no_such_table values (1);\n\n-- migrate:down\ndrop table public.half_done;\n',
    );
    const stack = await track(await startStack({ appMigrations: app, expectFailure: true }));
    expect(stack.exitCode).toBe(1);
    expect(stack.output).toMatch(
      /plinth: migration 20250801000002_broken\.sql failed at line 3 \(insert into public\.no_such_table values \(1\);\): relation "public\.no_such_table" does not exist \[42P01\]/,
    );

    // Nothing of the failing file is there; the file before it was applied.
    const state = await withDatabase(loadConfig(stack.env), async (sql) => ({
      widgets: (await sql`select to_regclass('public.widgets') is not null as ok`)[0].ok,
      halfDone: (await sql`select to_regclass('public.half_done') is not null as ok`)[0].ok,
      versions: (await sql`select version from plinth.schema_migrations order by version`).map((r) => r.version).slice(-1),
    }));
    expect(state).toEqual({ widgets: true, halfDone: false, versions: ['20250801000001'] });
    const status = await runCli(['migrate', 'status'], stack.env);
    expect(status.stdout).toMatch(/\[ \] 20250801000002_broken\.sql/);

    // Fixed, it applies on the next start.
    fs.writeFileSync(path.join(app, '20250801000002_broken.sql'), '-- migrate:up\ncreate table public.half_done (id int);\n\n-- migrate:down\ndrop table public.half_done;\n');
    await stack.launch();
    expect(await stack.sql`select to_regclass('public.half_done') is not null as ok`).toEqual([{ ok: true }]);
  });

  test('plinth migrate serves a new table without restarting PostgREST', async () => {
    const app = appMigrationsCopy();
    const stack = await track(await startStack({ appMigrations: app }));
    const before = await stack.fetch('/notes', { apikey: stack.serviceKey });
    expect(before.status).toBe(404);

    const made = await runCli(['new', 'create_notes'], stack.env);
    expect(made.code).toBe(0);
    const file = /created (.+\.sql)/.exec(made.stdout)![1];
    expect(fs.readFileSync(file, 'utf8')).toBe('-- migrate:up\n\n\n-- migrate:down\n\n');
    fs.writeFileSync(file, '-- migrate:up\ncreate table public.notes (id int primary key, body text);\ninsert into public.notes values (1, \'hi\');\n-- migrate:down\ndrop table public.notes;\n');

    const migrated = await runCli(['migrate'], stack.env);
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/applied \d+_create_notes\.sql/);
    // PostgREST reloads its schema cache in the background: on a loaded machine that takes seconds.
    const r = await eventually('PostgREST to serve the new table', async () => {
      const res = await stack.fetch('/notes', { apikey: stack.serviceKey });
      return res.status === 200 ? res : undefined;
    });
    expect(await r.json()).toEqual([{ id: 1, body: 'hi' }]);
  });

  test('rolling back every migration leaves an empty database', async () => {
    const stack = await track(await startStack());
    await stack.createUser();
    await stack.stop();
    await stack.disconnect();
    const r = await runCli(['migrate', 'rollback', '--all'], stack.env);
    expect(r.code, r.stderr).toBe(0);

    const leftovers = await withDatabase(loadConfig(stack.env), async (sql) => ({
      schemas: (await sql`select nspname from pg_namespace where nspname not like 'pg\_%' and nspname not in ('information_schema', 'public', 'plinth') order by 1`).map((r) => r.nspname),
      publicObjects: (await sql`select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`).map((r) => r.relname),
      publicFunctions: (await sql`select proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'`).map((r) => r.proname),
      roles: (await sql`select rolname from pg_roles where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')`).map((r) => r.rolname),
      applied: (await sql`select count(*)::int as n from plinth.schema_migrations`)[0].n,
    }));
    expect(leftovers).toEqual({ schemas: [], publicObjects: [], publicFunctions: [], roles: [], applied: 0 });

    await stack.launch(); // and everything applies again from scratch
    expect((await stack.fetch('/todos', { apikey: stack.serviceKey })).status).toBe(200);
  });
});

describe('the plinth command', () => {
  test.each(['start', 'keys', 'migrate', 'new'])('plinth %s --help', async (cmd) => {
    const r = await runCli([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: plinth ${cmd}`));
  });

  test('plinth with no command prints usage and exits non-zero', async () => {
    const r = await runCli([]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/Commands:/);
  });

  test('plinth keys prints the keys the running stack accepts', async () => {
    const stack = await track(await startStack());
    const r = await runCli(['keys', '--json'], stack.env);
    const keys = JSON.parse(r.stdout);
    expect(keys.anonKey).toBe(stack.anonKey);
    expect((await stack.fetch('/posts', { apikey: keys.serviceKey })).status).toBe(200);
  });
});

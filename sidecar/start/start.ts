// `plinth start`: PostgreSQL (embedded or external), migrations, PostgREST, then the sidecar.
import fs from 'node:fs';
import { addSigningKey, KeyRing } from '../auth/keys.js';
import type { Config } from '../config.js';
import type { Plinth } from '../context.js';
import { MigrationError, migrateUpLocked } from '../db/migrations.js';
import { connect } from '../db/sql.js';
import { buildServer } from '../http/server.js';
import type { Logger } from '../log.js';
import { waitForDatabase } from './database.js';
import { startEmbeddedPostgres, type RunningPostgres } from './embedded-postgres.js';
import { StartError, assertPortFree, lockDataDir, recordChild, stopOrphans } from './process.js';
import { authenticatorPassword, authenticatorUrl, setAuthenticatorPassword, startPostgrest, type RunningPostgrest } from './postgrest.js';

export interface Running {
  url: string;
  stop(): Promise<void>;
}

export async function start(config: Config, log: Logger): Promise<Running> {
  const cleanup: Array<() => Promise<void> | void> = [];
  const stop = async () => {
    for (const step of cleanup.reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn(`while stopping: ${(err as Error).message}`);
      }
    }
    cleanup.length = 0;
  };

  try {
    fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
    await assertPortFree(config.port, config.host, `port ${config.port} on ${config.host} is in use: stop what holds it or set PORT`);
    const lock = lockDataDir(config.dataDir);
    cleanup.push(() => lock.release());
    await stopOrphans(lock.orphans);

    let databaseUrl = config.database.url;
    if (!databaseUrl) {
      const pg: RunningPostgres = await startEmbeddedPostgres(config.dataDir, config.database.embeddedPort, log.warn);
      cleanup.push(() => pg.stop());
      databaseUrl = pg.url;
      log.info(`embedded PostgreSQL 17 on 127.0.0.1:${config.database.embeddedPort}, data in ${config.dataDir}/pg`);
    }
    const sql = connect(databaseUrl, config.database.poolSize);
    cleanup.push(() => sql.end({ timeout: 5 }));
    await waitForDatabase(sql, databaseUrl, config.database.waitSeconds);

    const applied = await migrateUpLocked(sql, databaseUrl, config.migrations.appDir);
    for (const file of applied) log.info(`migration applied: ${file}`);

    const password = authenticatorPassword(databaseUrl, config.postgrest.authenticatorPassword);
    if (!config.postgrest.url || config.postgrest.authenticatorPassword) await setAuthenticatorPassword(sql, password);

    const firstKey = await addSigningKey(sql, config.auth.jwtAlg, true);
    const keys = await KeyRing.load(sql);
    const following = await keys.follow();
    cleanup.push(() => following.unlisten());

    let postgrest: Plinth['postgrest'];
    if (config.postgrest.url) {
      postgrest = { origin: config.postgrest.url.replace(/\/+$/, '') };
      // An external PostgREST learns about the new schema and keys by notification.
      await sql`select pg_notify('pgrst', 'reload config'), pg_notify('pgrst', 'reload schema')`;
    } else {
      const running: RunningPostgrest = await startPostgrest(config.dataDir, authenticatorUrl(databaseUrl, password), log.debug);
      recordChild(config.dataDir, running.pid);
      cleanup.push(() => running.stop());
      postgrest = running;
    }

    const plinth: Plinth = { config, sql, keys, postgrest, log, health: new Map(), onClose: [] };
    cleanup.push(async () => {
      for (const hook of plinth.onClose.reverse()) await hook();
    });
    const app = await buildServer(plinth);
    cleanup.push(async () => {
      // In-flight requests get a few seconds to finish; idle keep-alive connections close now.
      const force = setTimeout(() => app.server.closeAllConnections(), 5000);
      app.server.closeIdleConnections();
      await app.close();
      clearTimeout(force);
    });
    await app.listen({ port: config.port, host: config.host });

    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
    log.info(`Plinth is ready on ${url}`);
    if (firstKey) {
      process.stdout.write(
        `\nFirst start: API keys (also shown by \`npx plinth keys\`)\n` +
          `  anon key    (for clients; RLS applies):\n    ${firstKey.anonKey}\n` +
          `  service key (server-side only; bypasses RLS):\n    ${firstKey.serviceKey}\n\n`,
      );
    }
    return { url, stop };
  } catch (err) {
    await stop();
    if (err instanceof MigrationError) throw new StartError(err.message);
    throw err;
  }
}

// `plinth start`, in boot order: PostgreSQL (embedded or external), migrations, signing keys,
// PostgREST, each feature's service, then the HTTP server. Everything started is stopped by one
// Lifecycle, in reverse.
import fs from 'node:fs';
import v8 from 'node:v8';
import { auditRoutes } from '../audit/routes.js';
import { startAudit } from '../audit/service.js';
import { gotrueRoutes } from '../auth/gotrue-routes.js';
import { accountRoutes } from '../auth/routes.js';
import { startBackupSchedule } from '../backup/service.js';
import { bucketsRoutes } from '../buckets/routes.js';
import { startBuckets } from '../buckets/service.js';
import { startAccounts } from '../auth/service.js';
import { consoleRoutes } from '../console/routes.js';
import { startConsoleBuild } from '../console/service.js';
import type { Config } from '../core/config.js';
import type { Plinth } from '../core/context.js';
import { connect, connectCaller, setStatementTimeout } from '../core/db.js';
import { addSigningKey, KeyRing } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import { MigrationError, migrateUpLocked } from '../core/migrations.js';
import { fineRoutes } from '../fine/routes.js';
import { functionsFrontDoor } from '../functions/http.js';
import { functionsRoutes } from '../functions/routes.js';
import { startFunctions } from '../functions/service.js';
import { startFine } from '../fine/service.js';
import { realtimeRoutes } from '../realtime/routes.js';
import { startRealtime } from '../realtime/service.js';
import { waitForDatabase } from '../start/database.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../start/embedded-postgres.js';
import { authenticatorPassword, authenticatorUrl, setAuthenticatorPassword, startPostgrest, type RunningPostgrest } from '../start/postgrest.js';
import { StartError, assertPortFree, lockDataDir, recordChild, stopOrphans } from '../start/process.js';
import { storageRoutes } from '../storage/routes.js';
import { startStorage } from '../storage/service.js';
import { healthRoutes } from './health.js';
import { Lifecycle } from './lifecycle.js';
import { createServer } from './server.js';

export interface Running {
  url: string;
  /** Stops everything in reverse order; false if a step failed or overran its deadline. */
  stop(): Promise<boolean>;
  /** Resolves with a one-line reason when a part Plinth cannot run without has died. */
  failed: Promise<string>;
}

/**
 * How far the old generation may grow past what the last full collection kept before the next one
 * starts: 3× (V8 picks between 1.1× and 4× from how costly its collections have been). V8 counts
 * external memory allocated since that collection (the buffers every upload and download passes
 * through) against the same limit. Once a few full collections came close together, V8 shrank
 * the factor to 1.1×, and then a few MiB of buffers in flight started the next one: a 1 GiB
 * upload ran a full collection every 80 ms and slowed by a third. With a fixed 3× the buffers have
 * about twice the live heap as room, and an upload runs a handful.
 */
const HEAP_GROWING_PERCENT = 200;

export async function start(config: Config, log: Logger): Promise<Running> {
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const lifecycle = new Lifecycle(log);
  const stop = () => lifecycle.stop();
  let fail!: (reason: string) => void;
  const failed = new Promise<string>((resolve) => (fail = resolve));

  try {
    fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });
    await assertPortFree(config.port, config.host, `port ${config.port} on ${config.host} is in use: stop what holds it or set PORT`);
    const lock = lockDataDir(config.dataDir);
    lifecycle.onStop('data directory lock', () => lock.release());
    await stopOrphans(lock.orphans);

    let databaseUrl = config.database.url;
    if (!databaseUrl) {
      const pg: RunningPostgres = await startEmbeddedPostgres(config.dataDir, config.database.embeddedPort, log.warn);
      lifecycle.onStop('PostgreSQL', () => pg.stop());
      void pg.died.then((reason) => fail(`PostgreSQL exited (${reason})`));
      databaseUrl = pg.url;
      log.info(`embedded PostgreSQL 17 on 127.0.0.1:${config.database.embeddedPort}, data in ${config.dataDir}/pg`);
    }
    const sql = connect(databaseUrl, config.database.poolSize);
    lifecycle.onStop('database connections', () => sql.end({ timeout: 5 }));
    await waitForDatabase(sql, databaseUrl, config.database.waitSeconds);

    const applied = await migrateUpLocked(sql, databaseUrl, config.migrations.appDir);
    for (const file of applied) log.info(`migration applied: ${file}`);

    // Caller SQL never runs on the owner's (superuser) connections: see core/db.ts.
    const callerSql = await connectCaller(sql, databaseUrl, config.database.poolSize, config.database.statementTimeoutMs);
    // Before PostgREST starts (or is told to reload its configuration below), which reads it then.
    await setStatementTimeout(sql, config.database.statementTimeoutMs);
    lifecycle.onStop('caller database connections', () => callerSql.end({ timeout: 5 }));

    const password = authenticatorPassword(databaseUrl, config.postgrest.authenticatorPassword);
    if (!config.postgrest.url || config.postgrest.authenticatorPassword) await setAuthenticatorPassword(sql, password);

    const firstKey = await addSigningKey(sql, config.auth.jwtAlg, true);
    const keys = await KeyRing.load(sql);
    const following = await keys.follow();
    lifecycle.onStop('key ring', () => following.unlisten());

    let postgrest: Plinth['postgrest'];
    if (config.postgrest.url) {
      postgrest = { origin: config.postgrest.url.replace(/\/+$/, '') };
      // An external PostgREST learns about the new schema and keys by notification.
      await sql`select pg_notify('pgrst', 'reload config'), pg_notify('pgrst', 'reload schema')`;
    } else {
      const running: RunningPostgrest = await startPostgrest(config.dataDir, authenticatorUrl(databaseUrl, password), log, (pid) => recordChild(config.dataDir, pid), {
        schemas: config.database.schemas,
        publicUrl: config.publicUrlSet ? config.publicUrl : undefined,
      });
      lifecycle.onStop('PostgREST', () => running.stop());
      postgrest = running;
    }

    const plinth: Plinth = { config, sql, callerSql, keys, postgrest, log, health: new Map() };
    const audit = await lifecycle.start('audit', () => startAudit(plinth, databaseUrl));
    plinth.audit = audit;
    const accounts = await lifecycle.start('accounts', () => startAccounts(plinth));
    const storage = await lifecycle.start('storage', () => startStorage(plinth));
    const buckets = await lifecycle.start('buckets', () => startBuckets(plinth, storage));
    const realtime = await lifecycle.start('realtime', () => startRealtime(plinth, databaseUrl));
    const consoleBuild = await lifecycle.start('console build', () => startConsoleBuild(plinth));
    const fine = await lifecycle.start('fine', () => startFine(plinth));
    await lifecycle.start('scheduled backups', () => startBackupSchedule(plinth));
    const functions = await lifecycle.start('functions', () => startFunctions(plinth));

    // Function calls are served before routing, as the REST proxy is: the hot path skips fastify.
    const { app } = await createServer(plinth, [functionsFrontDoor(plinth, functions)]);
    await app.register(healthRoutes, { plinth });
    await app.register(auditRoutes, { plinth, audit });
    await app.register(storageRoutes, { plinth, storage });
    await app.register(bucketsRoutes, { plinth, buckets });
    await app.register(realtimeRoutes, { plinth, realtime });
    await app.register(consoleRoutes, { plinth, consoleBuild, functionFailures: () => functions.registry.broken });
    await app.register(accountRoutes, { plinth, accounts });
    // The same accounts with GoTrue's routes and shapes, where supabase-js looks for them.
    await app.register(gotrueRoutes, { plinth, accounts, prefix: '/auth/v1' });
    await app.register(fineRoutes, { plinth, fine });
    await app.register(functionsRoutes, { plinth, functions });
    lifecycle.onStop('HTTP server', async () => {
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
    return { url, stop, failed };
  } catch (err) {
    await stop();
    if (err instanceof MigrationError) throw new StartError(err.message);
    throw err;
  }
}

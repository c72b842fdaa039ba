// The `plinth` command: start, keys, migrate, new, backup, restore.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addSigningKey, currentApiKeys, listSigningKeys, retireSigningKey } from './core/keys.js';
import { ConfigError, loadConfig } from './core/config.js';
import { MigrationError, migrateUpLocked, runDbmate } from './core/migrations.js';
import { createLogger } from './core/log.js';
import { withDatabase } from './start/database.js';
import { StartError } from './start/process.js';
import { start } from './app/start.js';
import { backupCommand, restoreCommand, BACKUP_HELP, RESTORE_HELP, isBackupError } from './backup/command.js';

const HELP: Record<string, string> = {
  main: `plinth — a self-hosted backend on PostgreSQL and PostgREST

Usage: plinth <command> [options]

Commands:
  start              start PostgreSQL (embedded unless DATABASE_URL), migrations, PostgREST and the API on PORT
  keys               print the anon and service API keys
  keys rotate        add a new signing key; tokens signed by older keys stay valid until they expire
  keys list          list the signing keys (kid, algorithm, creation time), oldest first
  keys retire <kid>  remove an older signing key: every token it signed stops working
  migrate [up]       apply pending migrations (Plinth's, then the app's in PLINTH_APP_MIGRATIONS)
  migrate status     list applied and pending migrations
  migrate rollback   roll back the newest migration (--all: every one)
  new <name>         create an app migration file in PLINTH_APP_MIGRATIONS
  backup             write the database and every stored file to one archive (--out FILE, --no-files)
  restore <file>     restore an archive into an empty Plinth (--force: replace a non-empty one)

Run \`plinth <command> --help\` for details. Configuration comes from the environment (README.md).`,
  start: `Usage: plinth start

Starts the whole stack and stays in the foreground; Ctrl-C (SIGINT), SIGTERM or SIGHUP stops
every part in order (in-flight requests finish first) and exits 0. PostgREST is restarted if it
exits; if PostgreSQL exits, everything stops and the exit status is 1.
  - PostgreSQL 17 embedded in PLINTH_DATA_DIR (default ./.plinth), or the server in DATABASE_URL
  - dbmate migrations: sql/migrations, then PLINTH_APP_MIGRATIONS (default ./migrations)
  - PostgREST on a private unix socket, or the one in PLINTH_POSTGREST_URL
  - the API on PLINTH_HOST:PORT (default 127.0.0.1:3000)
On first start it creates a signing key and prints the anon and service keys.`,
  keys: `Usage: plinth keys [--json]
       plinth keys rotate [--json]
       plinth keys list [--json]
       plinth keys retire <kid>

Prints the anon key (for clients; RLS applies) and the service key (server-side only; bypasses RLS).
\`rotate\` adds a signing key with a new kid. New tokens are signed with it; tokens signed with the
previous keys stay valid until they expire. Running sidecars and PostgREST reload without a restart.
\`retire <kid>\` removes an older key (never the newest): tokens and API keys it signed stop working.`,
  migrate: `Usage: plinth migrate [up|status|rollback] [--all]

up (default)   apply pending migrations and tell PostgREST to reload its schema cache
status         list applied and pending migrations
rollback       roll back the newest migration; with --all, every migration (Plinth's too)`,
  new: `Usage: plinth new <name>

Creates PLINTH_APP_MIGRATIONS/<timestamp>_<name>.sql with "-- migrate:up" and "-- migrate:down" sections.`,
  backup: BACKUP_HELP,
  restore: RESTORE_HELP,
};

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      json: { type: 'boolean' },
      all: { type: 'boolean' },
      // backup / restore
      out: { type: 'string', short: 'o' },
      'no-files': { type: 'boolean' },
      force: { type: 'boolean' },
    },
  });
  const [command, sub] = positionals;
  if (!command || command === 'help') {
    console.log(HELP.main);
    return command ? 0 : 1;
  }
  if (!(command in HELP) || command === 'main') {
    console.error(`plinth: unknown command ${JSON.stringify(command)}\n\n${HELP.main}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  const config = loadConfig();

  switch (command) {
    case 'start': {
      const log = createLogger(config.logLevel);
      // Listen before booting: a signal that arrives mid-boot stops the stack once it is up,
      // instead of killing this process and orphaning PostgreSQL and PostgREST. The handlers
      // stay: a second Ctrl-C must not cut the orderly stop short.
      let signals = 0;
      const stopSignal = new Promise<string>((resolve) => {
        for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
          process.on(signal, () => {
            if (signals++ > 0) log.warn(`${signal}: already stopping`);
            resolve(signal);
          });
        }
      });
      // A bug that escapes every handler must not leave PostgreSQL and PostgREST running
      // without their sidecar: stop them, say why in one line, and exit non-zero.
      const crashed = new Promise<Error>((resolve) => {
        process.on('uncaughtException', resolve);
        process.on('unhandledRejection', (reason) => resolve(reason instanceof Error ? reason : new Error(String(reason))));
      });
      const running = await start(config, log);
      const why = await Promise.race([
        stopSignal.then((signal) => ({ signal })),
        running.failed.then((reason) => ({ reason })),
        crashed.then((err) => ({ reason: `crashed: ${err.stack ?? err.message}` })),
      ]);
      if ('signal' in why) log.info(`${why.signal}: stopping`);
      else log.error(`${why.reason}\nstopping everything`);
      const complete = await running.stop();
      if ('reason' in why) {
        console.error(`plinth: ${why.reason.split('\n')[0]}`);
        return 1;
      }
      if (!complete) console.error('plinth: stopped, but not every part stopped cleanly (see the warnings above)');
      return complete ? 0 : 1;
    }
    case 'keys': {
      if (sub === 'list') {
        const all = await withDatabase(config, (sql) => listSigningKeys(sql));
        console.log(values.json ? JSON.stringify(all) : all.map((k) => `${k.kid}  ${k.alg}  ${k.created_at.toISOString()}`).join('\n'));
        return 0;
      }
      if (sub === 'retire') {
        const kid = positionals[2];
        if (!kid) throw new ConfigError('plinth keys retire needs a kid: `plinth keys list` shows them');
        await withDatabase(config, (sql) => retireSigningKey(sql, kid));
        console.log(`Signing key ${kid} retired; tokens it signed no longer verify.`);
        return 0;
      }
      if (sub && sub !== 'rotate') throw new ConfigError(`unknown keys subcommand ${JSON.stringify(sub)}: use \`plinth keys\`, \`plinth keys rotate\`, \`plinth keys list\` or \`plinth keys retire <kid>\``);
      const keys = await withDatabase(config, async (sql) => (sub === 'rotate' ? (await addSigningKey(sql, config.auth.jwtAlg))! : currentApiKeys(sql)));
      if (values.json) console.log(JSON.stringify(keys));
      else {
        if (sub === 'rotate') console.log(`New signing key ${keys.kid}; older keys keep verifying until their tokens expire.\n`);
        console.log(`anon key (clients; RLS applies):\n  ${keys.anonKey}\nservice key (server-side only; bypasses RLS):\n  ${keys.serviceKey}`);
      }
      return 0;
    }
    case 'migrate': {
      const action = sub ?? 'up';
      return withDatabase(config, async (sql, url) => {
        if (action === 'up') {
          const applied = await migrateUpLocked(sql, url, config.migrations.appDir);
          await sql`select pg_notify('pgrst', 'reload schema')`;
          console.log(applied.length ? applied.map((f) => `applied ${f}`).join('\n') : 'no pending migrations');
          return 0;
        }
        if (action === 'status' || action === 'rollback') {
          do {
            const r = await runDbmate(url, config.migrations.appDir, [action]);
            process.stdout.write(r.stdout);
            if (r.code !== 0) {
              // dbmate says "can't rollback: no migrations have been applied" when there is nothing left.
              if (values.all && /no migrations have been applied/i.test(r.stderr)) break;
              process.stderr.write(r.stderr);
              return r.code;
            }
          } while (action === 'rollback' && values.all);
          if (action === 'rollback') await sql`select pg_notify('pgrst', 'reload schema')`;
          return 0;
        }
        throw new ConfigError(`unknown migrate action ${JSON.stringify(action)}: use up, status or rollback`);
      });
    }
    case 'new': {
      if (!sub) throw new ConfigError('plinth new needs a name, e.g. `plinth new create_todos`');
      return newMigration(config.migrations.appDir, sub);
    }
    case 'backup':
      return backupCommand(config, { out: values.out, files: !values['no-files'] }, (fn) => withDatabase(config, fn));
    case 'restore':
      return restoreCommand(config, { file: sub, force: Boolean(values.force) }, (fn) => withDatabase(config, fn));
  }
  return 0;
}

/** Same file layout as `dbmate new`: <UTC timestamp>_<name>.sql with both sections. */
function newMigration(appDir: string, name: string): number {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new ConfigError('a migration name may use letters, digits, _ and - only');
  fs.mkdirSync(appDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
  const file = path.join(appDir, `${stamp}_${name}.sql`);
  fs.writeFileSync(file, '-- migrate:up\n\n\n-- migrate:down\n\n', { flag: 'wx' });
  console.log(`created ${file}`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError || err instanceof StartError || err instanceof MigrationError || isBackupError(err)) {
      console.error(`plinth: ${err.message}`);
    } else {
      console.error(`plinth: unexpected error: ${err?.stack ?? err}`);
    }
    process.exit(1);
  },
);

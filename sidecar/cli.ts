// The `plinth` command: start, keys, migrate, new, init, config, doctor, backup, restore, audit export.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addSigningKey, currentApiKeys, listSigningKeys, retireSigningKey } from './core/keys.js';
import { ConfigError, loadConfig, projectEnvironment, type Config } from './core/config.js';
import { flattenConfig, setVariables } from './core/config-report.js';
import { DotEnvError } from './core/dotenv.js';
import { VERSION } from './core/version.js';
import { initProject } from './project/init.js';
import { runDoctor } from './app/doctor.js';
import { MigrationError, migrateUpLocked, runDbmate } from './core/migrations.js';
import { createLogger } from './core/log.js';
import { withDatabase } from './start/database.js';
import { StartError } from './start/process.js';
import { start } from './app/start.js';
import { AUDIT_HELP, exportAudit } from './audit/export.js';
import { backupCommand, restoreCommand, BACKUP_HELP, RESTORE_HELP, isBackupError } from './backup/command.js';
import { CommandError as FunctionsCommandError, FUNCTIONS_HELP, functionsCommand, newFunction, SECRETS_HELP, secretsCommand } from './functions/command.js';
import { SecretError } from './functions/secrets.js';

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
  new function <n>   write an example function to PLINTH_FUNCTIONS_DIR/<n>.ts
  functions          list functions, their invocation logs, roll one back (list | logs <name> | rollback <name> <version>)
  secrets            function secrets: set <NAME> (value on stdin) | list | unset <NAME>
  init               make this folder a Plinth app (package.json, migrations/, .env.example, .gitignore, a test)
  config             print the effective configuration, secrets masked
  doctor             check what a start needs (ports, data directory, database, PostgREST, S3, SMTP)
  backup             write the database and every stored file to one archive (--out FILE, --no-files)
  restore <file>     restore an archive into an empty Plinth (--force: replace a non-empty one)
  audit export       write the request and activity logs as JSON lines (--since 7d)

Run \`plinth <command> --help\` for details; \`plinth --version\` prints the version.
Configuration comes from the environment over ./.env (README.md, "Configuration").`,
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
       plinth new function <name>

Creates PLINTH_APP_MIGRATIONS/<timestamp>_<name>.sql with "-- migrate:up" and "-- migrate:down" sections,
or PLINTH_FUNCTIONS_DIR/<name>.ts, a working example function.`,
  functions: FUNCTIONS_HELP,
  secrets: SECRETS_HELP,
  init: `Usage: plinth init

Makes the current folder a Plinth app; files that exist are kept:
  package.json     "start": "plinth start", "test": "node --test", and plinth as a dependency
  migrations/      a first migration (a table, its row-level security policy, its grant), when empty
  .env.example     the settings most apps change; copy it to .env
  .gitignore       node_modules/, the data directory (.plinth/), .env
  test/            a test that starts this app's Plinth and signs a user up`,
  config: `Usage: plinth config [--json]

Prints the variables Plinth read (from the environment or ./.env, the environment winning) and the
effective configuration after defaults, with passwords, secrets and keys masked.`,
  doctor: `Usage: plinth doctor

Checks what \`plinth start\` needs, without starting anything: the ports are free, the data directory
is usable by the PostgreSQL server's user, the database answers (and its version), the PostgREST
binary runs, the S3 bucket and the SMTP server answer with the credentials given. Prints one line
per problem with its fix and exits 1 if there is any.`,
  backup: BACKUP_HELP,
  restore: RESTORE_HELP,
  audit: AUDIT_HELP,
};

/**
 * A key id is a JWK thumbprint (base64url), which may begin with '-': after `keys retire` the
 * argument is the key id, not an option (help aside).
 */
function withOperands(argv: string[]): string[] {
  const [command, sub, operand] = argv;
  if (command !== 'keys' || sub !== 'retire' || operand === undefined || !operand.startsWith('-')) return argv;
  if (operand === '--' || operand === '-h' || operand === '--help') return argv;
  return [command, sub, '--', ...argv.slice(2)];
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: withOperands(argv),
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      json: { type: 'boolean' },
      all: { type: 'boolean' },
      version: { type: 'boolean', short: 'v' },
      // backup / restore
      out: { type: 'string', short: 'o' },
      'no-files': { type: 'boolean' },
      force: { type: 'boolean' },
      // audit export
      since: { type: 'string' },
      until: { type: 'string' },
      log: { type: 'string' },
    },
  });
  const [command, sub] = positionals;
  if (values.version || command === 'version') {
    console.log(VERSION);
    return 0;
  }
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
  const environment = projectEnvironment();
  const config = loadConfig(environment.env);
  for (const { name, suggestion } of config.variables.unknown) {
    console.error(`plinth: ${name} is not a Plinth setting${suggestion ? `; did you mean ${suggestion}?` : ' (README.md, "Configuration", lists them)'}`);
  }

  switch (command) {
    case 'init': {
      for (const line of initProject(process.cwd(), config.migrations.appDir).lines) console.log(line);
      console.log('\nNext: npm install (if package.json was created), then npm start; npm test runs test/.');
      return 0;
    }
    case 'config':
      return printConfig(config, environment, values.json === true);
    case 'doctor': {
      const problems = await runDoctor(config, (line) => console.log(line));
      console.log(problems === 0 ? 'no problems found' : `${problems} problem${problems === 1 ? '' : 's'} found`);
      return problems === 0 ? 0 : 1;
    }
    case 'start': {
      const log = createLogger(config.logLevel, config.logFormat);
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
        // A wrapper that started Plinth (npm, a shell) may die of a signal without passing it on:
        // then this process is adopted by another parent, and stops as if it had been signalled.
        const parent = process.ppid;
        if (parent > 1) setInterval(() => process.ppid !== parent && resolve('the process that started Plinth exited'), 500).unref();
      });
      // A bug that escapes every handler must not leave PostgreSQL and PostgREST running
      // without their sidecar: stop them, say why in one line, and exit non-zero.
      const crashed = new Promise<Error>((resolve) => {
        process.on('uncaughtException', resolve);
        process.on('unhandledRejection', (reason) => resolve(reason instanceof Error ? reason : new Error(String(reason))));
      });
      // A throw from an event handler during boot (a child that cannot be spawned) must end the
      // start with its reason, not leave it waiting on a promise that never settles.
      const running = await Promise.race([
        start(config, log),
        crashed.then((err) => {
          throw new StartError(`start failed: ${err.message.split('\n')[0]} (\`plinth doctor\` checks what a start needs)`);
        }),
      ]);
      const why = await Promise.race([
        stopSignal.then((signal) => ({ signal })),
        running.failed.then((reason) => ({ reason })),
        // A database error names its statement, so a crash from an unawaited query can be traced.
        crashed.then((err) => ({ reason: `crashed: ${err.stack ?? err.message}${(err as { query?: string }).query ? `\nquery: ${(err as { query?: string }).query}` : ''}` })),
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
      if (sub === 'function' && positionals[2]) return newFunction(config.functions.dir, positionals[2]);
      return newMigration(config.migrations.appDir, sub);
    }
    case 'backup':
      return backupCommand(config, { out: values.out, files: !values['no-files'] }, (fn) => withDatabase(config, fn));
    case 'restore':
      return restoreCommand(config, { file: sub, force: Boolean(values.force) }, (fn) => withDatabase(config, fn));
    case 'secrets':
      return secretsCommand(config, positionals.slice(1), Boolean(values.json), (fn) => withDatabase(config, fn));
    case 'functions':
      return functionsCommand(positionals.slice(1), Boolean(values.json), (fn) => withDatabase(config, fn));
    case 'audit': {
      if (sub !== 'export') throw new ConfigError('use `plinth audit export --since <time>`');
      const write = (line: string) => (process.stdout.write(line) ? undefined : new Promise<void>((r) => process.stdout.once('drain', () => r())));
      await withDatabase(config, (sql) => exportAudit(sql, { since: values.since, until: values.until, log: values.log }, write));
      return 0;
    }
  }
  return 0;
}

function printConfig(config: Config, environment: ReturnType<typeof projectEnvironment>, json: boolean): number {
  const variables = setVariables(environment.env, config.variables.read, environment.sources);
  const settings = flattenConfig(config);
  if (json) {
    console.log(JSON.stringify({ version: VERSION, variables, config: Object.fromEntries(settings) }, null, 2));
    return 0;
  }
  console.log(`Plinth ${VERSION} in ${process.cwd()}\n`);
  if (variables.length === 0) console.log('No variables set: every setting has its default.');
  else {
    console.log('Variables set (the environment wins over .env):');
    const width = Math.max(...variables.map((v) => v.name.length + String(v.value).length + 1));
    for (const v of variables) console.log(`  ${`${v.name}=${v.value}`.padEnd(width)}  (${v.source})`);
  }
  console.log('\nEffective configuration:');
  const width = Math.max(...settings.map(([k]) => k.length));
  for (const [key, value] of settings) console.log(`  ${key.padEnd(width)}  ${value === undefined ? '-' : JSON.stringify(value)}`);
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
    if (err instanceof ConfigError || err instanceof StartError || err instanceof MigrationError || err instanceof DotEnvError || isBackupError(err) || err instanceof FunctionsCommandError || err instanceof SecretError) {
      console.error(`plinth: ${err.message}`);
    } else {
      console.error(`plinth: unexpected error: ${err?.stack ?? err}`);
    }
    process.exit(1);
  },
);

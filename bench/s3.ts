// 7. The S3 backend: 256 MiB up and down through Plinth (PLINTH_STORAGE=s3, s3rver) against the
// AWS SDK talking to the same s3rver directly (lib-storage Upload, GetObject).
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, type Stack } from '../tests/harness.ts';
import { freePort } from '../sidecar/start/process.ts';
import { median, ratioRow, repeat, type Row } from './report.ts';
import { MiB, drain, generated, timed, upload } from './streams.ts';

export interface S3Options {
  size: number;
  rounds: number;
  budgetSeconds: number;
  appMigrations: string;
}

export async function benchS3(opts: S3Options): Promise<Row[]> {
  const { default: S3rver } = await import('s3rver');
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bench-s3-'));
  const port = await freePort();
  const bucket = 'plinth-bench';
  const server = new S3rver({ port, address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: bucket }] });
  await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      appMigrations: opts.appMigrations,
      env: {
        PLINTH_STORAGE: 's3',
        S3_ENDPOINT: endpoint,
        S3_BUCKET: bucket,
        S3_FORCE_PATH_STYLE: 'true',
        S3_ACCESS_KEY_ID: 'S3RVER',
        S3_SECRET_ACCESS_KEY: 'S3RVER',
      },
    });
    const user = await stack.createUser({ email: 'bench-s3@example.test' });
    const auth = { authorization: `Bearer ${user.token}` };
    const size = opts.size;
    const plinthUp: number[] = [];
    const sdkUp: number[] = [];
    const plinthDown: number[] = [];
    const sdkDown: number[] = [];
    const rounds = await repeat(opts.rounds, opts.budgetSeconds, async () => {
      plinthUp.push(size / MiB / (await timed(() => upload(`${stack!.url}/rpc/store_file`, { ...auth, 'file-path': 'bench/s3.bin' }, size))).seconds);
      sdkUp.push(size / MiB / (await timed(() => new Upload({ client, params: { Bucket: bucket, Key: 'direct/s3.bin', Body: generated(size) } }).done())).seconds);
      plinthDown.push(size / MiB / (await timed(() => drain(`${stack!.url}/rpc/retrieve_file?p_file_path=bench%2Fs3.bin`, auth, size))).seconds);
      sdkDown.push(
        size /
          MiB /
          (
            await timed(async () => {
              const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'direct/s3.bin' }));
              let n = 0;
              for await (const chunk of got.Body as AsyncIterable<Buffer>) n += chunk.length;
              if (n !== size) throw new Error(`GetObject: ${n} bytes, expected ${size}`);
            })
          ).seconds,
      );
    });
    const label = `${size / MiB} MiB`;
    return [
      ratioRow({ section: '7 S3', metric: `${label} upload (s3rver)`, unit: 'MiB/s', plinth: median(plinthUp), baseline: median(sdkUp), target: '', note: `baseline: @aws-sdk/lib-storage Upload to s3rver; ${rounds} rounds` }),
      ratioRow({ section: '7 S3', metric: `${label} download (s3rver)`, unit: 'MiB/s', plinth: median(plinthDown), baseline: median(sdkDown), target: '', note: 'baseline: GetObject from s3rver' }),
    ];
  } finally {
    await stack?.destroy();
    client.destroy();
    await server.close();
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

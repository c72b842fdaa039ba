// 7. The S3 backend: 256 MiB up and down through Plinth (PLINTH_STORAGE=s3, s3rver) against the
// AWS SDK talking to the same s3rver directly (lib-storage Upload, GetObject).
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { startS3rver, startStack, type Stack } from '../tests/harness.ts';
import { median, ratioRow, repeat, type Row } from './report.ts';
import { MiB, drain, generated, timed, upload } from './streams.ts';

export interface S3Options {
  size: number;
  rounds: number;
  budgetSeconds: number;
  appMigrations: string | string[];
}

export async function benchS3(opts: S3Options): Promise<Row[]> {
  const peer = await startS3rver('plinth-bench');
  const { client, bucket } = peer;
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      appMigrations: opts.appMigrations,
      env: peer.env,
    });
    const user = await stack.createUser({ email: 'bench-s3@example.test' });
    const auth = { authorization: `Bearer ${user.token}` };
    const size = opts.size;
    const plinthUp: number[] = [];
    const sdkUp: number[] = [];
    const plinthDown: number[] = [];
    const sdkDown: number[] = [];
    const rounds = await repeat(opts.rounds, opts.budgetSeconds, async () => {
      plinthUp.push(size / MiB / (await timed(() => upload(`${stack!.url}/rpc/store_file`, { ...auth, 'file-path': 'bench/s3.bin' }, size), 'S3 upload: Plinth')).seconds);
      sdkUp.push(size / MiB / (await timed(() => new Upload({ client, params: { Bucket: bucket, Key: 'direct/s3.bin', Body: generated(size) } }).done(), 'S3 upload: SDK')).seconds);
      plinthDown.push(size / MiB / (await timed(() => drain(`${stack!.url}/rpc/retrieve_file?p_file_path=bench%2Fs3.bin`, auth, size), 'S3 download: Plinth')).seconds);
      sdkDown.push(
        size /
          MiB /
          (
            await timed(async () => {
              const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'direct/s3.bin' }));
              let n = 0;
              for await (const chunk of got.Body as AsyncIterable<Buffer>) n += chunk.length;
              if (n !== size) throw new Error(`GetObject: ${n} bytes, expected ${size}`);
            }, 'S3 download: SDK')
          ).seconds,
      );
    });
    const label = `${size / MiB} MiB`;
    return [
      ratioRow({ section: '7 S3', metric: `${label} upload (s3rver)`, unit: 'MiB/s', plinth: median(plinthUp), baseline: median(sdkUp), target: '≥ 0.95×', minRatio: 0.95, note: `baseline: @aws-sdk/lib-storage Upload to s3rver; ${rounds} rounds` }),
      ratioRow({ section: '7 S3', metric: `${label} download (s3rver)`, unit: 'MiB/s', plinth: median(plinthDown), baseline: median(sdkDown), target: '≥ 0.95×', minRatio: 0.95, note: 'baseline: GetObject from s3rver' }),
    ];
  } finally {
    await stack?.destroy();
    await peer.stop();
  }
}

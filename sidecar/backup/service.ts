// Scheduled backups (PLINTH_BACKUP_SCHEDULE → PLINTH_BACKUP_TO, keeping PLINTH_BACKUP_KEEP).
// Each sidecar computes the same ticks from the cron expression; the one whose insert of the
// tick's row into plinth.backup_runs succeeds runs it, the others skip it. The newest run's
// result is reported under "backup" in GET /health.
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Transform, type Writable } from 'node:stream';
import type { Plinth, Service } from '../core/context.js';
import { REPO_ROOT } from '../core/paths.js';
import { createBackend } from '../storage/backends/index.js';
import { writeStream, type BackupSource } from './backup.js';
import { parseCron } from '../core/cron.js';

/** Names of scheduled archives; retention deletes only files named like this. */
const ARCHIVE_NAME = /^plinth-backup-\d{8}T\d{6}Z\.tar(\.enc)?$/;

function archiveName(tick: Date, encrypted: boolean): string {
  return `plinth-backup-${tick.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}.tar${encrypted ? '.enc' : ''}`;
}

interface Destination {
  describe(name: string): string;
  /** Writes one archive; returns its size. `sink` is handed out so that a stop can cut it. */
  write(name: string, run: (sink: Writable) => Promise<unknown>): Promise<number>;
  /** Deletes all but the newest `keep` scheduled archives. */
  prune(keep: number): Promise<void>;
  close(): void;
}

function directory(dir: string): Destination {
  return {
    describe: (name) => path.join(dir, name),
    async write(name, run) {
      await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
      const file = path.join(dir, name);
      const partial = path.join(dir, `.${name}.partial`);
      const sink = fs.createWriteStream(partial, { mode: 0o600, flags: 'wx' });
      try {
        await run(sink);
        await fs.promises.rename(partial, file);
      } catch (err) {
        sink.destroy();
        await fs.promises.rm(partial, { force: true });
        throw err;
      }
      return (await fs.promises.stat(file)).size;
    },
    async prune(keep) {
      const names = (await fs.promises.readdir(dir)).filter((n) => ARCHIVE_NAME.test(n)).sort();
      for (const n of names.slice(0, Math.max(0, names.length - keep))) await fs.promises.rm(path.join(dir, n), { force: true });
    },
    close() {},
  };
}

function bucket(url: string, s3: Plinth['config']['storage']['s3']): Destination {
  const u = new URL(url);
  const Bucket = u.hostname;
  const prefix = u.pathname.replace(/^\/+/, '').replace(/([^/])$/, '$1/');
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    credentials: s3.accessKeyId && s3.secretAccessKey ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    describe: (name) => `s3://${Bucket}/${prefix}${name}`,
    async write(name, run) {
      let size = 0;
      const body = new Transform({
        highWaterMark: 1024 * 1024,
        transform(chunk: Buffer, _encoding, done) {
          size += chunk.length;
          done(null, chunk);
        },
      });
      const upload = new Upload({ client, params: { Bucket, Key: prefix + name, Body: body }, partSize: 8 * 1024 * 1024, queueSize: 2 });
      const uploading = upload.done();
      uploading.catch(() => {});
      try {
        await run(body);
        await uploading;
      } catch (err) {
        await upload.abort().catch(() => {});
        throw err;
      }
      return size;
    },
    async prune(keep) {
      const names: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) if (o.Key && ARCHIVE_NAME.test(o.Key.slice(prefix.length))) names.push(o.Key);
        token = page.NextContinuationToken;
      } while (token);
      names.sort();
      for (const key of names.slice(0, Math.max(0, names.length - keep))) await client.send(new DeleteObjectCommand({ Bucket, Key: key }));
    },
    close: () => client.destroy(),
  };
}

export async function startBackupSchedule(plinth: Plinth): Promise<Service> {
  const { schedule, to, keep, passphrase } = plinth.config.backup;
  if (!schedule || !to) return { stop() {} };
  const cron = parseCron(schedule);
  const backend = await createBackend(plinth.config.storage);
  const destination = to.startsWith('s3://') ? bucket(to, plinth.config.storage.s3) : directory(to);
  const me = `${os.hostname()}:${process.pid}`;
  const version = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const source: BackupSource = {
    sql: plinth.sql,
    backend,
    dirs: { plinth: path.join(REPO_ROOT, 'sql', 'migrations'), app: plinth.config.migrations.appDir },
    plinthVersion: version,
  };
  let next = cron.next(new Date());
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  let cut: ((err: Error) => void) | null = null;
  let stopped = false;

  async function run(tick: Date): Promise<void> {
    const claimed = await plinth.sql`insert into plinth.backup_runs (tick, claimed_by) values (${tick}, ${me}) on conflict (tick) do nothing returning tick`;
    if (!claimed.length) return; // another sidecar has this tick
    const name = archiveName(tick, Boolean(passphrase));
    try {
      const bytes = await destination.write(name, async (sink) => {
        cut = (err) => sink.destroy(err);
        await writeStream(source, sink, passphrase);
      });
      await plinth.sql`update plinth.backup_runs set finished_at = clock_timestamp(), ok = true, location = ${destination.describe(name)}, bytes = ${bytes} where tick = ${tick}`;
      plinth.log.info(`scheduled backup written to ${destination.describe(name)}`);
      await destination.prune(keep).catch((err) => plinth.log.warn(`scheduled backups: pruning old archives failed: ${(err as Error).message}`));
    } catch (err) {
      // A stop cuts the run short on purpose: say so, rather than how the output broke.
      const message = stopped ? 'cut short: Plinth stopped during the run (its partial archive was removed)' : (err as Error).message;
      if (stopped) plinth.log.warn(`scheduled backup ${message}`);
      else plinth.log.error(`scheduled backup failed: ${message}`);
      await plinth.sql`update plinth.backup_runs set finished_at = clock_timestamp(), ok = false, error = ${message} where tick = ${tick}`.catch(() => {});
    } finally {
      cut = null;
    }
  }

  // Wakes at most once a minute, so that a long wait survives timer limits and clock changes.
  function plan() {
    if (stopped) return;
    const wait = Math.max(0, Math.min(next.getTime() - Date.now(), 60_000));
    timer = setTimeout(() => {
      if (Date.now() < next.getTime()) return plan();
      const tick = next;
      next = cron.next(tick);
      // A backup still running when the next tick comes makes that tick skip, not pile up.
      if (!running) {
        running = run(tick)
          .catch((err) => plinth.log.error(`scheduled backup: ${(err as Error).message}`))
          .finally(() => (running = null));
      }
      plan();
    }, wait);
  }
  plan();

  plinth.health.set('backup', async () => {
    const [last] = await plinth.sql<{ tick: Date; started_at: Date; finished_at: Date | null; ok: boolean | null; location: string | null; bytes: string | null; error: string | null }[]>`
      select tick, started_at, finished_at, ok, location, bytes::text, error from plinth.backup_runs order by tick desc limit 1`;
    return {
      schedule,
      next: next.toISOString(),
      last: last
        ? {
            at: last.started_at.toISOString(),
            result: last.ok === null ? 'running' : last.ok ? 'ok' : 'failed',
            ...(last.location ? { location: last.location, bytes: Number(last.bytes) } : {}),
            ...(last.error ? { error: last.error } : {}),
          }
        : null,
    };
  });

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      // A backup in progress is cut short (its partial archive removed), not waited for.
      (cut as ((err: Error) => void) | null)?.(new Error('Plinth is stopping'));
      await running;
      destination.close();
      await backend.close();
    },
  };
}

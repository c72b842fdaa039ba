// 9. Backup and restore: `plinth backup` of a running Plinth holding N app rows and N files (disk),
// and `plinth restore` of that archive into a fresh one, against the baseline of `tar` of the
// whole data directory (PostgreSQL's files plus the stored objects) and `tar -x` of it. The
// baseline is not a usable backup of a running database (no snapshot, no checksums): it is the
// speed of copying the same bytes, which Plinth's consistent, verified copy is measured against.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli, startStack, type Stack } from '../tests/harness.ts';
import { ratioRow, type Row } from './report.ts';
import { KiB, MiB, timed } from './streams.ts';

export interface BackupBenchOptions {
  /** N: app rows and stored files. */
  n: number;
  fileSize: number;
  appMigrations: string | string[];
}

function tar(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    // 1 = "some files differ / changed as we read them": expected when copying a live data directory.
    child.once('exit', (code) => (code === 0 || code === 1 ? resolve() : reject(new Error(`tar ${args[0]} exited ${code}: ${err.split('\n')[0]}`))));
  });
}

async function populate(stack: Stack, n: number, fileSize: number): Promise<void> {
  const user = await stack.createUser({ email: `bench-backup-${randomBytes(3).toString('hex')}@example.test` });
  await stack.sql`insert into public.todos (user_id, title, priority) select ${user.id}, 'todo number ' || g, g % 5 from generate_series(1, ${n}) g`;
  const body = randomBytes(fileSize);
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) {
        const i = next++;
        const r = await stack.fetch('/rpc/store_file', {
          method: 'POST',
          token: user.token,
          body,
          headers: { 'content-type': 'application/octet-stream', 'file-path': `bench/${i}.bin` },
        });
        if (r.status !== 200) throw new Error(`store_file answered ${r.status}`);
        await r.arrayBuffer();
      }
    }),
  );
}

export async function benchBackup(opts: BackupBenchOptions, log: (msg: string) => void = () => {}): Promise<Row[]> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-bench-backup-'));
  const stacks: Stack[] = [];
  try {
    const source = await startStack({ appMigrations: opts.appMigrations });
    stacks.push(source);
    log(`  populating: ${opts.n} rows, ${opts.n} files of ${opts.fileSize / KiB} KiB`);
    await populate(source, opts.n, opts.fileSize);

    const archive = path.join(work, 'plinth.tar');
    const backup = await timed(() => runCli(['backup', '--out', archive], source.env));
    if (backup.value.code !== 0) throw new Error(`plinth backup failed: ${backup.value.stderr.trim().split('\n').at(-1)}`);
    const archiveMiB = fs.statSync(archive).size / MiB;

    const baselineTar = path.join(work, 'datadir.tar');
    const tarOut = await timed(() => tar(['-cf', baselineTar, '--warning=no-file-ignored', '--warning=no-file-changed', '-C', source.dataDir, '.']));
    const baselineMiB = fs.statSync(baselineTar).size / MiB;

    const target = await startStack({ appMigrations: opts.appMigrations });
    stacks.push(target);
    const restore = await timed(() => runCli(['restore', archive], target.env));
    if (restore.value.code !== 0) throw new Error(`plinth restore failed: ${restore.value.stderr.trim().split('\n').at(-1)}`);

    const untarDir = path.join(work, 'untar');
    fs.mkdirSync(untarDir);
    const untar = await timed(() => tar(['-xf', baselineTar, '-C', untarDir]));

    const note = `N = ${opts.n} rows + ${opts.n} files of ${opts.fileSize / KiB} KiB; archive ${archiveMiB.toFixed(0)} MiB, data dir ${baselineMiB.toFixed(0)} MiB`;
    return [
      ratioRow({
        section: '9 backup',
        metric: 'plinth backup (running, consistent, verified) vs tar of the data directory',
        unit: 'MiB/s',
        plinth: archiveMiB / backup.seconds,
        baseline: baselineMiB / tarOut.seconds,
        target: '',
        note: `${backup.seconds.toFixed(1)} s vs ${tarOut.seconds.toFixed(1)} s; ${note}`,
      }),
      ratioRow({
        section: '9 backup',
        metric: 'plinth restore (one transaction, checksums) vs tar -x of the data directory',
        unit: 'MiB/s',
        plinth: archiveMiB / restore.seconds,
        baseline: baselineMiB / untar.seconds,
        target: '',
        note: `${restore.seconds.toFixed(1)} s vs ${untar.seconds.toFixed(1)} s`,
      }),
    ];
  } finally {
    for (const s of stacks) await s.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// The file storage suite against the disk backend (the default).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { crashSuite, diskBackend, fileSuite, GiB } from './files-suite.ts';
import { REPO_ROOT, startStack, type Stack } from './harness.ts';

describe('disk', () => fileSuite(async () => diskBackend(), { big: GiB }));
describe('disk: crashes, aborts and limits', () => crashSuite(async () => diskBackend()));

describe('storage migrations', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.destroy());

  test('20250101000060_storage_quotas: its down step removes the quota column and functions, and up applies again', async () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000060_storage_quotas.sql'), 'utf8');
    const [up, down] = text.split('-- migrate:down');
    // The buckets migration renamed the table this one altered: step back over it first.
    const [bucketsUp, bucketsDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000300_buckets.sql'), 'utf8').split('-- migrate:down');
    const [signedUp, signedDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000301_signed_urls.sql'), 'utf8').split('-- migrate:down');
    const [tusUp, tusDown] = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000320_tus_uploads.sql'), 'utf8').split('-- migrate:down');
    const present = async (tx: typeof stack.sql) =>
      (await tx<{ n: string }[]>`
        select (to_regprocedure('storage.check_quota(bigint)') is not null)::text || ' ' ||
               exists (select 1 from pg_attribute where attrelid = 'storage.objects'::regclass and attname = 'charged_to' and not attisdropped)::text as n`)[0].n;
    class Rollback extends Error {}
    await expect(
      stack.sql.begin(async (tx) => {
        await tx.unsafe(tusDown);
        await tx.unsafe(signedDown);
        await tx.unsafe(bucketsDown);
        expect(await present(tx as never)).toBe('true true');
        await tx.unsafe(down);
        expect(await present(tx as never)).toBe('false false');
        await tx.unsafe(up.replace('-- migrate:up', ''));
        expect(await present(tx as never)).toBe('true true');
        await tx.unsafe(bucketsUp.replace('-- migrate:up', ''));
        await tx.unsafe(signedUp.replace('-- migrate:up', ''));
        await tx.unsafe(tusUp.replace('-- migrate:up', ''));
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
  });

  test('20250101000020_storage: its down step removes public.files and the storage schema, and up applies again', async () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'sql', 'migrations', '20250101000020_storage.sql'), 'utf8');
    const [up, down] = text.split('-- migrate:down');
    const names = async (tx: typeof stack.sql) =>
      (await tx<{ n: string }[]>`select coalesce(to_regclass('public.files')::text, '-') || ' ' || coalesce(to_regnamespace('storage')::text, '-') as n`)[0].n;
    class Rollback extends Error {}
    await expect(
      stack.sql.begin(async (tx) => {
        expect(await names(tx as never)).toBe('files storage');
        await tx.unsafe(down);
        expect(await names(tx as never)).toBe('- -');
        await tx.unsafe(up.replace('-- migrate:up', ''));
        expect(await names(tx as never)).toBe('files storage');
        throw new Rollback();
      }),
    ).rejects.toBeInstanceOf(Rollback);
  });
});

// The file storage suite against the disk backend (the default).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { crashSuite, diskBackend, fileSuite, GiB } from './files-suite.ts';
import { REPO_ROOT, startStack, type Stack } from './harness.ts';

describe('disk', () => fileSuite(async () => diskBackend(), { big: GiB }));
describe('disk: crashes, aborts and limits', () => crashSuite(async () => diskBackend()));

describe('migration 20250101000020_storage', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.destroy());

  test('its down step removes public.files and the storage schema, and up applies again', async () => {
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

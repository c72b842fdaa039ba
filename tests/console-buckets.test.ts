// The console's Buckets page in a real browser (Debian's chromium driven by playwright-core)
// against the real stack: create a bucket, upload a file with progress, see it listed in its
// folder, and open the signed link the page gives, getting the exact bytes.
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { startStack, type Stack, launchChromium } from './harness.ts';

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  await ensureConsoleBuilt();
  stack = await startStack();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await stack?.destroy();
});

const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000, interval: 100 });

async function signUp(page: Page, email: string, password: string) {
  await page.goto(`${stack.url}/console/`);
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(email);
}

test('a user creates a bucket, uploads a file, sees it listed, and its signed link serves the exact bytes', async () => {
  const page = await (await browser.newContext()).newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await signUp(page, `buckets-${randomBytes(4).toString('hex')}@console.test`, 'bucket-password-1');

  await page.getByRole('link', { name: 'Buckets' }).click();
  const bucket = `photos-${randomBytes(3).toString('hex')}`;
  await page.getByLabel('New bucket').fill(bucket);
  await page.getByRole('button', { name: 'Create bucket' }).click();
  await eventually(() => page.locator(`li[data-bucket="${bucket}"]`).count()).toBe(1);
  await eventually(() => page.locator(`section[aria-label="Objects in ${bucket}"]`).count()).toBe(1);

  // The public switch is saved on the server.
  await page.getByLabel(`Public ${bucket}`).check();
  await eventually(async () => {
    const res = await fetch(`${stack.url}/storage/v1/object/public/${bucket}/none`, { headers: { apikey: stack.anonKey } });
    return res.status;
  }).toBe(404);
  await page.getByLabel(`Public ${bucket}`).uncheck();

  const bytes = randomBytes(300_000);
  await page.getByLabel(`Upload to ${bucket}/`).setInputFiles({ name: 'holiday.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await eventually(() => page.locator('tr[data-object="holiday.bin"]').count()).toBe(1);

  await page.getByRole('button', { name: 'Signed link holiday.bin' }).click();
  const field = page.getByLabel('Signed link to holiday.bin');
  await eventually(() => field.count()).toBe(1);
  const url = await field.inputValue();
  expect(url).toMatch(new RegExp(`^${stack.url}/storage/v1/object/sign/${bucket}/holiday\\.bin\\?token=`));
  // The link needs no key: a stranger's plain GET gets the bytes.
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);

  // The page can open it too.
  const opened = await page.context().request.get(url);
  expect(Buffer.from(await opened.body()).equals(bytes)).toBe(true);

  await page.getByRole('button', { name: 'Delete holiday.bin' }).click();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await eventually(() => page.locator('tr[data-object="holiday.bin"]').count()).toBe(0);
  expect((await fetch(url)).status).not.toBe(200);
  expect(errors).toEqual([]);
});

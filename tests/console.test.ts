// The web console in a real browser (Debian's chromium driven by playwright-core) against the real
// stack: accounts, files, the table browser and the admin view, as a user sees them.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { startStack, TEST_OUTPUT, type Stack, launchChromium } from './harness.ts';

const SHOTS = path.join(TEST_OUTPUT, 'screenshots');
const ADMIN = { email: 'admin@console.test', password: 'admin-password-1' };
const MAX_FILE_SIZE = 1024 * 1024;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Every URL any page asked for: the console must never leave the stack's origin. */
const requested: string[] = [];

beforeAll(async () => {
  await ensureConsoleBuilt();
  fs.mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({
    env: {
      PLINTH_ADMIN_EMAIL: ADMIN.email,
      PLINTH_ADMIN_PASSWORD: ADMIN.password,
      PLINTH_MAX_FILE_SIZE: String(MAX_FILE_SIZE),
      // Short-lived access tokens: the console must refresh them while the tests run.
      PLINTH_ACCESS_TOKEN_TTL: '30',
      // Alice signs in a dozen times below (a fresh browser each test): above the default per-email limit.
      PLINTH_RATE_LIMIT_PER_IP: '1000',
      PLINTH_RATE_LIMIT_PER_EMAIL: '1000',
    },
  });
  browser = await launchChromium();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stack?.destroy();
});

async function newPage(viewport = DESKTOP, colorScheme: 'light' | 'dark' = 'light'): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme, acceptDownloads: true, isMobile: viewport === PHONE, hasTouch: viewport === PHONE });
  contexts.push(context);
  context.on('request', (r) => requested.push(r.url()));
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  page.on('request', (r) => {
    const auth = r.headers().authorization;
    if (auth?.startsWith('Bearer ')) bearers.set(page, auth.slice('Bearer '.length));
  });
  return page;
}

/** The access token each page last sent: the console keeps it in the page's memory only. */
const bearers = new WeakMap<Page, string>();
async function accessToken(page: Page): Promise<string> {
  await eventually(() => bearers.has(page)).toBe(true);
  return bearers.get(page)!;
}

/** Waits for what the page shows; the machine is shared, so allow seconds rather than expect.poll's default second. */
const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000, interval: 100 });

const shot = (page: Page, name: string, fullPage = true) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage });

async function signUp(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Create an account' }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(email);
}

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(email);
}

/** Chooses files in the upload form; each may get its own path and description. */
async function chooseFiles(page: Page, files: Array<{ name: string; bytes: Buffer; type?: string; path?: string; description?: string }>) {
  await page.locator('input[type=file]').setInputFiles(files.map((f) => ({ name: f.name, mimeType: f.type ?? 'application/octet-stream', buffer: f.bytes })));
  const items = page.locator('.upload-item');
  await eventually(() => items.count()).toBe(files.length);
  for (const [i, f] of files.entries()) {
    if (f.path) await items.nth(i).getByLabel('File path').fill(f.path);
    if (f.description) await items.nth(i).getByLabel('Description').fill(f.description);
  }
}

const row = (page: Page, filePath: string) => page.locator(`table.files tr[data-path="${filePath}"]`);
const cell = (page: Page, filePath: string, label: string) => row(page, filePath).locator(`[data-label="${label}"]`);

async function download(page: Page, filePath: string): Promise<{ name: string; bytes: Buffer }> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: `Download ${filePath}` }).click()]);
  return { name: dl.suggestedFilename(), bytes: fs.readFileSync((await dl.path())!) };
}

const alice = { email: `alice-${randomUUID().slice(0, 6)}@console.test`, password: 'alice-password-1' };
const bob = { email: `bob-${randomUUID().slice(0, 6)}@console.test`, password: 'bob-password-12' };
const notes = Buffer.from('n'.repeat(1536));
const photo = randomBytes(300_000);

// The machine running the suite may be busy (two cores, other test files): generous limits.
describe.sequential('the console', { timeout: 180_000 }, () => {
  test('sign-in screens: a wrong password is refused with the server message; screens fit a phone', async () => {
    const page = await newPage();
    await page.goto(`${stack.url}/console`);
    expect(page.url()).toBe(`${stack.url}/console/`);
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    await shot(page, 'signin-desktop');
    await page.getByLabel('Email', { exact: true }).fill(ADMIN.email);
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually(() => page.getByRole('alert').textContent()).toBe('Invalid email or password.');
    await shot(page, 'signin-refused-desktop');

    const phone = await newPage(PHONE);
    await phone.goto(`${stack.url}/console/`);
    await phone.getByRole('button', { name: 'New here? Create an account' }).click();
    await eventually(() => phone.getByRole('heading', { name: 'Create an account' }).isVisible()).toBe(true);
    await shot(phone, 'signup-phone');
    // Nothing overflows the phone's width.
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
  });

  test('sign up, upload two files, see their sizes, download one byte for byte', async () => {
    const page = await newPage();
    await signUp(page, alice.email, alice.password);
    await eventually(() => page.locator('.empty').textContent()).toContain('No files yet');

    await chooseFiles(page, [
      { name: 'notes.txt', bytes: notes, type: 'text/plain', description: 'Meeting notes' },
      { name: 'photo.bin', bytes: photo, path: 'pictures/holiday photo.bin', description: 'Été à la plage' },
    ]);
    await shot(page, 'files-chosen-desktop');
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await eventually(() => page.locator('.upload-item .upload-state').allTextContents()).toEqual(['Uploaded', 'Uploaded']);
    expect(await page.locator('.upload-item progress').evaluateAll((els) => els.map((e) => (e as HTMLProgressElement).value))).toEqual([100, 100]);

    await eventually(() => row(page, 'notes.txt').count()).toBe(1);
    await eventually(() => row(page, 'pictures/holiday photo.bin').count()).toBe(1);
    expect(await cell(page, 'notes.txt', 'Size').textContent()).toBe('1.5 KiB');
    expect(await cell(page, 'pictures/holiday photo.bin', 'Size').textContent()).toBe('293 KiB');
    expect(await cell(page, 'notes.txt', 'Type').textContent()).toBe('text/plain');
    expect(await cell(page, 'notes.txt', 'Description').textContent()).toBe('Meeting notes');
    expect(await cell(page, 'pictures/holiday photo.bin', 'Description').textContent()).toBe('Été à la plage');
    expect(await page.locator('.count').textContent()).toBe('2 files');
    await shot(page, 'files-desktop');

    // Sorting by size puts the bigger file first (descending on first click), then flips.
    await page.getByRole('button', { name: 'Size' }).click();
    expect(await page.locator('table.files tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-path')))).toEqual(['pictures/holiday photo.bin', 'notes.txt']);
    await page.getByRole('button', { name: 'Size' }).click();
    expect(await page.locator('table.files tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-path')))).toEqual(['notes.txt', 'pictures/holiday photo.bin']);
    expect(await page.locator('th[aria-sort="ascending"]').textContent()).toContain('Size');

    const got = await download(page, 'pictures/holiday photo.bin');
    expect(got.name).toBe('holiday photo.bin');
    expect(got.bytes.equals(photo)).toBe(true);

    // The same bytes through the API, with the page's access token.
    const api = await stack.fetch(`/rpc/retrieve_file?p_file_path=${encodeURIComponent('notes.txt')}`, { token: await accessToken(page) });
    expect(Buffer.from(await api.arrayBuffer()).equals(notes)).toBe(true);

    // A reload stays signed in.
    await page.reload();
    await eventually(() => page.locator('header .email').textContent()).toBe(alice.email);
    await eventually(() => row(page, 'notes.txt').count()).toBe(1);

    const phone = await newPage(PHONE);
    await signIn(phone, alice.email, alice.password);
    await eventually(() => row(phone, 'notes.txt').count()).toBe(1);
    await shot(phone, 'files-phone');
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);

    // The console follows the system's dark mode.
    const dark = await newPage(DESKTOP, 'dark');
    await signIn(dark, alice.email, alice.password);
    await eventually(() => row(dark, 'notes.txt').count()).toBe(1);
    expect(await dark.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)).toBe('rgb(20, 23, 28)');
    await shot(dark, 'files-dark-desktop');
  });

  test('an overwrite asks first: cancel keeps the old file, replace stores the new bytes', async () => {
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    await eventually(() => row(page, 'notes.txt').count()).toBe(1);
    const newer = Buffer.from('second version of the notes\n');

    await chooseFiles(page, [{ name: 'notes.txt', bytes: newer, type: 'text/plain' }]);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Replace an existing file?' });
    await eventually(() => dialog.isVisible()).toBe(true);
    expect(await dialog.textContent()).toContain('notes.txt');
    await shot(page, 'overwrite-confirm-desktop');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await eventually(() => page.locator('.upload-item .upload-state').textContent()).toBe('Not uploaded: kept the existing file.');
    expect(await cell(page, 'notes.txt', 'Size').textContent()).toBe('1.5 KiB');
    expect((await download(page, 'notes.txt')).bytes.equals(notes)).toBe(true);

    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await dialog.getByRole('button', { name: 'Replace' }).click();
    await eventually(() => page.locator('.upload-item .upload-state').textContent()).toBe('Uploaded');
    await eventually(() => cell(page, 'notes.txt', 'Size').textContent()).toBe(`${newer.length} B`);
    expect((await download(page, 'notes.txt')).bytes.equals(newer)).toBe(true);
    expect(await page.locator('.count').textContent()).toBe('2 files');
  });

  test('a refused upload says why: too large', async () => {
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    await chooseFiles(page, [{ name: 'big.bin', bytes: Buffer.alloc(MAX_FILE_SIZE + 1) }]);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await eventually(() => page.locator('.upload-item .upload-state').textContent()).toMatch(/^Too large: /);
    await eventually(() => page.locator('main > .alert[role=alert]').textContent()).toBe(
      'Upload failed. Too large: the file is bigger than the server accepts. The file is larger than the limit of 1048576 bytes (PLINTH_MAX_FILE_SIZE).',
    );
    await shot(page, 'upload-too-large-desktop');
    // Nothing was stored under that path.
    expect(await row(page, 'big.bin').count()).toBe(0);

    // Any Unicode path and a literal % travel intact (File-Path is sent percent-encoded).
    const name = 'dossier/réunion 100% ñ.txt';
    await page.getByRole('button', { name: 'Clear' }).click();
    await chooseFiles(page, [{ name: 'r.txt', bytes: Buffer.from('ordre du jour'), type: 'text/plain', path: name }]);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await eventually(() => row(page, name).count()).toBe(1);
    const got = await download(page, name);
    expect(got.name).toBe('réunion 100% ñ.txt');
    expect(got.bytes.toString()).toBe('ordre du jour');
    await page.getByRole('button', { name: `Delete ${name}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await eventually(() => row(page, name).count()).toBe(0);
  });

  test('delete asks first and removes the file', async () => {
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    await eventually(() => row(page, 'notes.txt').count()).toBe(1);
    await page.getByRole('button', { name: 'Delete notes.txt' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete this file?' });
    await eventually(() => dialog.isVisible()).toBe(true);
    await shot(page, 'delete-confirm-desktop');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(await row(page, 'notes.txt').count()).toBe(1);

    await page.getByRole('button', { name: 'Delete notes.txt' }).click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await eventually(() => row(page, 'notes.txt').count()).toBe(0);
    expect(await page.getByRole('status').first().textContent()).toBe('Deleted notes.txt.');
    expect(await page.locator('.count').textContent()).toBe('1 file');
    // Gone for the API too.
    const r = await stack.fetch(`/rpc/retrieve_file?p_file_path=notes.txt`, { token: await accessToken(page) });
    expect(r.status).toBe(400);
  });

  test('a second user sees none of the first user’s files or rows', async () => {
    // Alice has a todo; Bob must not see it in the file manager or the table browser.
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    const token = await accessToken(page);
    for (let i = 1; i <= 30; i++) {
      const r = await stack.fetch('/todos', { method: 'POST', token, json: { title: `alice todo ${String(i).padStart(2, '0')}`, priority: i % 3 } });
      expect(r.status).toBe(201);
    }

    const other = await newPage();
    await signUp(other, bob.email, bob.password);
    await eventually(() => other.locator('.empty').textContent()).toContain('No files yet');
    expect(await other.locator('table.files tr').count()).toBe(0);

    await other.getByRole('link', { name: 'Tables' }).click();
    await other.getByRole('link', { name: 'todos' }).click();
    await eventually(() => other.getByRole('status').last().textContent()).toBe('No rows match.');
    await other.getByRole('link', { name: 'files', exact: true }).click();
    await eventually(() => other.getByRole('status').last().textContent()).toBe('No rows match.');
    // Bob is no admin: no Admin link, and the page itself refuses.
    expect(await other.getByRole('link', { name: 'Admin' }).count()).toBe(0);
    await other.goto(`${stack.url}/console/admin`);
    await eventually(() => other.getByRole('alert').textContent()).toContain('Not allowed');
  });

  test('the table browser pages, filters and sorts what RLS lets the user see', async () => {
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    await page.getByRole('link', { name: 'Tables' }).click();
    // The list comes from PostgREST's OpenAPI document for this user's token.
    await eventually(() => page.locator('nav.table-list a').allTextContents()).toEqual(expect.arrayContaining(['files', 'posts', 'projects', 'todos']));
    await page.getByRole('link', { name: 'todos' }).click();
    const status = page.locator('.pager .status');
    await eventually(() => status.textContent()).toBe('Rows 1–25 of 30');
    expect(await page.locator('table.rows tbody tr').count()).toBe(25);
    await page.getByRole('button', { name: 'Next →' }).click();
    await eventually(() => status.textContent()).toBe('Rows 26–30 of 30');
    expect(await page.getByRole('button', { name: 'Next →' }).isDisabled()).toBe(true);

    // Sort by title, descending (second click).
    await page.getByRole('button', { name: 'title' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–25 of 30');
    await page.getByRole('button', { name: 'title' }).click();
    await eventually(() => page.locator('table.rows tbody tr:first-child td[data-label="title"]').textContent()).toBe('alice todo 30');

    // Filter: priority = 0 and title contains "todo 1" → 12, 15, 18.
    await page.getByLabel('Column').selectOption('priority');
    await page.getByLabel('Operator').selectOption('eq');
    await page.getByLabel('Value').fill('0');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–10 of 10');
    await page.getByLabel('Column').selectOption('title');
    await page.getByLabel('Operator').selectOption('contains');
    await page.getByLabel('Value').fill('TODO 1');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–3 of 3');
    expect(await page.locator('table.rows td[data-label="title"]').allTextContents()).toEqual(['alice todo 18', 'alice todo 15', 'alice todo 12']);
    await shot(page, 'tables-desktop');

    // A filter PostgREST refuses shows its message.
    await page.getByLabel('Column').selectOption('priority');
    await page.getByLabel('Operator').selectOption('gt');
    await page.getByLabel('Value').fill('abc');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await eventually(() => page.locator('.table-content .alert').textContent()).toContain('invalid input syntax for type integer');
    await page.getByRole('button', { name: 'Remove filter priority gt abc' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–3 of 3');

    const phone = await newPage(PHONE);
    await signIn(phone, alice.email, alice.password);
    await phone.goto(`${stack.url}/console/tables/todos`);
    await eventually(() => phone.locator('.pager .status').textContent()).toBe('Rows 1–25 of 30');
    await shot(phone, 'tables-phone', false);
  });

  test('the admin sees every user’s file metadata without a download button, and the users', async () => {
    // Bob stores a file too, through the console.
    const bobPage = await newPage();
    await signIn(bobPage, bob.email, bob.password);
    await chooseFiles(bobPage, [{ name: 'bob.txt', bytes: Buffer.from('bob'), type: 'text/plain' }]);
    await bobPage.getByRole('button', { name: 'Upload', exact: true }).click();
    await eventually(() => row(bobPage, 'bob.txt').count()).toBe(1);

    const page = await newPage();
    await signIn(page, ADMIN.email, ADMIN.password);
    expect(await page.locator('header .badge').textContent()).toBe('admin');
    // The admin's own file manager lists only the admin's files.
    await eventually(() => page.locator('.empty').textContent()).toContain('No files yet');
    await page.getByRole('link', { name: 'Admin' }).click();
    await eventually(() => row(page, 'bob.txt').count()).toBe(1);
    expect(await row(page, 'pictures/holiday photo.bin').count()).toBe(1);
    expect(await cell(page, 'bob.txt', 'Owner').textContent()).toBe(bob.email);
    expect(await cell(page, 'pictures/holiday photo.bin', 'Owner').textContent()).toBe(alice.email);
    expect(await cell(page, 'pictures/holiday photo.bin', 'Size').textContent()).toBe('293 KiB');
    expect(await page.getByRole('button', { name: /Download/ }).count()).toBe(0);
    expect(await page.locator('#download-rule').textContent()).toContain('may not download another user’s files.');
    const users = page.locator('table.users');
    await eventually(() => users.locator(`tr[data-email="${bob.email}"] [data-label="App role"]`).textContent()).toBe('editor');
    expect(await users.locator(`tr[data-email="${ADMIN.email}"] [data-label="App role"]`).textContent()).toBe('admin');
    expect(await users.locator(`tr[data-email="${alice.email}"]`).count()).toBe(1);
    await shot(page, 'admin-desktop');

    // The rule holds on the server too: the admin's token cannot fetch Bob's bytes.
    const token = await accessToken(page);
    expect((await stack.fetch('/rpc/retrieve_file?p_file_path=bob.txt', { token })).status).toBe(400);

    const phone = await newPage(PHONE);
    await signIn(phone, ADMIN.email, ADMIN.password);
    await phone.goto(`${stack.url}/console/admin`);
    await eventually(() => row(phone, 'bob.txt').count()).toBe(1);
    await shot(phone, 'admin-phone');
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
  });

  test('tokens are refreshed before they expire, in two tabs at once, and sign-out forgets the session', async () => {
    const page = await newPage();
    // Every refresh either tab makes, and its answer: a refresh token spent twice would end the session.
    const refreshes: Array<{ tab: string; status: number }> = [];
    const watch = (p: Page, tab: string) =>
      p.on('response', (r) => {
        if (new URL(r.url()).pathname === '/auth/refresh') refreshes.push({ tab, status: r.status() });
      });
    watch(page, 'first');
    await signIn(page, alice.email, alice.password);
    // A second tab of the same browser shares the session (one refresh cookie: they must take turns).
    const tab = await page.context().newPage();
    watch(tab, 'second');
    await tab.goto(`${stack.url}/console/tables`);
    await eventually(() => tab.locator('header .email').textContent()).toBe(alice.email);
    const refreshCookie = async () => (await page.context().cookies()).find((c) => c.name === 'plinth_refresh');
    const first = (await refreshCookie())!;
    // Access tokens live 30 s here; each tab swaps its own at half-life, well before expiry: two
    // rounds of refreshes in each tab.
    const count = (t: string) => refreshes.filter((r) => r.tab === t).length;
    await expect.poll(() => Math.min(count('first'), count('second')), { timeout: 60_000, interval: 500 }).toBeGreaterThanOrEqual(2);
    expect(refreshes.map((r) => r.status)).toEqual(refreshes.map(() => 200));
    const latest = (await refreshCookie())!;
    expect(latest.value).not.toBe(first.value);
    // Both tabs are still signed in and work.
    await page.getByRole('link', { name: 'Files' }).click();
    await eventually(() => row(page, 'pictures/holiday photo.bin').count()).toBe(1);
    await tab.getByRole('link', { name: 'files', exact: true }).click();
    await eventually(() => tab.locator('.pager .status').textContent()).toBe('Rows 1–1 of 1');

    // Signing out in one tab signs out the other, and the browser forgets the refresh cookie.
    const before = (await refreshCookie())!;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    await eventually(() => tab.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    expect(await refreshCookie()).toBeUndefined();
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    // The server ended the session: its refresh token no longer works.
    const afterSignOut = await stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: before.value } });
    expect(afterSignOut.status).toBe(401);
    await page.reload();
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
  });

  test('keyboard only: sign in, reach a row action, a dialog that Escape cancels', async () => {
    const page = await newPage();
    await page.goto(`${stack.url}/console/`);
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    const focused = () =>
      page.evaluate(() => {
        const el = document.activeElement as HTMLInputElement | null;
        if (!el || el === document.body) return '';
        if (el.tagName === 'MAIN') return 'main:';
        const label = el.getAttribute('aria-label') ?? el.labels?.[0]?.textContent ?? el.textContent?.trim() ?? '';
        return `${el.tagName.toLowerCase()}:${label}`;
      });
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('a:Skip to content');
    await page.keyboard.press('Tab');
    await page.keyboard.type(alice.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(alice.password);
    await page.keyboard.press('Enter');
    await eventually(() => page.locator('header .email').textContent()).toBe(alice.email);
    await eventually(() => row(page, 'pictures/holiday photo.bin').count()).toBe(1);

    // Focus moves to the new content; the navigation is just before it.
    expect(await focused()).toBe('main:');
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('button:Sign out');
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('a:Account');
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('a:Realtime');
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('a:Tables');
    // Tab order then reaches the upload form, the sort buttons and each row's actions.
    const seen: string[] = [];
    for (let i = 0; i < 30 && !seen.includes('button:Delete pictures/holiday photo.bin'); i++) {
      await page.keyboard.press('Tab');
      seen.push(await focused());
    }
    expect(seen).toEqual(['a:Realtime', 'a:Account', 'button:Sign out', 'input:Choose files…', 'button:Path ▲', 'button:Description', 'button:Size', 'button:Type', 'button:Last changed', 'button:Download pictures/holiday photo.bin', 'button:Delete pictures/holiday photo.bin']);
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Delete this file?' });
    await eventually(() => dialog.isVisible()).toBe(true);
    // The safe answer has the focus; Escape cancels; nothing was deleted.
    expect(await focused()).toBe('button:Cancel');
    await page.keyboard.press('Escape');
    await eventually(() => dialog.count()).toBe(0);
    expect(await row(page, 'pictures/holiday photo.bin').count()).toBe(1);
  });

  test('failures say what happened: network down, session ended', async () => {
    const page = await newPage();
    await signIn(page, alice.email, alice.password);
    await eventually(() => row(page, 'pictures/holiday photo.bin').count()).toBe(1);
    await page.context().setOffline(true);
    await page.getByRole('button', { name: 'Download pictures/holiday photo.bin' }).click();
    await eventually(() => page.locator('main > .alert[role=alert]').textContent()).toBe(
      'Download of pictures/holiday photo.bin failed. Network error: the server could not be reached. Check the connection and try again.',
    );
    await shot(page, 'network-error-desktop');
    await page.context().setOffline(false);

    // The server ends every session of this user (sign-out everywhere): the console's refresh is
    // refused, and it signs out saying why.
    expect((await stack.fetch('/auth/logout', { method: 'POST', token: await accessToken(page), json: { scope: 'global' } })).status).toBe(204);
    // The next page load asks for an access token with the refresh cookie, and is refused.
    await page.reload();
    await eventually(() => page.getByRole('alert').textContent()).toBe('Your session ended (signed out elsewhere, or it expired): sign in again.');
    expect(await page.evaluate(() => localStorage.getItem('plinth.console.account'))).toBeNull();
    await shot(page, 'session-ended-desktop');
  });

  test('a sign-in link from the email signs the browser in, pasted or opened', async () => {
    // Without SMTP_URL the sidecar writes each mail to its log (development mode): read it there.
    const linkFor = async (email: string, seen: number) => {
      let link = '';
      await eventually(() => {
        const found = [...stack.output.matchAll(/mail to (\S+): Your sign-in link[\s\S]*?(http:\/\/\S+\/auth\/verify\?token=[\w-]+)/g)].filter((m) => m[1] === email);
        link = found[seen]?.[2] ?? '';
        return link !== '';
      }).toBe(true);
      return link;
    };
    const page = await newPage();
    await page.goto(`${stack.url}/console/`);
    await page.getByRole('button', { name: 'Forgot the password? Email me a link' }).click();
    await page.getByLabel('Email', { exact: true }).fill(bob.email);
    await page.getByRole('button', { name: 'Email me a sign-in link' }).click();
    await eventually(() => page.getByRole('status').first().textContent()).toContain('a sign-in link is on its way');
    const link = await linkFor(bob.email, 0);
    await page.getByLabel('Sign-in link from the email').fill(link);
    await shot(page, 'magic-link-desktop');
    await page.getByRole('button', { name: 'Sign in with the link' }).click();
    await eventually(() => page.locator('header .email').textContent()).toBe(bob.email);

    // The link works once: pasting it again (after signing out) is refused with the server's reason.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Forgot the password? Email me a link' }).click();
    await page.getByLabel('Sign-in link from the email').fill(link);
    await page.getByRole('button', { name: 'Sign in with the link' }).click();
    await eventually(() => page.getByRole('alert').last().textContent()).toContain('already used');

    // A link pointed at the console (/console/verify?token=…) signs in on opening.
    await page.getByLabel('Email', { exact: true }).fill(bob.email);
    await page.getByRole('button', { name: 'Email me a sign-in link' }).click();
    const second = new URL(await linkFor(bob.email, 1));
    await page.goto(`${stack.url}/console/verify${second.search}`);
    await eventually(() => page.locator('header .email').textContent()).toBe(bob.email);
    expect(new URL(page.url()).pathname).toBe('/console/');
  });

  test('every request the pages made stayed on the stack’s own origin', () => {
    expect(requested.length).toBeGreaterThan(50);
    const foreign = requested.filter((u) => !u.startsWith(`${stack.url}/`) && !u.startsWith('blob:') && !u.startsWith('data:'));
    expect(foreign).toEqual([]);
  });
});

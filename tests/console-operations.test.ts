// The console's Functions and Backups pages in a real browser (Debian's chromium driven by
// playwright-core) against one real stack with a functions folder: an admin sees the functions,
// which one fails to load and why, calls one and sees its answer and its invocation, rolls one
// back; sees the recorded backup runs; a non-admin gets neither page and the API refuses them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { startStack, TEST_OUTPUT, type Stack, launchChromium, downAndUpAgain } from './harness.ts';

const SHOTS = path.join(TEST_OUTPUT, 'screenshots', 'pages');
const ADMIN = { email: 'admin@operations.test', password: 'admin-password-1' };
const EDITOR = { email: 'editor@operations.test', password: 'editor-password-1' };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const FUNCTIONS: Record<string, string> = {
  'greet.ts': `
    export default async function handler(req: Request) {
      const { name } = await req.json();
      const claims = JSON.parse(req.headers.get('x-plinth-claims') ?? '{}');
      return { greeting: 'Hello, ' + name + '!', caller: claims.email };
    }`,
  'nightly.ts': `
    export const config = { schedule: '0 3 * * *' };
    export default () => ({ v: 1 });`,
  'broken.ts': `export default (`,
};

let stack: Stack;
let dir: string;
let browser: Browser;
const contexts: BrowserContext[] = [];
const requested: string[] = [];

beforeAll(async () => {
  await ensureConsoleBuilt();
  fs.mkdirSync(SHOTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plinth-console-functions-'));
  for (const [file, text] of Object.entries(FUNCTIONS)) fs.writeFileSync(path.join(dir, file), text);
  stack = await startStack({
    env: {
      PLINTH_FUNCTIONS_DIR: dir,
      PLINTH_ADMIN_EMAIL: ADMIN.email,
      PLINTH_ADMIN_PASSWORD: ADMIN.password,
      PLINTH_RATE_LIMIT_PER_IP: '1000',
      PLINTH_RATE_LIMIT_PER_EMAIL: '1000',
    },
  });
  const r = await stack.fetch('/rpc/signup', { method: 'POST', apikey: stack.anonKey, json: EDITOR });
  expect(r.status).toBe(201);
  browser = await launchChromium();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stack?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function newPage(viewport = DESKTOP, colorScheme: 'light' | 'dark' = 'light'): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme, timezoneId: 'UTC', isMobile: viewport === PHONE, hasTouch: viewport === PHONE });
  contexts.push(context);
  context.on('request', (r) => requested.push(r.url()));
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  return page;
}

/** Waits for what the page shows; the machine is shared, so allow seconds. */
const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000, interval: 100 });

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  expect(fs.statSync(file).size).toBeGreaterThan(1000);
}

async function signIn(page: Page, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel('Email', { exact: true }).fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(who.email);
}

async function tokenOf(who: { email: string; password: string }): Promise<string> {
  const r = await stack.fetch('/rpc/login', { method: 'POST', json: who });
  expect(r.status).toBe(200);
  return (await r.json())[0].token;
}

describe.sequential('console: functions and backups', { timeout: 240_000 }, () => {
  test('functions: listed with triggers and state (the broken one with its error line); called from the page; the invocation appears', async () => {
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Functions' }).click();
    const row = (name: string) => page.locator(`table.functions tr[data-function="${name}"]`);
    await eventually(() => row('greet').locator('td[data-label="state"]').textContent()).toBe('ok');
    expect(await row('greet').locator('td[data-label="version"]').textContent()).toBe('v1');
    expect(await row('greet').locator('td[data-label="triggers"]').textContent()).toBe('HTTP');
    expect(await row('nightly').locator('td[data-label="triggers"]').textContent()).toBe('HTTP · schedule 0 3 * * *');
    // The module that does not load: listed, marked, and its one-line reason (file, line, error) shown.
    expect(await row('broken').locator('td[data-label="state"]').textContent()).toBe('failed to load');
    const failure = page.locator('.function-failure[data-function="broken"]');
    expect(await failure.textContent()).toMatch(new RegExp(`^broken failed to load: .*broken\\.ts:1:\\d+: SyntaxError`));

    await row('greet').getByRole('link', { name: 'greet' }).click();
    await eventually(() => page.url()).toBe(`${stack.url}/console/functions/greet`);
    await eventually(() => page.locator('table.invocations, .card p.empty').first().textContent()).toBe('No invocation recorded yet.');
    await page.getByLabel('JSON body').fill('{"name": "Ada"}');
    await page.getByRole('button', { name: 'Send' }).click();
    await eventually(() => page.locator('.try-status').textContent()).toBe('200 OK');
    expect(JSON.parse((await page.locator('.try-response').textContent())!)).toEqual({ greeting: 'Hello, Ada!', caller: ADMIN.email });
    // Bad JSON never leaves the page.
    await page.getByLabel('JSON body').fill('{name: Ada');
    await page.getByRole('button', { name: 'Send' }).click();
    await eventually(() => page.locator('.try-answer [role=alert]').textContent()).toBe('The body must be valid JSON.');

    // The call shows in the invocations (the log is written a moment later: refresh until it is).
    const invocation = page.locator('table.invocations tr[data-trigger="http"][data-status="200"]');
    await eventually(async () => {
      if ((await invocation.count()) === 0) await page.getByRole('button', { name: 'Refresh' }).click();
      return invocation.count();
    }).toBe(1);
    expect(await invocation.locator('td[data-label="version"]').textContent()).toBe('v1');
    expect(await invocation.locator('td[data-label="duration"]').textContent()).toMatch(/^\d+(\.\d)? ms$/);
    await shot(page, 'functions-detail-light-desktop');
  });

  test('functions: a handler error shows its status, and rolling back from the page runs the older version', async () => {
    const call = async () => (await (await stack.fetch('/functions/v1/nightly', { apikey: stack.anonKey })).json()).v;
    fs.writeFileSync(path.join(dir, 'nightly.ts'), `export const config = { schedule: '0 3 * * *' };\nexport default () => ({ v: 2 });`);
    await eventually(call).toBe(2);
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.goto(`${stack.url}/console/functions/nightly`);
    await eventually(() => page.locator('table.versions tbody tr').count()).toBe(2);
    expect(await page.locator('table.versions tr[data-version="2"] td[data-label="version"]').textContent()).toBe('v2 (running)');
    await page.getByRole('button', { name: 'Roll back nightly to v1' }).click();
    const dialog = page.getByRole('dialog', { name: 'Roll nightly back to v1?' });
    await dialog.getByRole('button', { name: 'Roll back' }).click();
    await eventually(() => page.getByRole('status').filter({ hasText: 'runs v1' }).textContent()).toBe('nightly runs v1 now.');
    await eventually(() => page.locator('table.versions tr[data-version="1"] td[data-label="version"]').textContent()).toBe('v1 (running)');
    await eventually(call).toBe(1);
    await page.getByRole('link', { name: 'Functions' }).click();
    await eventually(() => page.locator('table.functions tr[data-function="nightly"] td[data-label="version"]').textContent()).toBe('v1 (rolled back; latest v2)');

    // A broken function answers 503 in the try box: status and the server's error body.
    await page.goto(`${stack.url}/console/functions/broken`);
    await eventually(() => page.locator('table.versions, p.empty').first().textContent()).toBe('No version recorded: the function has never loaded.');
    await page.getByRole('button', { name: 'Send' }).click();
    await eventually(() => page.locator('.try-status').textContent()).toBe('503 Service Unavailable');
    expect(await page.locator('.try-response').textContent()).toContain('PLINTH503');
  });

  test('backups: the recorded runs, newest first, with kind, status, size, duration and error; the command for a backup now', async () => {
    await stack.sql`insert into plinth.backup_runs (tick, claimed_by, started_at, finished_at, ok, location, bytes, error, kind) values
      ('2026-11-25T03:00:00Z', 'host:1', '2026-11-25T03:00:00Z', '2026-11-25T03:00:12.5Z', true, '/backups/plinth-backup-20261125T030000Z.tar.enc', 100971520, null, 'scheduled'),
      ('2026-11-26T03:00:00Z', 'host:1', '2026-11-26T03:00:00Z', '2026-11-26T03:00:00.250Z', false, null, null, 'object 3f1c (a.jpg): checksum mismatch', 'scheduled'),
      ('2026-11-26T09:30:00Z', 'host:2', '2026-11-26T09:30:00Z', '2026-11-26T09:30:02Z', true, '/backups/manual.tar', 2048, null, 'manual'),
      ('2026-11-27T03:00:00Z', 'host:1', '2026-11-27T03:00:00Z', null, null, null, null, null, 'scheduled')`;
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Backups' }).click();
    const rows = page.locator('table.backups tbody tr');
    await eventually(() => rows.count()).toBe(4);
    const cells = (i: number) => rows.nth(i).locator('td').allTextContents();
    expect(await cells(0)).toEqual(['Nov 27, 2026, 03:00 AM', 'scheduled', 'running', '—', '—', '—', '']);
    expect(await cells(1)).toEqual(['Nov 26, 2026, 09:30 AM', 'manual', 'ok', '2 KiB', '2.0 s', '/backups/manual.tar', '']);
    expect(await cells(2)).toEqual(['Nov 26, 2026, 03:00 AM', 'scheduled', 'failed', '—', '250 ms', '—', 'object 3f1c (a.jpg): checksum mismatch']);
    expect(await cells(3)).toEqual(['Nov 25, 2026, 03:00 AM', 'scheduled', 'ok', '96.3 MiB', '12.5 s', '/backups/plinth-backup-20261125T030000Z.tar.enc', '']);
    expect(await page.locator('section', { hasText: 'Back up now' }).locator('pre').first().textContent()).toBe('npx plinth backup --out plinth.tar.enc');

    // The same through the API: the service key and an admin; the host that ran it is not shown.
    const service = await (await stack.fetch('/console/api/backups?limit=2', { token: stack.serviceKey })).json();
    expect(service.map((r: { status: string }) => r.status)).toEqual(['running', 'ok']);
    expect(Object.keys(service[0]).sort()).toEqual(['bytes', 'duration_ms', 'error', 'finished_at', 'kind', 'location', 'started_at', 'status']);
    expect((await stack.fetch('/console/api/backups?limit=0', { token: stack.serviceKey })).status).toBe(400);
  });

  test('a non-admin gets neither page, and the API refuses them (decided in SQL)', async () => {
    const editor = await tokenOf(EDITOR);
    for (const p of ['/functions/admin', '/functions/admin/greet/versions', '/functions/admin/greet/invocations', '/console/api/functions/failures', '/console/api/backups']) {
      const r = await stack.fetch(p, { token: editor });
      expect({ p, status: r.status }).toEqual({ p, status: 403 });
      const anon = await stack.fetch(p, { apikey: stack.anonKey });
      expect({ p, status: anon.status }).toEqual({ p, status: 401 });
    }
    const refused = await (await stack.fetch('/console/api/backups', { token: editor })).json();
    expect(refused.message).toBe("The backups page is for admins: it needs an admin's token or the service key");
    expect((await stack.fetch('/functions/admin/greet/rollback', { method: 'POST', token: editor, json: { version: 1 } })).status).toBe(403);
    // The editor may still call a function: that is not an admin's page.
    expect((await stack.fetch('/functions/v1/greet', { method: 'POST', token: editor, json: { name: 'Eve' } })).status).toBe(200);

    const page = await newPage();
    await signIn(page, EDITOR);
    const nav = page.getByRole('navigation', { name: 'Console sections' });
    expect(await nav.getByRole('link').allTextContents()).not.toEqual(expect.arrayContaining(['Functions']));
    expect(await nav.getByRole('link').allTextContents()).not.toEqual(expect.arrayContaining(['Backups']));
    for (const p of ['functions', 'functions/greet', 'backups']) {
      await page.goto(`${stack.url}/console/${p}`);
      await eventually(() => page.locator('main [role=alert]').textContent()).toBe('Not allowed: this page is for accounts with the admin app role.');
      expect(await page.locator('table').count()).toBe(0);
    }
  });

  test('both pages in light and dark, desktop and phone: screenshots, nothing wider than the phone', async () => {
    for (const scheme of ['light', 'dark'] as const) {
      for (const [device, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
        const page = await newPage(viewport, scheme);
        await signIn(page, ADMIN);
        for (const p of ['functions', 'functions/greet', 'backups']) {
          await page.goto(`${stack.url}/console/${p}`);
          await eventually(() => page.locator('main h1').first().isVisible()).toBe(true);
          await eventually(() => page.locator('main').getByText(/Loading/).count()).toBe(0);
          await shot(page, `${p.replace('/', '-')}-${scheme}-${device}`, device === 'desktop');
          if (device === 'phone') expect({ page: p, width: await page.evaluate(() => document.documentElement.scrollWidth) }).toEqual({ page: p, width: PHONE.width });
        }
      }
    }
  });

  test('no page asked anything of another origin', () => {
    expect(requested.length).toBeGreaterThan(20);
    expect(requested.filter((u) => !u.startsWith(`${stack.url}/`) && !u.startsWith('data:') && !u.startsWith('blob:'))).toEqual([]);
  });

  test('the migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
    await downAndUpAgain(
      stack.sql,
      '20250101000620_console_functions_backups.sql',
      async (tx) => {
        const [gone] = await tx`select to_regprocedure('console.backup_runs(int)') is null as fn,
          not exists (select from information_schema.columns where table_schema = 'plinth' and table_name = 'backup_runs' and column_name = 'kind') as col`;
        expect(gone).toEqual({ fn: true, col: true });
      },
      async (tx) => {
        const [{ back }] = await tx`select to_regprocedure('console.backup_runs(int)') is not null as back`;
        expect(back).toBe(true);
      },
    );
  });
});

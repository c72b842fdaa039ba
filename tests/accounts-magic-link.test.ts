// Magic links over real SMTP: the sidecar mails a one-time link (nodemailer) to an smtp-server
// started here; the link signs in once, then never again, and not after it expires.
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startStack, type Stack } from './harness.ts';
import { mailCatcher, type Received } from './mailbox.ts';

const { inbox, smtp } = mailCatcher();

let stack: Stack;
beforeAll(async () => {
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const port = (smtp.server.address() as AddressInfo).port;
  stack = await startStack({
    env: { SMTP_URL: `smtp://127.0.0.1:${port}`, PLINTH_MAIL_FROM: 'Plinth Test <auth@plinth.test>', PLINTH_RATE_LIMIT_PER_IP: '1000' },
  });
});
afterAll(async () => {
  await stack?.destroy();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

/** The decoded text of a message: quoted-printable soft breaks and escapes undone. */
function decodeQuotedPrintable(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

// Mail is sent after the answer, in the background: on a loaded machine it can take a while.
async function mailTo(address: string, timeoutMs = 30_000): Promise<Received> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = inbox.find((m) => m.to.includes(address));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no mail for ${address} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function linkIn(mail: Received): URL {
  const m = /(https?:\/\/[^\s"<>]+\/auth\/verify\?token=[A-Za-z0-9_-]+)/.exec(decodeQuotedPrintable(mail.raw));
  if (!m) throw new Error(`no link in:\n${mail.raw}`);
  return new URL(m[1]);
}

async function newAccount(): Promise<{ email: string; id: string }> {
  const email = `magic-${randomUUID().slice(0, 8)}@example.test`;
  const r = await stack.fetch('/rpc/signup', { method: 'POST', json: { email, password: 'a long password' } });
  expect(r.status).toBe(201);
  return { email, id: (await r.json()).user.id };
}

test('a magic link arrives over SMTP, signs in once, and is refused the second time', async () => {
  const { email, id } = await newAccount();
  const asked = await stack.fetch('/auth/magic-link', { method: 'POST', json: { email: email.toUpperCase() } });
  expect(asked.status).toBe(200);
  expect((await asked.json()).message).toMatch(/sign-in link/);

  const mail = await mailTo(email);
  expect(mail.raw).toMatch(/^From: Plinth Test <auth@plinth\.test>/m);
  expect(mail.raw).toMatch(/^Subject: Your sign-in link/m);
  const link = linkIn(mail);
  expect(`${link.origin}${link.pathname}`).toBe(`http://localhost:${stack.port}/auth/verify`);

  // Clicked in a browser, the link goes to the console, which spends it; that hop spends nothing.
  const clicked = await stack.fetch(`/auth/verify${link.search}`, { redirect: 'manual', headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  expect(clicked.status).toBe(303);
  expect(clicked.headers.get('location')).toBe(`/console/verify${link.search}`);

  const first = await stack.fetch(`/auth/verify${link.search}`);
  expect(first.status).toBe(200);
  const session = await first.json();
  expect(Object.keys(session)).toEqual(['token', 'refresh_token', 'expires_in', 'user']);
  expect(session.user).toMatchObject({ id, email, app_role: 'editor' });
  expect(session.user.email_confirmed_at).not.toBeNull();
  // The session is a real one: the token queries as the user, the refresh token rotates.
  expect((await stack.fetch('/todos', { token: session.token })).status).toBe(200);
  expect((await stack.fetch('/auth/refresh', { method: 'POST', json: { refresh_token: session.refresh_token } })).status).toBe(200);

  for (const again of [stack.fetch(`/auth/verify${link.search}`), stack.fetch(`/auth/verify${link.search}`, { method: 'POST' })]) {
    const r = await again;
    expect(r.status).toBe(401);
    expect((await r.json()).message).toBe('This sign-in link is invalid, already used or expired; ask for a new one');
  }
});

test('POST /auth/verify takes the token in the body too; a made-up token is refused', async () => {
  const { email } = await newAccount();
  await stack.fetch('/auth/magic-link', { method: 'POST', json: { email } });
  const token = linkIn(await mailTo(email)).searchParams.get('token')!;
  const r = await stack.fetch('/auth/verify', { method: 'POST', json: { token } });
  expect(r.status).toBe(200);
  expect((await stack.fetch('/auth/verify?token=made-up', { method: 'POST' })).status).toBe(401);
  const noToken = await stack.fetch('/auth/verify', { method: 'POST' });
  expect(noToken.status).toBe(400);
  expect((await noToken.json()).message).toMatch(/Send the sign-in token/);
  const missing = await stack.fetch('/auth/verify');
  expect(missing.status).toBe(400);
  expect((await missing.json()).message).toMatch(/querystring is missing the field "token"/);
});

test('an unknown email gets the same 200 and no mail', async () => {
  const { email: known } = await newAccount();
  const unknown = `nobody-${randomUUID().slice(0, 8)}@example.test`;
  const a = await stack.fetch('/auth/magic-link', { method: 'POST', json: { email: unknown } });
  const b = await stack.fetch('/auth/magic-link', { method: 'POST', json: { email: known } });
  expect(a.status).toBe(200);
  expect(b.status).toBe(200);
  expect(await a.text()).toBe(await b.text());
  await mailTo(known); // mail for the known one arrived, so the unknown one would have too
  expect(inbox.some((m) => m.to.includes(unknown))).toBe(false);
});

test('a magic link is refused once it has expired (PLINTH_MAGIC_LINK_TTL)', async () => {
  stack.env.PLINTH_MAGIC_LINK_TTL = '1';
  await stack.restart();
  const { email } = await newAccount();
  await stack.fetch('/auth/magic-link', { method: 'POST', json: { email } });
  const link = linkIn(await mailTo(email));
  expect(decodeQuotedPrintable((await mailTo(email)).raw)).toMatch(/expires in 1 second\b/);
  await new Promise((r) => setTimeout(r, 2100));
  const r = await stack.fetch(`/auth/verify${link.search}`);
  expect(r.status).toBe(401);
}, 240_000);

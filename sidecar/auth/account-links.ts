// The account lifecycle's mailed one-time links: password reset, email confirmation, email change
// and invitations. Each token is stored only as its hash, works once, and expires after
// PLINTH_ACCOUNT_LINK_TTL. Requests that mail answer the same whether or not the account exists.
import type { Plinth } from '../core/context.js';
import type { Tx } from '../core/db.js';
import { PlinthError, unauthorized } from '../core/errors.js';
import type { Mailer } from './mailer.js';
import { hashOpaqueToken, newOpaqueToken } from './opaque-tokens.js';
import { assertAcceptablePassword, hashPassword } from './passwords.js';
import { startSession, type Session } from './sessions.js';
import { findUserByEmail, normalizeEmail, PROFILE_COLUMNS, type UserProfile } from './users.js';

export type LinkPurpose = 'password_reset' | 'confirm_email' | 'email_change' | 'invite';

const LINK_REFUSED = 'This link is invalid, already used or expired; ask for a new one';

/** Where each link leads: a console page, which asks for what is needed and spends the token. */
const PAGES: Record<LinkPurpose, string> = {
  password_reset: 'reset-password',
  confirm_email: 'confirm-email',
  email_change: 'confirm-email-change',
  invite: 'accept-invite',
};

const WORDING: Record<LinkPurpose, { subject: string; action: string; ignore: string }> = {
  password_reset: { subject: 'Reset your password', action: 'Follow this link to choose a new password', ignore: 'If you did not ask for it, ignore this email; your password stays as it is.' },
  confirm_email: { subject: 'Confirm your email address', action: 'Follow this link to confirm your email address', ignore: 'If you did not sign up, ignore this email.' },
  email_change: { subject: 'Confirm your new email address', action: 'Follow this link to make this the email address of your account', ignore: 'If you did not ask for it, ignore this email.' },
  invite: { subject: 'You are invited', action: 'Follow this link to choose a password and join', ignore: 'If you did not expect it, ignore this email.' },
};

export function linkUrl(plinth: Plinth, purpose: LinkPurpose, token: string): string {
  return `${plinth.config.publicUrl}/console/${PAGES[purpose]}?token=${token}`;
}

/**
 * Where a mailed token leads. Plinth's routes send the console's pages (linkUrl); the GoTrue face
 * sends its own verify route, which hands the session to the app that asked for the mail.
 */
export type LinkMaker = (purpose: LinkPurpose | 'magic_link', token: string) => string;

export async function mailLink(plinth: Plinth, mailer: Mailer, to: string, purpose: LinkPurpose, token: string, linkTo?: LinkMaker): Promise<void> {
  const link = linkTo ? linkTo(purpose, token) : linkUrl(plinth, purpose, token);
  const ttl = plinth.config.auth.accountLinkTtl;
  const lifetime = ttl >= 7200 ? `${Math.round(ttl / 3600)} hours` : ttl >= 120 ? `${Math.round(ttl / 60)} minutes` : `${ttl} second${ttl === 1 ? '' : 's'}`;
  const w = WORDING[purpose];
  await mailer.send({
    to,
    subject: w.subject,
    text: `${w.action}. It works once and expires in ${lifetime}.\n\n${link}\n\n${w.ignore}\n`,
    html: `<p>${w.action}. It works once and expires in ${lifetime}.</p><p><a href="${link}">${w.subject}</a></p><p>${w.ignore}</p>`,
  });
}

/** Stores a new token for a user and returns it (to be mailed). */
export async function issueLink(plinth: Plinth, userId: string, purpose: LinkPurpose, newEmail: string | null = null): Promise<string> {
  const { token, hash } = newOpaqueToken();
  await plinth.sql`
    insert into auth.one_time_tokens (token_hash, user_id, purpose, expires_at, new_email)
    values (${hash}, ${userId}, ${purpose}, now() + make_interval(secs => ${plinth.config.auth.accountLinkTtl}), ${newEmail})`;
  return token;
}

/** Spends a token of this purpose (once, before it expires) inside tx; 401 otherwise. */
async function spend(tx: Tx, token: string, purpose: LinkPurpose): Promise<{ user_id: string; new_email: string | null }> {
  const [spent] = await tx<{ user_id: string; new_email: string | null }[]>`
    update auth.one_time_tokens set used_at = now()
     where token_hash = ${hashOpaqueToken(token)} and purpose = ${purpose} and used_at is null and expires_at > now()
    returning user_id, new_email`;
  if (!spent) throw unauthorized(LINK_REFUSED);
  return spent;
}

/** Mails a reset link if the account exists and is not disabled; silent otherwise. */
export async function sendPasswordReset(plinth: Plinth, mailer: Mailer, email: string, linkTo?: LinkMaker): Promise<void> {
  const user = await findUserByEmail(plinth.sql, email);
  if (!user || user.disabled_at) return;
  await mailLink(plinth, mailer, user.email, 'password_reset', await issueLink(plinth, user.id, 'password_reset'), linkTo);
}

/**
 * Sets a new password with a reset link. The password change ends every session of the user (a
 * trigger on auth.users); the link also confirms the address, since it was read there.
 */
export async function resetPassword(plinth: Plinth, token: string, password: string): Promise<void> {
  assertAcceptablePassword(password);
  const passwordHash = await hashPassword(password);
  await plinth.sql.begin(async (tx) => {
    const { user_id } = await spend(tx, token, 'password_reset');
    await tx`
      update auth.users set password_hash = ${passwordHash}, email_confirmed_at = coalesce(email_confirmed_at, now())
       where id = ${user_id}`;
  });
}

/** Confirms the address of a signed-up account and signs it in. */
export async function confirmEmail(plinth: Plinth, token: string): Promise<Session> {
  const user = await plinth.sql.begin(async (tx) => {
    const { user_id } = await spend(tx, token, 'confirm_email');
    const [u] = await tx<UserProfile[]>`
      update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), last_sign_in_at = now()
       where id = ${user_id} returning ${tx(PROFILE_COLUMNS)}`;
    return u;
  });
  return startSession(plinth, user, 'confirm_email');
}

/** Mails a link to the new address; the account keeps its address until the link is followed. */
export async function requestEmailChange(plinth: Plinth, mailer: Mailer, userId: string, newEmail: string, linkTo?: LinkMaker): Promise<void> {
  const email = normalizeEmail(newEmail);
  // Taken addresses get no mail, and the answer is the same: it does not reveal who has an account.
  if (await findUserByEmail(plinth.sql, email)) return;
  await mailLink(plinth, mailer, email, 'email_change', await issueLink(plinth, userId, 'email_change', email), linkTo);
}

/** Moves the account to the address the link was mailed to; 409 if it was taken meanwhile. */
export async function confirmEmailChange(plinth: Plinth, token: string): Promise<UserProfile> {
  return plinth.sql.begin(async (tx) => {
    const { user_id, new_email } = await spend(tx, token, 'email_change');
    const [taken] = await tx`select 1 from auth.users where lower(email) = ${new_email!} and id <> ${user_id}`;
    if (taken) throw new PlinthError(409, 'An account with this email already exists');
    const [u] = await tx<UserProfile[]>`
      update auth.users set email = ${new_email!}, email_confirmed_at = now()
       where id = ${user_id} returning ${tx(PROFILE_COLUMNS)}`;
    return u;
  });
}

/** Accepts an invitation: the invited account gets its password, its address counts as confirmed. */
export async function acceptInvite(plinth: Plinth, token: string, password: string): Promise<Session> {
  assertAcceptablePassword(password);
  const passwordHash = await hashPassword(password);
  const user = await plinth.sql.begin(async (tx) => {
    const { user_id } = await spend(tx, token, 'invite');
    const [u] = await tx<UserProfile[]>`
      update auth.users set password_hash = ${passwordHash}, email_confirmed_at = coalesce(email_confirmed_at, now()), last_sign_in_at = now()
       where id = ${user_id} returning ${tx(PROFILE_COLUMNS)}`;
    return u;
  });
  return startSession(plinth, user, 'invite');
}

/**
 * Exchanges a reset link for a session instead of a new password (GoTrue's recovery): in that
 * session the password may be set without the old one (see changePassword). The link confirms
 * the address, as a reset does.
 */
export async function recoverySession(plinth: Plinth, token: string): Promise<Session> {
  return linkSession(plinth, token, 'password_reset');
}

/** Exchanges an invitation for a session in which the invited user chooses a password. */
export async function inviteSession(plinth: Plinth, token: string): Promise<Session> {
  return linkSession(plinth, token, 'invite');
}

async function linkSession(plinth: Plinth, token: string, purpose: 'password_reset' | 'invite'): Promise<Session> {
  const user = await plinth.sql.begin(async (tx) => {
    const { user_id } = await spend(tx, token, purpose);
    const [u] = await tx<UserProfile[]>`
      update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), last_sign_in_at = now()
       where id = ${user_id} returning ${tx(PROFILE_COLUMNS)}`;
    return u;
  });
  return startSession(plinth, user, purpose === 'invite' ? 'invite' : 'recovery');
}

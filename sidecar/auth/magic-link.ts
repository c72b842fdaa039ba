// Magic links: a one-time token mailed to an existing account, exchanged once for a session.
// The request always succeeds from the outside, so it does not reveal which emails have accounts.
import type { Plinth } from '../core/context.js';
import { unauthorized } from '../core/errors.js';
import type { LinkMaker } from './account-links.js';
import type { Mailer } from './mailer.js';
import { hashOpaqueToken, newOpaqueToken } from './opaque-tokens.js';
import { signIn, type Session } from './sessions.js';
import { findUserByEmail } from './users.js';

const LINK_REFUSED = 'This sign-in link is invalid, already used or expired; ask for a new one';

export async function sendMagicLink(plinth: Plinth, mailer: Mailer, email: string, linkTo?: LinkMaker): Promise<void> {
  const user = await findUserByEmail(plinth.sql, email);
  if (!user || user.disabled_at) return;
  const token = await issueMagicLink(plinth, user.id);
  const ttl = plinth.config.auth.magicLinkTtl;
  const link = linkTo ? linkTo('magic_link', token) : `${plinth.config.publicUrl}/auth/verify?token=${token}`;
  const lifetime = ttl >= 120 ? `${Math.round(ttl / 60)} minutes` : `${ttl} second${ttl === 1 ? '' : 's'}`;
  await mailer.send({
    to: user.email,
    subject: 'Your sign-in link',
    text: `Follow this link to sign in. It works once and expires in ${lifetime}.\n\n${link}\n\nIf you did not ask for it, ignore this email.\n`,
    html: `<p>Follow this link to sign in. It works once and expires in ${lifetime}.</p><p><a href="${link}">Sign in</a></p><p>If you did not ask for it, ignore this email.</p>`,
  });
}

/** Stores a new sign-in token for a user and returns it (to be mailed, or handed to an admin). */
export async function issueMagicLink(plinth: Plinth, userId: string): Promise<string> {
  const { token, hash } = newOpaqueToken();
  await plinth.sql`
    insert into auth.one_time_tokens (token_hash, user_id, purpose, expires_at)
    values (${hash}, ${userId}, 'magic_link', now() + make_interval(secs => ${plinth.config.auth.magicLinkTtl}))`;
  return token;
}

/**
 * The email of the account a still-usable link signs into, without spending it: a browser that is
 * already signed in asks its user before switching to another account (someone may have sent
 * them their own link). Holding the link already grants the account, so this reveals nothing more.
 */
export async function magicLinkAccount(plinth: Plinth, token: string): Promise<{ email: string }> {
  const [found] = await plinth.sql<{ email: string }[]>`
    select u.email from auth.one_time_tokens t join auth.users u on u.id = t.user_id
     where t.token_hash = ${hashOpaqueToken(token)} and t.purpose = 'magic_link' and t.used_at is null and t.expires_at > now()`;
  if (!found) throw unauthorized(LINK_REFUSED);
  return found;
}

/** Spends the token (once, before it expires) and signs its user in; the email counts as confirmed. */
export async function followMagicLink(plinth: Plinth, token: string): Promise<Session> {
  const [spent] = await plinth.sql<{ user_id: string }[]>`
    update auth.one_time_tokens set used_at = now()
     where token_hash = ${hashOpaqueToken(token)} and purpose = 'magic_link' and used_at is null and expires_at > now()
    returning user_id`;
  if (!spent) throw unauthorized(LINK_REFUSED);
  return signIn(plinth, spent.user_id, true, 'magic_link');
}

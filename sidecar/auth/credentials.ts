// The password rules of the accounts: who may sign up, who may sign in with a password, and how a
// password is changed. Plinth's routes and the GoTrue-shaped routes both call these, so each rule
// is written once; a refusal is an AccountRefusal whose reason each face renders its own way.
import type { Plinth } from '../core/context.js';
import type { Claims } from '../core/db.js';
import { callerProfile } from './account-functions.js';
import { issueLink, mailLink, type LinkMaker } from './account-links.js';
import type { Mailer } from './mailer.js';
import { assertAcceptablePassword, hashPassword, verifyPassword } from './passwords.js';
import { enforceRateLimit, enforceRateLimitFindingUser } from './rate-limit.js';
import { AccountRefusal } from './refusals.js';
import { signIn, type Session } from './sessions.js';
import { createUser, passwordHashOf, setPasswordHash, type UserProfile } from './users.js';

/** The sign-up rule of PLINTH_SIGNUP: refuses when visitors may not create accounts. */
export function assertSignupOpen(plinth: Plinth): void {
  const { signup } = plinth.config.auth;
  if (signup === 'closed') throw new AccountRefusal('signup_closed', 403, 'Sign-up is closed on this server', 'PLINTH403', 'Ask an administrator for an account');
  if (signup === 'invite') {
    throw new AccountRefusal('signup_invite_only', 403, 'Sign-up is by invitation only on this server', 'PLINTH403', 'Follow the link of an invitation an administrator sent you');
  }
}

/**
 * Creates an account with a password. With PLINTH_CONFIRM_EMAIL the address must be confirmed
 * first: a link is mailed and no session starts; otherwise the new account is signed in.
 */
export async function signUp(
  plinth: Plinth,
  mailer: Mailer,
  clientAddress: string,
  email: string,
  password: string,
  userMetadata: Record<string, unknown> = {},
  linkTo?: LinkMaker,
): Promise<{ user: UserProfile; session: Session | null }> {
  assertSignupOpen(plinth);
  await enforceRateLimit(plinth, 'signup', clientAddress, email);
  assertAcceptablePassword(password);
  const user = await createUser(plinth.sql, email, await hashPassword(password), userMetadata);
  if (plinth.config.auth.confirmEmail) {
    await mailLink(plinth, mailer, user.email, 'confirm_email', await issueLink(plinth, user.id, 'confirm_email'), linkTo);
    return { user, session: null };
  }
  const session = await signIn(plinth, user.id, false, 'signup');
  return { user: session.user, session };
}

/** Signs in with email and password; the same refusal for an unknown email and a wrong password. */
export async function signInWithPassword(plinth: Plinth, clientAddress: string, email: string, password: string): Promise<Session> {
  // Both in one statement: a refused attempt has read a row for nothing.
  const user = await enforceRateLimitFindingUser(plinth, 'login', clientAddress, email);
  // Always one argon2 verification, so an unknown email answers as slowly as a wrong password.
  const valid = await verifyPassword(user?.password_hash, password);
  if (!user || !valid) {
    // The one auth event no row change shows.
    plinth.audit?.activity('auth.sign_in_failed', email, { reason: user ? 'wrong password' : 'unknown email', client_addr: clientAddress }, user?.id ?? null);
    throw new AccountRefusal('invalid_credentials', 400, 'Invalid email or password');
  }
  // Said only to whoever knows the password.
  if (user.disabled_at) throw new AccountRefusal('account_disabled', 403, 'This account is disabled', 'PLINTH403', 'Ask an administrator to enable it');
  if (plinth.config.auth.confirmEmail && !user.email_confirmed_at) {
    throw new AccountRefusal('email_not_confirmed', 403, 'Confirm your email address first: follow the link mailed to you', 'PLINTH403', 'Or sign in with a magic link, which confirms it too');
  }
  return signIn(plinth, user.id, false, 'password');
}

/** Sessions that began with a mailed reset or invitation link: holding the link stood for the password. */
const LINK_SESSIONS = new Set(['recovery', 'invite']);

/**
 * Changes the caller's password. The current password is required, except in a session that began
 * with a password-reset or invitation link (the link proved the same). Every other session of the
 * user ends (a trigger); `keepSession` says whether the caller's own session goes on.
 */
export async function changePassword(
  plinth: Plinth,
  claims: Claims,
  clientAddress: string,
  currentPassword: string | undefined,
  newPassword: string,
  keepSession: boolean,
): Promise<UserProfile> {
  const me = await callerProfile(plinth, claims);
  // Guessing the current password through this route is limited like guessing it at login.
  await enforceRateLimit(plinth, 'password_change', clientAddress, me.email);
  const sessionId = typeof claims.session_id === 'string' ? claims.session_id : null;
  const [session] = sessionId === null ? [] : await plinth.sql<{ method: string }[]>`select method from auth.sessions where id = ${sessionId}`;
  if (!session || !LINK_SESSIONS.has(session.method)) {
    if (currentPassword === undefined || currentPassword === '') {
      throw new AccountRefusal('current_password_required', 400, 'Send the current password to set a new one', 'PLINTH400');
    }
    if (!(await verifyPassword(await passwordHashOf(plinth.sql, me.id), currentPassword))) {
      throw new AccountRefusal('current_password_wrong', 400, 'The current password is wrong', 'PLINTH400');
    }
  }
  assertAcceptablePassword(newPassword);
  await setPasswordHash(plinth.sql, me.id, await hashPassword(newPassword), keepSession ? sessionId : null);
  return me;
}
